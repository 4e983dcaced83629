"""Worker messages (claim, progress, submit, fail, skip, park), any number at once, applied by the rules
through one `Unit`: a handful of statements per batch instead of a dozen per message. The bridge
applies a batch per delivery burst; a per-message verb is a batch of one."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from flow45 import messages as m
from flow45.clock import iso
from flow45.db import atomic, dialect
from flow45.errors import Flow45Error
from flow45.outputs import check_output
from flow45.settings import current_settings
from flow45.store import callback_rules, rules
from flow45.store.once import processed_key, reused
from flow45.store.outbox import OutboxMessage
from flow45.store.run_cache import RunCache
from flow45.store.unit import Unit, read_back
from flow45.views import WorkerReply


@dataclass
class Item:
    """One worker message of the batch, and what became of it."""

    team: str | None  # None: any team (an administrator's own process)
    message_id: str | None  # None: not remembered, so not deduplicated
    message: Any  # a flow45.messages worker message
    result: WorkerReply | None = None
    error: Flow45Error | None = None
    taken: Any = None  # a submit's: the downstream instance claimed for its worker (Submit.next)
    _answered: tuple[WorkerReply, dict] | None = field(default=None, repr=False)

    @property
    def key(self) -> str | None:
        return None if self.message_id is None else processed_key(self.team or "*", self.message_id)

    def answer(self) -> dict:
        """The result's JSON form, worked out once: it is both stored with the message and sent."""
        if self._answered is None or self._answered[0] is not self.result:
            self._answered = (self.result, self.result.to_json())
        return self._answered[1]


def apply_worker_batch(items: list[Item], at: dt.datetime, sent: list[int] | None = None,
                       wake_relays: bool = True, kept: RunCache | None = None) -> list[OutboxMessage]:
    """Apply every item; each gets a `result` or an `error`. Call inside one transaction, which also
    marks the outbox rows `sent` (confirmed by the broker) sent. Returns the outbox rows written, so a
    relay in this process can publish them without reading them back (`wake_relays=False`: no
    notification goes with the commit; see `Unit`). With `kept`, the runs are taken from it where it
    has them all, and after the commit `read_back(kept)` (flow45.store.unit) gives it the batch's runs."""
    unit = Unit(at, wake_relays, kept)
    unit.sent = list(sent or ())
    # Each message changes its instance alone: in a wide run, the rest is read only as the rules need
    # it (`Unit.settle_changed`); a small run is read whole in the first statement, inputs and all.
    seen = unit.lock_instances([i.message.instance for i in items], [i.key for i in items if i.key],
                               teams=[i.team for i in items])
    for item in items:
        try:
            unit.instance(item.message.instance, item.team)
        except Flow45Error as error:
            item.error = error
    repeats = _answer_duplicates(items, seen)
    for item in items:
        if item.result is None and item.error is None and id(item) not in repeats:
            try:
                item.result = _apply(unit, item)
            except Flow45Error as error:
                item.error = error
    fresh = [i for i in items if i.result is not None and not i.result.duplicate]
    _complete_replies(unit, fresh)
    for item in items:
        if id(item) in repeats:  # the same message twice in one batch: answered as its first copy
            first = repeats[id(item)]
            item.error = first.error
            item.result = None if first.result is None else WorkerReply(**{**first.result.__dict__, "duplicate": True})
    processed = [{"message_id": i.key, "team": i.team or "*", "kind": i.message.type, "processed_at": at,
                  "reply": i.answer(), "instance": i.message.instance} for i in fresh if i.key]
    return unit.flush(processed)


def apply_taking_kept(make_items: Callable[[], list[Item]], at: dt.datetime, kept: RunCache | None,
                      sent: list[int] | None = None, wake_relays: bool = True,
                      read_back_now: bool = True) -> tuple[list[Item], list[OutboxMessage], float]:
    """`apply_worker_batch` in a transaction of its own, taking the runs `kept` has, and giving it the
    batch's, read back after the commit (`read_back_now=False`: the caller does it, with `read_back`,
    once the answers are on their way). Where a kept run changed since it was read back, nothing was
    applied: the batch is applied again at once (`make_items` makes it afresh), its runs read. Returns
    the items, the outbox rows written and the seconds it took until the writes waited for the COMMIT."""
    def once() -> tuple[list[Item], list[OutboxMessage], float]:
        items, started = make_items(), time.monotonic()
        try:
            with atomic():
                written = apply_worker_batch(items, at, sent, wake_relays, kept)
                applying = time.monotonic() - started
        except BaseException:
            if kept is not None:
                kept.take_to_keep()  # rolled back: nothing to read back
            raise
        if kept is not None and read_back_now:
            read_back(kept)
        return items, written, applying

    try:
        return once()
    except Exception as exc:
        if kept is None or not dialect().is_stale_rows(exc):
            raise
        kept.found_stale([item.message.instance for item in make_items()])
    return once()  # the runs forgotten: read as without `kept`


