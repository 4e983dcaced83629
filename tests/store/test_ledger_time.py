"""`flow45 events --since/--until`: the ledger read by time without an index on `at`. Ids grow with
time give or take a transaction's length (an event's `at` is when its transaction began), ids can be
skipped (a rolled-back transaction), and the window is found by binary search over the ids. Whatever
the ledger, the events in a window are exactly those whose `at` is in it."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings, strategies as st

from flow45.models import Event
from flow45.store import list_events
from flow45.store.ledger_time import SLACK, first_id_from

START = dt.datetime(2028, 2, 28, 23, 0)  # the day before a 29 February
LATE = int(SLACK.total_seconds()) - 1  # an event's `at` at most this much before the one written before it

moves = st.lists(st.tuples(st.integers(0, 300), st.integers(0, LATE), st.integers(1, 3)), max_size=60)
near = st.tuples(st.integers(0, 59), st.integers(-1, 1))  # an event's time, or a second either side


def _ledger(steps: list[tuple[int, int, int]]) -> list[tuple[int, dt.datetime]]:
    """Events in id order: each `forward` seconds after the clock, or up to `late` seconds before it
    (its transaction began earlier and wrote later), ids skipping `gap - 1`."""
    clock, event_id, rows = START, 0, []
    for forward, late, gap in steps:
        clock += dt.timedelta(seconds=forward)
        event_id += gap
        rows.append((event_id, clock - dt.timedelta(seconds=late if forward % 2 else 0)))
    return rows


def _write(rows: list[tuple[int, dt.datetime]]) -> None:
    Event.delete().execute()
    for event_id, at in rows:
        Event.create(id=event_id, at=at, team="reports", kind="trigger", actor="cron")


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(steps=moves, near_since=st.none() | near, near_until=st.none() | near)
def test_a_window_holds_exactly_the_events_at_or_after_since_and_before_until(store_db, steps, near_since, near_until):
    rows = _ledger(steps)
    _write(rows)
    since, until = (None if near is None or not rows else rows[near[0] % len(rows)][1] + dt.timedelta(seconds=near[1])
                    for near in (near_since, near_until))
    found = [e.id for e in list_events(0, limit=1000, since=since, until=until)]
    expected = [i for i, at in rows if (since is None or at >= since) and (until is None or at < until)]
    assert found == expected
    assert [e.id for e in list_events(limit=3, since=since, until=until, newest=True)] == expected[-3:]
    if len(expected) > 1:  # the page before the newest event
        below = [e.id for e in list_events(limit=3, since=since, until=until, newest=True, before=expected[-1])]
        assert below == expected[-4:-1]


def test_the_first_id_from_a_moment_on_the_awkward_days(store_db):
    days = [dt.datetime(2028, 2, 28, 23, 59, 59), dt.datetime(2028, 2, 29), dt.datetime(2028, 3, 1),
            dt.datetime(2028, 12, 31, 23, 59, 59), dt.datetime(2029, 1, 1)]
    _write([(10 * n + 7, at) for n, at in enumerate(days)])
    assert [first_id_from(at) for at in days] == [7, 17, 27, 37, 47]
    assert first_id_from(dt.datetime(2028, 2, 29, 12)) == 27
    assert first_id_from(dt.datetime(2000, 1, 1)) == 7 and first_id_from(dt.datetime(2030, 1, 1)) == 48
    assert [e.id for e in list_events(0, since=dt.datetime(2028, 2, 29), until=dt.datetime(2028, 3, 1))] == [17]
    assert [e.id for e in list_events(0, since=dt.datetime.min, until=dt.datetime.max)] == [7, 17, 27, 37, 47]


def test_an_empty_ledger_has_no_events_in_any_window(store_db):
    assert list_events(0, since=START, until=START + SLACK) == [] and first_id_from(START) == 1
