"""The hot path: a batch of worker messages applied set-based, inside the caller's transaction.

Same rules as the per-message verbs in `work.py` (the transition table, fencing tokens, at most once
per message id, ledger and outbox rows in the same transaction), but a handful of statements per
batch instead of a dozen per message: lock the touched runs (in id order), read their instances once,
apply every message in memory, write back with multi-row statements.
"""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import dataclass, field
from typing import Any, Sequence

from peewee import Field, ForeignKeyField

from flow45 import messages as m
from flow45 import states as S
from flow45.db import dialect
from flow45.errors import Flow45Error, NotFound, StaleToken
from flow45.models import Attempt, Event, JSONField, Outbox, ProcessedMessage, Run, TaskInstance
from flow45.names import offer_key
from flow45.outputs import check_output
from flow45.settings import current_settings
from flow45.store.bulk import as_json, insert_rows, update_rows
from flow45.store.core import lease_seconds, new_token, offer_body
from flow45.store.once import processed_key
from flow45.store.outbox import OutboxMessage, announce, mark_sent
from flow45.store.specs import VersionSpec, version_spec
from flow45.store.work import MAX_MESSAGE, retry_delay
from flow45.views import WorkerReply

INSTANCE_COLUMNS = (
    "state", "attempt", "token", "failures", "lease_expires_at", "not_before", "offered_at", "worker",
    "progress_pct", "progress_message", "updated_at",
)
INSTANCE_CASTS = {
    "id": "bigint", "state": "varchar", "attempt": "integer", "token": "varchar", "failures": "integer",
    "lease_expires_at": "timestamp", "not_before": "timestamp", "offered_at": "timestamp", "worker": "varchar",
    "progress_pct": "double precision", "progress_message": "text", "updated_at": "timestamp",
}
ATTEMPT_CASTS = {"instance_id": "bigint", "token": "varchar", "status": "varchar", "output": "text",
                 "error": "text", "finished_at": "timestamp"}


@dataclass
class Item:
    """One worker message of the batch, and what became of it."""

    team: str
    message_id: str
    message: Any  # a flow45.messages worker message
    result: WorkerReply | None = None
    error: Flow45Error | None = None


@dataclass
class _Work:
    at: dt.datetime
    runs: dict[int, Run] = field(default_factory=dict)
    instances: dict[int, TaskInstance] = field(default_factory=dict)
    by_run: dict[int, dict[str, TaskInstance]] = field(default_factory=dict)
    changed: set[int] = field(default_factory=set)
    outputs: dict[int, Any] = field(default_factory=dict)  # instance -> output submitted in this batch
    new_attempts: list[dict] = field(default_factory=list)
    ended_attempts: list[tuple] = field(default_factory=list)
    events: list[dict] = field(default_factory=list)
    offers: list[TaskInstance] = field(default_factory=list)
    dirty_runs: dict[int, str] = field(default_factory=dict)  # run -> actor of its latest change
    run_moves: list[tuple[Run, str, str]] = field(default_factory=list)
    written: list[OutboxMessage] = field(default_factory=list)  # outbox rows, for a relay in this process


def apply_worker_batch(items: list[Item], at: dt.datetime, sent: Sequence[int] = ()) -> list[OutboxMessage]:
    """Apply every item; each gets a `result` or an `error`. Call inside one transaction.
    Returns the outbox rows written, so a relay in this process can publish them without reading them back.
    `sent`: outbox rows the broker has confirmed meanwhile, marked sent in the same transaction."""
    work = _Work(at)
    seen = _load(work, items)
    repeats = _answer_duplicates(items, seen)
    for item in items:
        if item.result is None and item.error is None and id(item) not in repeats:
            try:
                item.result = _apply(work, item)
            except Flow45Error as error:
                item.error = error
                continue
            for run_id, actor in work.dirty_runs.items():
                _settle_run(work, run_id, actor)
            work.dirty_runs.clear()
    for item in items:
        if id(item) in repeats:  # the same message twice in one batch: answered as its first copy
            first = repeats[id(item)]
            item.error = first.error
            item.result = None if first.result is None else WorkerReply(**{**first.result.__dict__, "duplicate": True})
    _flush(work, items, sent)
    return work.written


# ---- reading ---------------------------------------------------------------------------------

