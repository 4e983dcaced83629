"""A full disk under the embedded SQLite store: the error says so, and nothing is half written."""

from __future__ import annotations

import peewee
import pytest

from pathlib import Path

from flow45 import store
from flow45.config import load_config
from flow45.db import database, describe_db_error

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "config"

pytestmark = pytest.mark.usefixtures("store_db")


@pytest.fixture
def backend():
    return "sqlite"


def _file_full() -> None:
    """As a full disk looks to SQLite: the file may not grow by a page (SQLITE_FULL)."""
    pages = database.execute_sql("PRAGMA page_count").fetchone()[0]
    database.execute_sql(f"PRAGMA max_page_count = {pages}")


def test_a_write_to_a_full_disk_names_the_full_disk_not_the_failed_rollback_and_leaves_nothing(db_url):
    _file_full()
    with pytest.raises(peewee.OperationalError) as raised:
        store.deploy(load_config(EXAMPLES), actor="ops")
    assert str(raised.value) == "database or disk is full", "SQLite rolled back already: peewee's rollback fails"
    assert describe_db_error(raised.value, db_url).endswith(": database or disk is full")
    assert store.list_workflows() == []
    database.execute_sql("PRAGMA max_page_count = 1073741823")  # room again: the store goes on
    store.deploy(load_config(EXAMPLES), actor="ops")
    assert store.get_run(store.trigger("reports", "monthly_report", actor="ops")).status == "running"
