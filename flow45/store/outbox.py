"""The outbox, read by whoever delivers it: the bridge's relay, or the local transport in-process."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from dataclasses import dataclass
from typing import Any

from flow45.clock import to_utc
from flow45.db import atomic, dialect
from flow45.models import Outbox
from flow45.turns import in_turns
from flow45.store.bulk import update_rows

NOTIFY_CHANNEL = "flow45_outbox"
SENT_CASTS = {"id": "bigint", "sent_at": "timestamp"}


def announce(deferred=None) -> None:
    """Inside a transaction that wrote outbox rows: wake listening relays when it commits."""
    dialect().notify(NOTIFY_CHANNEL, deferred)


def announce_committed() -> None:
    """Wake listening relays about outbox rows committed already: a transaction of its own that
    waits for no disk flush. PostgreSQL holds one lock over every notifying commit, its flush
    included, so a busy writer (the bridge) notifies this way, after commits that flush together."""
    with atomic():
        dialect().commit_without_disk_wait()
        dialect().notify(NOTIFY_CHANNEL)


@dataclass(frozen=True)
class OutboxMessage:
    id: int
    team: str
    kind: str  # offer | undo
    routing_key: str
    priority: int
    body: Any
    text: str | None = None  # the body's JSON as stored, when at hand: published as it is


def pending(limit: int = 500, exclude: set[int] | frozenset = frozenset(),
            skip_keys: set[str] | frozenset = frozenset()) -> list[OutboxMessage]:
    """Unsent rows but those in `exclude` (a relay's rows in flight) and those routed by `skip_keys`
    (to queues that refuse rows for now): the teams in turn, each team's most urgent first (priority,
    then age). So a team with a backlog of offers delays another team's by one row each, not by the
    backlog."""
    rows = in_turns(dialect().pending_outbox(limit, sorted(exclude), sorted(skip_keys)), lambda row: row[1])
    return [OutboxMessage(id_, team, kind, key, priority, json.loads(text), text)
            for id_, team, kind, key, priority, text in itertools.islice(rows, limit)]


def mark_sent(ids: list[int], now: dt.datetime | None = None, *, wait_for_disk: bool = True) -> None:
    """Rows the broker acknowledged; only these stop being pending. A transaction of its own (a
    savepoint inside another), which may skip waiting for the disk: a mark lost in a crash only
    publishes the row again, and offers are safe to repeat."""
    if not ids:
        return
    with atomic():
        if not wait_for_disk:
            dialect().commit_without_disk_wait()
        _mark(ids, now)


def mark_sent_in_transaction(ids: list[int], now: dt.datetime | None = None, deferred=None) -> None:
    """As `mark_sent`, inside the caller's transaction: committed with whatever else it writes
    (held in `deferred`, if given, to travel with the other writes)."""
    if ids:
        _mark(ids, now, deferred)


def _mark(ids: list[int], now: dt.datetime | None, deferred=None) -> None:
    at = to_utc(now)
    # By id alone: with `sent_at IS NULL` too, statistics taken while the outbox looked empty plan a
    # walk of every pending row, each checked against the ids. A row marked again gets a later time.
    update_rows("outbox", ("id",), ("sent_at",), [(i, at) for i in ids], SENT_CASTS, deferred=deferred)


def take(routing_keys: list[str], limit: int = 10, now: dt.datetime | None = None) -> list[OutboxMessage]:
    """Deliver rows in-process: the most urgent `limit` rows of these keys (priority, then age), each
    to exactly one caller, marked sent."""
    with atomic():
        heads = dialect().most_urgent_outbox(list(dict.fromkeys(routing_keys)), limit)
        rows = sorted(heads, key=lambda row: (-row[4], row[0]))[:limit]
        _mark([row[0] for row in rows], now)  # by id alone: the rows are this transaction's until it ends
    return [OutboxMessage(id_, team, kind, key, priority, json.loads(text), text)
            for id_, team, kind, key, priority, text in rows]


def release(ids: list[int]) -> int:
    """Rows taken in-process but not handled (the worker gave them back): pending again."""
    if not ids:
        return 0
    with atomic():
        return Outbox.update(sent_at=None).where(Outbox.id.in_(ids)).execute()
