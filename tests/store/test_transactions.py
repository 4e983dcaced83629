"""A transaction on PostgreSQL is one: its BEGIN goes out with its first statement, and nothing it
wrote is seen by another session before its COMMIT, or ever after a failure."""

from __future__ import annotations

import psycopg2
import psycopg2.sql
import pytest

from flow45 import store
from flow45.db import atomic, database
from tests.store.helpers import T0, deploy_text
from tests.store.test_stale_statistics import WORKFLOW

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("store_db")]


@pytest.fixture
def backend():
    return "postgresql"


@pytest.fixture
def elsewhere(postgres_url):
    """Another session, counting the runs it can see."""
    other = psycopg2.connect(postgres_url)
    other.autocommit = True

    def runs() -> int:
        with other.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM run")
            return cursor.fetchone()[0]

    yield runs
    other.close()


def test_what_a_transaction_writes_is_seen_elsewhere_only_after_its_commit(tmp_path, elsewhere):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with atomic():
        store.trigger("acme", "many", actor="ops", now=T0)
        store.trigger("acme", "many", actor="ops", now=T0)
        assert elsewhere() == 0
        assert database.execute_sql("SELECT txid_current_if_assigned() IS NOT NULL").fetchone()[0]
    assert elsewhere() == 2


def test_a_transaction_that_fails_leaves_nothing_behind(tmp_path, elsewhere):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with pytest.raises(RuntimeError), atomic():
        store.trigger("acme", "many", actor="ops", now=T0)
        raise RuntimeError("the caller gives up")
    assert elsewhere() == 0
    assert store.list_runs("acme") == []


def test_a_transaction_that_ran_nothing_leaves_the_connection_ready_for_the_next(tmp_path, elsewhere):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with atomic():
        pass
    with atomic():  # a BEGIN left waiting would make this one's statements run outside a transaction
        store.trigger("acme", "many", actor="ops", now=T0)
        assert elsewhere() == 0
    assert elsewhere() == 1


@pytest.mark.parametrize("first_statement", ["text", "composed"])
def test_the_first_statement_of_a_transaction_runs_inside_it_whatever_its_form(first_statement):
    query = "SELECT txid_current()"
    with atomic():
        cursor = database.cursor()
        cursor.execute(query if first_statement == "text" else psycopg2.sql.SQL(query))
        (began,) = cursor.fetchone()
        assert database.execute_sql("SELECT txid_current_if_assigned()").fetchone()[0] == began
