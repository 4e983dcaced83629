"""Ledger events by time, without an index on `at`.

An event's id is taken when its transaction writes it, its `at` when the transaction began, so ids
grow with time give or take one transaction's length. A window of time is then a range of ids, found
by binary search over the primary key (about 25 lookups at 10 million events), and the events in it
are those of that range whose `at` is in the window. SLACK widens the range by more than any
transaction of the store lasts, so an event committed late is not left out."""

from __future__ import annotations

import datetime as dt

import peewee as pw

from flow45.models import Event

SLACK = dt.timedelta(minutes=10)


def in_window(query: pw.Select, since: dt.datetime | None, until: dt.datetime | None) -> pw.Select:
    """`query` of events, only those at or after `since` and before `until` (naive UTC)."""
    if since is not None:
        query = query.where((Event.id >= first_id_from(_moved(since, -SLACK))) & (Event.at >= since))
    if until is not None:
        query = query.where((Event.id < first_id_from(_moved(until, SLACK))) & (Event.at < until))
    return query


def _moved(moment: dt.datetime, by: dt.timedelta) -> dt.datetime:
    try:
        return moment + by
    except OverflowError:  # within SLACK of the calendar's first or last day
        return dt.datetime.min if by < dt.timedelta(0) else dt.datetime.max


def first_id_from(moment: dt.datetime) -> int:
    """The smallest id of an event at or after `moment`, taking ids to grow with `at` (one above the
    newest id when every event is older)."""
    low = Event.select(pw.fn.MIN(Event.id)).scalar()
    high = Event.select(pw.fn.MAX(Event.id)).scalar()
    if low is None:
        return 1
    if _first_at_or_after(high).at < moment:
        return high + 1
    while low < high:  # the first id at or above `middle` is at or after `moment`: the answer is at most that
        middle = (low + high) // 2
        if _first_at_or_after(middle).at >= moment:
            high = middle
        else:
            low = middle + 1
    return _first_at_or_after(low).id


def _first_at_or_after(event_id: int) -> Event:
    return Event.select(Event.id, Event.at).where(Event.id >= event_id).order_by(Event.id).limit(1).get()