class _Row:
    """A row read by the hot path: plain attributes, as cheap to build as a tuple."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


_INSTANCE_FIELDS = [TaskInstance._meta.fields[name] for name in (
    "id", "run", "team", "task", "function", "state", "attempt", "token", "failures", "priority", "human",
    "lease_expires_at", "not_before", "offered_at", "worker", "progress_pct", "progress_message", "updated_at",
)]
_RUN_FIELDS = [Run._meta.fields[name] for name in (
    "id", "team", "workflow", "version", "status", "params", "updated_at", "finished_at",
)]


def _readers(fields: list[Field]) -> tuple[list[str], list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Attribute names as peewee names them (a foreign key `run` is `run_id`), and (name, converter)
    for every column on SQLite, for the JSON columns only on PostgreSQL (psycopg2 returns the rest typed)."""
    names = [f.name + "_id" if isinstance(f, ForeignKeyField) else f.name for f in fields]
    every = [(name, f.python_value) for name, f in zip(names, fields)]
    return names, every, [(name, read) for (name, read), f in zip(every, fields) if isinstance(f, JSONField)]


def _build(readers, values: tuple) -> _Row:
    names, every, json_only = readers
    row = _Row(**dict(zip(names, values)))
    for name, read in dialect().typed_columns(every, json_only):
        setattr(row, name, read(getattr(row, name)))
    return row


_INSTANCE_READERS, _RUN_READERS = _readers(_INSTANCE_FIELDS), _readers(_RUN_FIELDS)
_SELECT_INSTANCES = (
    "SELECT " + ", ".join(f"i.{f.column_name}" for f in _INSTANCE_FIELDS) + ", "
    + ", ".join(f"r.{f.column_name}" for f in _RUN_FIELDS)
    + "{extra} FROM task_instance i JOIN run r ON r.id = i.run_id"
    " WHERE i.run_id IN (SELECT run_id FROM task_instance WHERE id {wanted}) ORDER BY r.id, i.id"
)


def _load(work: _Work, items: list[Item]) -> dict[str, Any]:
    """Lock the touched runs (in id order: no deadlocks between bridges), read them with all their
    instances, and the replies already given to these message ids (read after the locks, so a
    concurrent copy is seen). Returns those replies by key. On PostgreSQL one round trip."""
    wanted = list({item.message.instance for item in items})
    keys = list({_key(item) for item in items})
    rows, seen = dialect().lock_and_read(_SELECT_INSTANCES, wanted, keys)
    split = len(_INSTANCE_FIELDS)
    for row in rows:
        run_id = row[1]
        run = work.runs.get(run_id)
        if run is None:
            run = work.runs[run_id] = _build(_RUN_READERS, row[split:])
        instance = _build(_INSTANCE_READERS, row)
        instance.run = run  # one object per run, shared by its instances
        work.instances[instance.id] = instance
        work.by_run.setdefault(run_id, {})[instance.task] = instance
    for item in items:
        found = work.instances.get(item.message.instance)
        if found is None or found.team != item.team:
            item.error = NotFound(f"task instance {item.message.instance} not found for team {item.team}")
    return seen


def _key(item: Item) -> str:
    return processed_key(item.team, item.message_id)


def _answer_duplicates(items: list[Item], seen: dict[str, Any]) -> dict[int, Item]:
    """Messages already applied get their answer again; returns repeats within the batch:
    id(item) -> its first copy."""
    repeats: dict[int, Item] = {}
    first: dict[str, Item] = {}
    for item in items:
        key = _key(item)
        if item.error is not None:
            continue
        if key in seen:
            item.result = WorkerReply.from_json({**seen[key], "duplicate": True})
        elif key in first:
            repeats[id(item)] = first[key]
        else:
            first[key] = item
    return repeats


# ---- applying in memory ----------------------------------------------------------------------

def _describe(instance: TaskInstance) -> str:
    return f"task instance {instance.id} ({instance.task} of run {instance.run_id})"


def _move(work: _Work, instance: TaskInstance, target: str, kind: str, actor: str, detail: Any = None) -> None:
    S.check_instance_move(_describe(instance), instance.state, target)
    work.events.append({
        "at": work.at, "team": instance.team, "run": instance.run_id, "instance": instance.id, "kind": kind,
        "from_state": instance.state, "to_state": target, "actor": actor, "detail": detail,
    })
    instance.state = target
    instance.updated_at = work.at
    work.changed.add(instance.id)


def _live(instance: TaskInstance, token: str) -> None:
    if instance.state != S.RUNNING or instance.token != token:
        raise StaleToken(
            f"{_describe(instance)}: token is not the current attempt's (now {instance.state}, "
            f"attempt {instance.attempt}); nothing changed"
        )


def _reply(instance: TaskInstance, **extra: Any) -> WorkerReply:
    return WorkerReply(instance=instance.id, state=instance.state, attempt=instance.attempt, **extra)


def _spec(work: _Work, instance: TaskInstance) -> VersionSpec:
    return version_spec(work.runs[instance.run_id].version_id)


