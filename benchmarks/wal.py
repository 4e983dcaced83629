"""PostgreSQL's commits and WAL flushes over a phase of a benchmark, from its statistics views: on a
slow disk a commit that finds the WAL flushing waits for that flush before its own, so how much of the
time the WAL spent flushing tells how long the commits queued. Backends report their counts within a
second of going idle: a reading waits that long first."""

from __future__ import annotations

import time
from dataclasses import dataclass

from flow45.db import database

SETTLE_SECONDS = 1.2


@dataclass
class Reading:
    commits: int  # this database's, read-only ones included
    flushes: int  # the cluster's WAL flushes (fdatasync of a WAL file)
    at: float


def read() -> Reading:
    time.sleep(SETTLE_SECONDS)
    (commits,) = database.execute_sql(
        "SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()").fetchone()
    (flushes,) = database.execute_sql("SELECT wal_sync FROM pg_stat_wal").fetchone()
    return Reading(commits, flushes, time.monotonic())


def describe(before: Reading, after: Reading, flush_ms: float) -> str:
    """Commits and flushes per second between the readings, and the WAL's share of time flushing
    (each flush taken as long as a bare commit, `flush_ms`)."""
    seconds = after.at - before.at - SETTLE_SECONDS
    flushes = (after.flushes - before.flushes) / seconds
    return (f"PostgreSQL meanwhile: {(after.commits - before.commits) / seconds:,.0f} commits/s, "
            f"{flushes:,.0f} WAL flushes/s, the WAL flushing about {min(1.0, flushes * flush_ms / 1000):.0%} of the time")
