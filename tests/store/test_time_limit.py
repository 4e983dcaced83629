"""A read's time limit, on each database: a statement past it is stopped and TooSlow raised; the
connection then reads on, with no limit left on it."""

from __future__ import annotations

import time

import pytest

from flow45.db import database, dialect
from flow45.errors import TooSlow

SLOW = {  # a statement that runs for many seconds on each database
    "sqlite": "WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) "
              "SELECT count(*) FROM (SELECT x FROM c LIMIT 1000000000)",
    "postgresql": "SELECT pg_sleep(30)",
}


def test_a_statement_past_the_limit_is_stopped_and_the_connection_reads_on(store_db, backend):
    with pytest.raises(TooSlow, match="longer than the installation allows"):
        with dialect().time_limit(0.2):
            database.execute_sql(SLOW[backend])
    assert database.execute_sql("SELECT 41 + 1").fetchone() == (42,)
    with dialect().time_limit(0.2):
        assert database.execute_sql("SELECT 7").fetchone() == (7,)  # within the limit: answered


def test_the_limit_ends_with_the_read(store_db, backend):
    with dialect().time_limit(0.2):
        database.execute_sql("SELECT 1")
    time.sleep(0.3)  # past the deadline: a limit left behind would stop the next statement
    steps = SLOW[backend].replace("1000000000", "100000") if backend == "sqlite" else "SELECT 100000"
    assert database.execute_sql(steps).fetchone() == (100000,)
    if backend == "postgresql":
        assert database.execute_sql("SHOW statement_timeout").fetchone() == ("0",)


def test_the_limit_bounds_the_whole_read_not_each_statement(store_db, backend):
    """Time spent before a statement counts against it: a read of many statements, each within the
    limit, is stopped once they add up past it (at the limit, not one limit per statement later)."""
    started = time.monotonic()
    with pytest.raises(TooSlow):
        with dialect().time_limit(2.0):
            if backend == "postgresql":
                database.execute_sql("SELECT pg_sleep(1.2)")
            else:  # SQLite's steps are not slowed by a sleep: the time goes by in between
                time.sleep(1.2)
            database.execute_sql(SLOW[backend])
    assert time.monotonic() - started < 3.0  # one limit per statement: 3.2 s
    assert database.execute_sql("SELECT 41 + 1").fetchone() == (42,)