def _apply(work: _Work, item: Item) -> WorkerReply:
    msg = item.message
    instance = work.instances[msg.instance]
    spec = _spec(work, instance)
    task = spec.task(instance.task)
    if isinstance(msg, m.Claim):
        if instance.state != S.AVAILABLE or instance.token != msg.token:
            held = f" by {instance.worker}" if instance.state == S.RUNNING and instance.token == msg.token else ""
            raise StaleToken(
                f"{_describe(instance)}: this offer is no longer open (instance is {instance.state}{held}, "
                f"attempt {instance.attempt}); nothing changed"
            )
        _move(work, instance, S.RUNNING, "claim", msg.worker, {"attempt": instance.attempt})
        instance.worker = msg.worker
        instance.lease_expires_at = work.at + dt.timedelta(seconds=lease_seconds(task))
        work.new_attempts.append({
            "instance": instance.id, "number": instance.attempt, "token": msg.token, "status": "running",
            "worker": msg.worker, "claimed_at": work.at,
        })
        return _reply(instance, token=msg.token, lease_expires_at=instance.lease_expires_at,
                      inputs=None, params=work.runs[instance.run_id].params)
    _live(instance, msg.token)
    actor = instance.worker or "worker"
    if isinstance(msg, m.Progress):
        instance.lease_expires_at = work.at + dt.timedelta(seconds=lease_seconds(task))
        if msg.percent is not None:
            instance.progress_pct = max(0.0, min(100.0, float(msg.percent)))
        if msg.message is not None:
            instance.progress_message = msg.message[:MAX_MESSAGE]
        instance.updated_at = work.at
        work.changed.add(instance.id)
        return _reply(instance, token=msg.token, lease_expires_at=instance.lease_expires_at)
    if isinstance(msg, m.Submit):
        clean = check_output(spec.types, task.output, msg.output, current_settings().output_max_bytes, _describe(instance))
        work.ended_attempts.append((instance.id, msg.token, "succeeded", as_json(clean), None, work.at))
        work.outputs[instance.id] = clean
        _move(work, instance, S.SUCCEEDED, "submit", actor, {"attempt": instance.attempt})
        instance.token, instance.lease_expires_at, instance.progress_pct = None, None, 100.0
    elif isinstance(msg, m.Skip):
        work.ended_attempts.append((instance.id, msg.token, "skipped", None, msg.reason, work.at))
        _move(work, instance, S.SKIPPED, "skip", actor, {"reason": msg.reason})
        instance.token, instance.lease_expires_at = None, None
    else:
        error = str(msg.error)[:MAX_MESSAGE]
        work.ended_attempts.append((instance.id, msg.token, "failed", None, error, work.at))
        _after_failure(work, instance, task, error, msg.retryable, actor)
    work.dirty_runs[instance.run_id] = actor
    return _reply(instance)


def _after_failure(work: _Work, instance: TaskInstance, task, error: str, retryable: bool, actor: str) -> None:
    instance.failures += 1
    detail = {"attempt": instance.attempt, "error": error, "failures": instance.failures, "retries": task.retries}
    if retryable and instance.failures <= task.retries:
        delay = retry_delay(task, instance.failures)
        if delay <= 0:
            _offer(work, instance, "fail", actor, detail)
            return
        _move(work, instance, S.RETRY_WAIT, "fail", actor, detail)
        instance.not_before = work.at + dt.timedelta(seconds=delay)
    else:
        _move(work, instance, S.FAILED, "fail", actor, detail)
    instance.token, instance.lease_expires_at = None, None


def _offer(work: _Work, instance: TaskInstance, kind: str, actor: str, detail: Any = None) -> None:
    _move(work, instance, S.AVAILABLE, kind, actor, detail)
    instance.attempt += 1
    instance.token = new_token()
    instance.lease_expires_at = instance.not_before = instance.worker = None
    instance.progress_pct = instance.progress_message = None
    instance.offered_at = work.at
    if not instance.human:  # operators do human tasks: no worker is offered them
        work.offers.append(instance)


# ---- consequences: downstream offers and run status ------------------------------------------

def _settle_run(work: _Work, run_id: int, actor: str) -> None:
    """As `core.settle_run`, in memory: offer what became ready, then move the run if its status changed."""
    run, instances = work.runs[run_id], work.by_run[run_id]
    if run.status not in (S.QUEUED, S.CANCELLED):
        spec = version_spec(run.version_id)
        for name in spec.order:
            instance = instances[name]
            if instance.state == S.PENDING and all(instances[up].state in S.DONE for up in spec.upstream(name)):
                _offer(work, instance, "ready", actor)
    target = S.run_status_from([i.state for i in instances.values()], run.status)
    if target != run.status:
        S.check_run_move(f"run {run.id}", run.status, target)
        work.events.append({"at": work.at, "team": run.team, "run": run.id, "instance": None, "kind": "run",
                            "from_state": run.status, "to_state": target, "actor": actor, "detail": None})
        run.status, run.updated_at = target, work.at
        run.finished_at = work.at if target in S.FINISHED_RUN else None
        work.run_moves.append((run, target, actor))


