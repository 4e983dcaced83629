"""Applying a batch of inbox deliveries: worker messages in one transaction (each in its own
savepoint, so one refusal spoils nothing else), operator messages one transaction each."""

from __future__ import annotations

import datetime as dt
import logging
import time
from dataclasses import dataclass, field
from typing import Any

import peewee

from bridge.handlers import apply
from bridge.inbound import Delivery, Inbound, Refusal, parse
from flow45.clock import utcnow
from flow45.db import atomic, drop_connection
from flow45.dialect import sqlstate
from flow45.errors import Flow45Error
from flow45.settings import Settings
from flow45.store.batch import Item, apply_taking_kept, apply_worker_batch
from flow45.store.outbox import OutboxMessage
from flow45.store.run_cache import RunCache

log = logging.getLogger("flow45.bridge")


class DatabaseUnavailable(Exception):
    """The store cannot be reached: nothing in the batch was applied; try again later."""


class Conflict(DatabaseUnavailable):
    """PostgreSQL broke a deadlock (or a serialization failure) by rolling this batch back: nothing
    in it was applied, and it can be applied again at once."""


_CONFLICTS = {"40P01", "40001"}  # deadlock_detected, serialization_failure


@dataclass
class Outcome:
    result: Any = None
    refusal: Refusal | None = None
    deployed: bool = False  # topology may need new queues
    replied: bool = False  # its reply published already, by the committer that applied it (bridge.direct_replies)


_DB_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


def _one(inbound: Inbound, at: dt.datetime) -> Outcome:
    try:
        with atomic():  # a savepoint inside the batch's transaction
            result = apply(inbound, at)
        deployed = inbound.message.type == "deploy" and not inbound.message.dry_run
        return Outcome(result=result, deployed=deployed)
    except Refusal as refusal:
        return Outcome(refusal=refusal)
    except Flow45Error as error:
        return Outcome(refusal=Refusal(error.code, error.message))
    except _DB_ERRORS:
        raise
    except Exception as exc:  # a bug must not stop the bridge: this message alone is refused
        log.exception("message %s: unexpected error", inbound.message_id)
        return Outcome(refusal=Refusal("internal", f"unexpected error: {type(exc).__name__}: {exc}"))


def _lost_race(item: Item) -> bool:
    """A stale claim: another worker took the offer first, or it was offered twice. Normal traffic."""
    return item.message.type == "claim" and item.error.code == "stale"


def _apply_workers(workers: list[tuple[int, Inbound]], at, sent: list[int], timed: dict[str, float],
                   kept: RunCache | None = None) -> tuple[list[Item], list[OutboxMessage], bool]:
    """All worker messages in one transaction, with the outbox rows confirmed `sent`; if that fails
    for a reason other than the database, one transaction each, so the message at fault is refused
    alone (and `sent` is left to the caller). Returns the items, rows written and whether `sent` was marked;
    `timed` gets the seconds of the transaction's phases ("apply", "commit") when it went through whole.
    The commits notify no relay: the bridge publishes the rows written, or wakes the relay after
    (`Relay.committed`), so that batches committing at once share a disk flush. With `kept`, runs
    kept from earlier batches are taken from it (where one changed since, the batch is applied again
    at once, its runs read); the caller reads this batch's back (`flow45.store.unit.read_back`)."""
    try:
        started = time.monotonic()
        items, written, applying = apply_taking_kept(
            lambda: [Item(p.team, p.message_id, p.message) for _, p in workers], at, kept, sent, wake_relays=False,
            read_back_now=False)
        timed.update(apply=applying, commit=time.monotonic() - started - applying)
        return items, written, True
    except _DB_ERRORS:
        raise
    except Exception:
        log.exception("a batch of %d worker messages failed; applying them one by one", len(workers))
    items = [Item(p.team, p.message_id, p.message) for _, p in workers]
    written: list[OutboxMessage] = []
    for item in items:
        try:
            with atomic():
                written += apply_worker_batch([item], at, wake_relays=False)
        except _DB_ERRORS:
            raise
        except Exception as exc:
            log.exception("message %s: unexpected error", item.message_id)
            item.error = Flow45Error(f"unexpected error: {type(exc).__name__}: {exc}")
            item.error.code = "internal"
    return items, written, False


@dataclass
class Applied:
    outcomes: list[Outcome]  # one per delivery, in order
    written: list[OutboxMessage] | None  # outbox rows written; None: rows may also have been written that are not listed
    marked_sent: bool = False  # the confirmed rows passed in were marked sent in the same transaction
    timed: dict[str, float] = field(default_factory=dict)  # the worker messages' transaction: seconds by phase


def parse_one(settings: Settings, delivery: Delivery) -> Inbound | Outcome:
    """The delivery parsed and checked, or the Outcome refusing it (no database needed for either)."""
    try:
        return parse(settings, delivery)
    except Refusal as refusal:
        return Outcome(refusal=refusal)
    except Exception as exc:  # a bug in parsing must not stop the bridge: this message alone is refused
        log.exception("message %r: unexpected error while parsing", delivery.message_id)
        return Outcome(refusal=Refusal("invalid_message", f"the message could not be read: {type(exc).__name__}"))


def apply_batch(settings: Settings, deliveries: list[Delivery], sent: list[int] | None = None,
                kept: RunCache | None = None) -> Applied:
    """Parse and apply the deliveries; worker messages in one transaction, which also marks the outbox
    rows confirmed `sent` (see `apply_parsed`). Raises DatabaseUnavailable if the store cannot be reached."""
    return apply_parsed([parse_one(settings, d) for d in deliveries], sent, kept)


def apply_parsed(parsed: list[Inbound | Outcome], sent: list[int] | None = None,
                 kept: RunCache | None = None) -> Applied:
    """Apply parsed deliveries (an Outcome stands for one refused already and is passed through);
    worker messages in one transaction, which also marks the outbox rows confirmed `sent`, taking
    the runs `kept` has of earlier batches and giving it this one's.
    Raises DatabaseUnavailable if the store cannot be reached (Conflict if it chose this transaction
    to break a deadlock: nothing applied, try again at once)."""
    at = utcnow()
    outcomes: list[Outcome | None] = [p if isinstance(p, Outcome) else None for p in parsed]
    marked = False
    timed: dict[str, float] = {}
    try:
        written: list[OutboxMessage] | None = []
        workers = [(i, p) for i, p in enumerate(parsed) if isinstance(p, Inbound) and p.role == "worker" and not p.is_callback]
        if workers:
            items, written, marked = _apply_workers(workers, at, sent or [], timed, kept)
            for (index, _), item in zip(workers, items):
                outcomes[index] = (
                    Outcome(result=item.answer()) if item.error is None
                    else Outcome(refusal=Refusal(item.error.code, item.error.message, routine=_lost_race(item)))
                )
        for index, inbound in enumerate(parsed):
            if isinstance(inbound, Inbound) and (inbound.role == "operator" or inbound.is_callback):
                outcomes[index] = _one(inbound, at)
                written = None
    except _DB_ERRORS as exc:
        if kept is not None:  # the next connection may be to another server, restored or failed over
            kept.clear()
        drop_connection()  # forgotten even where closing it fails: the next batch opens a new one
        kind = Conflict if sqlstate(exc) in _CONFLICTS else DatabaseUnavailable
        raise kind(str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__) from exc
    return Applied(outcomes, written, marked and bool(sent), timed)  # type: ignore[arg-type]
