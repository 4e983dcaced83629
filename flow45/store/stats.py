"""Figures for monitoring, read when a scraper asks (never on the worker path).

Each query is bounded: it reads only rows in a live state (or unsent outbox rows), found through an
index whose first column is the state (or `sent_at`), and at most SCAN_CAP of them. Finished work,
which grows with history, is never counted here, so a scrape costs the same on a year-old store as
on a new one."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import peewee as pw

from flow45 import states
from flow45.clock import to_utc
from flow45.models import Outbox, TaskInstance

SCAN_CAP = 100_000  # rows read per figure and scrape; past it a figure says "at least"
LIVE_STATES = (states.PENDING, states.QUEUED, states.AVAILABLE, states.RUNNING, states.RETRY_WAIT, states.WAITING,
               states.HELD)


@dataclass(frozen=True)
class StoreFigures:
    instances: dict[tuple[str, str, str], int]  # (team, function, state) -> instances, live states only
    human_waiting: dict[str, int]  # team -> human tasks available to decide (taken by someone or not)
    human_overdue: dict[str, int]  # team -> of those, the ones past their due time
    outbox_backlog: int  # rows not yet confirmed by the broker
    outbox_oldest_seconds: float  # age of the oldest of them; 0 with none
    # (team, function) -> instances available to workers: the offers in that function's queue. Not human
    # tasks: they are available too, but wait for a person, never in a queue.
    offers_waiting: dict[tuple[str, str], int] = field(default_factory=dict)
    capped: list[str] = field(default_factory=list)  # figures that reached SCAN_CAP


def queries(at: dt.datetime) -> tuple[pw.Select, pw.Select]:
    """The scrape's two queries: live instances grouped, and the unsent outbox rows' count and oldest."""
    late = pw.Case(None, [(TaskInstance.due_at <= at, 1)], 0)
    live = (TaskInstance.select(TaskInstance.team, TaskInstance.function, TaskInstance.state, TaskInstance.human,
                                late.alias("late"))
            .where(TaskInstance.state.in_(LIVE_STATES)).limit(SCAN_CAP).alias("live"))
    columns = [live.c.team, live.c.function, live.c.state, live.c.human, live.c.late]
    grouped = (pw.Select([live], [*columns, pw.fn.COUNT(pw.SQL("*"))]).group_by(*columns)
               .bind(TaskInstance._meta.database))
    pending = Outbox.select(Outbox.created_at).where(Outbox.sent_at.is_null()).limit(SCAN_CAP).alias("pending")
    backlog = (pw.Select([pending], [pw.fn.COUNT(pw.SQL("*")), pw.fn.MIN(pending.c.created_at)])
               .bind(Outbox._meta.database))
    return grouped, backlog


def read_figures(now: dt.datetime) -> StoreFigures:
    at = to_utc(now)
    capped: list[str] = []
    grouped, outbox = queries(at)
    instances: dict[tuple[str, str, str], int] = {}
    human: dict[str, int] = {}
    overdue: dict[str, int] = {}
    offers: dict[tuple[str, str], int] = {}
    total = 0
    for team, function, state, is_human, is_late, count in grouped.tuples():
        instances[(team, function, state)] = instances.get((team, function, state), 0) + count
        if is_human and state == states.AVAILABLE:
            human[team] = human.get(team, 0) + count
            if is_late:
                overdue[team] = overdue.get(team, 0) + count
        elif state == states.AVAILABLE:
            offers[(team, function)] = offers.get((team, function), 0) + count
        total += count
    if total >= SCAN_CAP:
        capped.append("instances")
    backlog, oldest = outbox.tuples()[0]
    if backlog >= SCAN_CAP:
        capped.append("outbox")
    age = 0.0
    if oldest is not None:
        if isinstance(oldest, str):  # SQLite hands back text from a subquery's column
            oldest = dt.datetime.fromisoformat(oldest)
        age = max(0.0, (at - to_utc(oldest)).total_seconds())
    return StoreFigures(instances, human, overdue, backlog, age, offers, capped)