def _outputs_for(work: _Work, instances: list[TaskInstance]) -> dict[int, Any]:
    """Outputs of every upstream the given instances take inputs from."""
    needed: set[int] = set()
    for instance in instances:
        spec = _spec(work, instance)
        for up in spec.task(instance.task).inputs.values():
            upstream = work.by_run[instance.run_id][up]
            if upstream.state == S.SUCCEEDED and upstream.id not in work.outputs:
                needed.add(upstream.id)
    found = dict(work.outputs)
    if needed:
        ids = list(needed)
        sql = "SELECT instance_id, output FROM attempt WHERE instance_id {} AND status = 'succeeded' AND NOT archived"
        rows = dialect().select_in(sql, ids, "bigint[]")
        found.update((instance_id, json.loads(output) if output is not None else None) for instance_id, output in rows)
    return found


def _inputs(work: _Work, instance: TaskInstance, outputs: dict[int, Any]) -> dict:
    spec = _spec(work, instance)
    run_instances = work.by_run[instance.run_id]
    return {param: outputs.get(run_instances[up].id) if run_instances[up].state == S.SUCCEEDED else None
            for param, up in spec.task(instance.task).inputs.items()}


# ---- writing ---------------------------------------------------------------------------------

def _flush(work: _Work, items: list[Item], sent: Sequence[int]) -> None:
    claimed = [work.instances[i.message.instance] for i in items
               if isinstance(i.message, m.Claim) and i.result is not None and not i.result.duplicate]
    outputs = _outputs_for(work, claimed + work.offers)
    for item in items:
        if isinstance(item.message, m.Claim) and item.result is not None and not item.result.duplicate:
            instance = work.instances[item.message.instance]
            item.result = WorkerReply(**{**item.result.__dict__, "inputs": _inputs(work, instance, outputs)})
    deferred = dialect().deferred()  # where it can, the writes below travel in one round trip
    rows = [(i.id, *(getattr(i, c) for c in INSTANCE_COLUMNS)) for i in (work.instances[x] for x in sorted(work.changed))]
    update_rows("task_instance", ("id",), INSTANCE_COLUMNS, rows, INSTANCE_CASTS, deferred=deferred)
    if work.new_attempts:
        insert_rows(Attempt, work.new_attempts, deferred=deferred)
    update_rows("attempt", ("instance_id", "token"), ("status", "output", "error", "finished_at"),
                work.ended_attempts, ATTEMPT_CASTS, where="{t}.status = 'running'", deferred=deferred)
    moved = {run.id: run for run, _, _ in work.run_moves}.values()
    update_rows("run", ("id",), ("status", "updated_at", "finished_at"),
                [(r.id, r.status, r.updated_at, r.finished_at) for r in moved],
                {"id": "bigint", "status": "varchar", "updated_at": "timestamp", "finished_at": "timestamp"},
                deferred=deferred)
    if work.events:
        insert_rows(Event, work.events, deferred=deferred)
    processed = [
        {"message_id": _key(i), "team": i.team, "kind": i.message.type, "processed_at": work.at,
         "reply": i.result.to_json()}
        for i in items if i.result is not None and not i.result.duplicate
    ]
    if processed:
        # Duplicates were answered under the run locks; a client reusing an id for another message is not ours to fail on.
        insert_rows(ProcessedMessage, processed, skip_conflicts=True, deferred=deferred)
    mark_sent(list(sent), work.at, deferred=deferred)
    if work.offers:
        announce(deferred)
        rows = [
            {"team": i.team, "kind": "offer", "routing_key": offer_key(i.team, i.function), "priority": i.priority,
             "body": offer_body(i, work.runs[i.run_id], _spec(work, i), _inputs(work, i, outputs)),
             "instance": i.id, "created_at": work.at}
            for i in work.offers
        ]
        ids = insert_rows(Outbox, rows, returning="id", deferred=deferred)  # sends everything waiting
        work.written.extend(
            OutboxMessage(id_, r["team"], r["kind"], r["routing_key"], r["priority"], r["body"]) for id_, r in zip(ids, rows)
        )
    if deferred is not None:
        deferred.send()
    finished = sorted({run.workflow_id for run, target, _ in work.run_moves if target in S.FINISHED_RUN})
    # Lock the workflows (in id order, as `start_queued_runs` and `trigger` do); usually none has a queued run.
    if finished and dialect().lock_workflows_with_queued_runs(finished):
        from flow45.store.runs import start_queued_runs

        for workflow_id in finished:
            start_queued_runs(workflow_id, "flow45", work.at)