def _answer_duplicates(items: list[Item], seen: dict[str, Any]) -> dict[int, Item]:
    """Messages already applied get their answer again; returns repeats within the batch:
    id(item) -> its first copy."""
    repeats: dict[int, Item] = {}
    first: dict[str, Item] = {}
    for item in items:
        key = item.key
        if item.error is not None or key is None:
            continue
        if key in seen:
            try:
                item.result = _earlier_reply(item, seen[key])
            except Flow45Error as error:
                item.error = error
        elif key in first:
            repeats[id(item)] = first[key]
        else:
            first[key] = item
    return repeats


def _earlier_reply(item: Item, reply: Any) -> WorkerReply:
    """The answer stored for the item's message id, if it answered a worker's message about the same
    instance; else the id was another message's (an operator's, or about another instance)."""
    if isinstance(reply, dict) and reply.get("instance") == item.message.instance:
        try:
            return WorkerReply.from_json({**reply, "duplicate": True})
        except (TypeError, ValueError):
            pass  # an operator's answer about the same instance (an undo plan)
    raise reused(item.message_id, "another message")


def _apply(unit: Unit, item: Item) -> WorkerReply:
    msg, ch = item.message, unit.changes
    instance = unit.instance(msg.instance)
    task = unit.task(instance)
    if isinstance(msg, m.Claim):
        rules.require_open_offer(instance, msg.token)
        rules.claim(ch, instance, task, msg.worker)
        return rules.reply(instance, token=msg.token, lease_expires_at=instance.lease_expires_at,
                           inputs=None, params=unit.run_of(instance).params, timeout_at=instance.timeout_at)
    rules.require_live(instance, msg.token)
    actor = instance.worker or "worker"
    if isinstance(msg, m.Park):
        key = callback_rules.park(ch, instance, msg.deadline_seconds, actor)
        return rules.reply(instance, token=msg.token, lease_expires_at=instance.lease_expires_at, callback_key=key)
    if isinstance(msg, m.Progress):
        rules.progress(ch, instance, task, msg.percent, msg.message)
        rules.note_log(ch, instance.id, msg.token, msg.log_url, msg.log_tail)
        rules.keep_checkpoint(ch, instance.id, msg.token, msg.checkpoint)
        return rules.reply(instance, token=msg.token, lease_expires_at=instance.lease_expires_at)
    if isinstance(msg, m.Submit):
        spec = unit.spec(instance.run_id)
        clean = check_output(spec.types, task.output, msg.output, current_settings().output_max_bytes,
                             rules.describe(instance))
        rules.succeed(ch, instance, clean, actor)
    elif isinstance(msg, m.Skip):
        rules.skip(ch, instance, msg.reason, actor)
    else:
        rules.fail(ch, instance, task, msg.error, msg.retryable, actor)
    offered = len(ch.offers)
    unit.settle_changed(instance.run_id, [instance], actor)
    rules.note_log(ch, instance.id, msg.token, getattr(msg, "log_url", None), getattr(msg, "log_tail", None))
    if isinstance(msg, m.Submit) and msg.next:
        item.taken = rules.take_next(ch, ch.offers[offered:], msg.next, unit.task, actor)
    return rules.reply(instance)


def _complete_replies(unit: Unit, fresh: list[Item]) -> None:
    """A claim's reply carries the upstream outputs and where earlier attempts got to, and a submit's
    the downstream attempt claimed for its worker as its offer would have carried it; outputs read once
    for the batch, with its offers'."""
    claims = [(i, unit.instance(i.message.instance)) for i in fresh if isinstance(i.message, m.Claim)]
    taken = [(i, i.taken) for i in fresh if i.taken is not None]
    given = unit.inputs_of([instance for _, instance in claims + taken] + unit.changes.offers)
    resumed = unit.checkpoints_of([instance for _, instance in claims])
    for item, instance in claims:
        item.result = WorkerReply(**{**item.result.__dict__, "inputs": given[instance.id],
                                     "checkpoint": resumed.get(instance.id)})
    for item, instance in taken:
        grant = rules.offer_row(instance, unit.run_of(instance), unit.spec(instance.run_id), given[instance.id], unit.at)["body"]
        grant["lease_expires_at"] = iso(instance.lease_expires_at)
        if instance.timeout_at is not None:
            grant["timeout_at"] = iso(instance.timeout_at)
        item.result = WorkerReply(**{**item.result.__dict__, "next": grant})
