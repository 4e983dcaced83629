"""The hot path writes its statements' literals itself (`flow45.dialect.postgres.prepared`): whatever
text a worker sends, PostgreSQL reads back exactly that text, as it would from psycopg2's own
quoting, and nothing in it is ever read as SQL."""

from __future__ import annotations

import datetime as dt

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow45.db import atomic, database
from flow45.dialect.postgres_statements import prepared

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("store_db")]

ECHO = "SELECT $1, $2, $3"
TYPES = ["text[]", "bigint", "timestamp[]"]
HOSTILE = ["'", "''", "\\", "\\'", "'; DROP TABLE run; --", '"', '\\"', "{", "}", ",", "NULL", "null", "$1",
           "%s", "%(x)s", "E'", "\\x00", "é", "😀", "\n", "\t", " "]


@pytest.fixture
def backend():
    return "postgresql"


def _read_back(texts, number, times):
    with atomic():
        cursor = database.cursor()
        cursor.execute(prepared(database, ECHO, TYPES, [texts, number, times]))
        return cursor.fetchone()


def _psycopg2_read_back(texts, number, times):
    cursor = database.cursor()
    cursor.execute("SELECT %s::text[], %s::bigint, %s::timestamp[]", (texts, number, times))
    return cursor.fetchone()


texts = st.lists(st.one_of(st.none(), st.sampled_from(HOSTILE),
                           st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"), max_size=40),
                           st.lists(st.sampled_from(HOSTILE), max_size=5).map("".join)), max_size=6)
numbers = st.integers(-2**63 + 1, 2**63 - 1)  # psycopg2 writes -2**63 so that the cast overflows; see below
times = st.lists(st.one_of(st.none(), st.datetimes(dt.datetime(1, 1, 1), dt.datetime(9999, 12, 31))), max_size=3)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(texts, numbers, times)
def test_any_text_reads_back_as_sent_and_as_psycopg2_would_send_it(texts, number, times):
    assert _read_back(texts, number, times) == (texts, number, times) == _psycopg2_read_back(texts, number, times)


def test_a_statement_smuggled_in_text_is_stored_as_text_and_never_run():
    smuggled = "x'); DELETE FROM run; SELECT ('"
    with atomic():
        assert prepared(database, ECHO, TYPES, [[smuggled], 1, []]).startswith(b"EXECUTE flow45_")
        assert b"(E'{" in prepared(database, ECHO, TYPES, [[smuggled], 1, []])  # written here, not by psycopg2
    assert _read_back([smuggled, "\\'; DELETE FROM run; --"], 1, []) == (
        [smuggled, "\\'; DELETE FROM run; --"], 1, [])


def test_the_smallest_bigint_reads_back():
    assert _read_back([], -2**63, []) == ([], -2**63, [])


def test_text_holding_a_nul_is_refused_by_psycopg2_as_before():
    with pytest.raises(ValueError, match="NUL"):
        _read_back(["before\x00after"], 1, [])


def test_a_list_holding_a_value_this_module_does_not_write_is_written_by_psycopg2_and_reads_back():
    aware = dt.datetime(2028, 2, 29, 23, 30, tzinfo=dt.timezone.utc)  # the store keeps naive UTC; a caller may not
    database.execute_sql("SET TIME ZONE 'UTC'")
    with atomic():
        statement = prepared(database, ECHO, TYPES, [["a'b"], 7, [None, aware]])
    assert b"ARRAY[" in statement  # psycopg2's own list adaptation, not this module's literal
    assert _read_back(["a'b"], 7, [None, aware]) == (["a'b"], 7, [None, aware.replace(tzinfo=None)])
