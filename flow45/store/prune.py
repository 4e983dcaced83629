"""Retention: remove the rows of runs that finished before a cutoff, a few runs per transaction, so
workers keep going while it runs; optionally each run first as one JSON line (`export`).

A run is pruned only if it is finished (succeeded, failed, cancelled) and finished before the cutoff,
checked again under its row lock in the transaction that removes it: a run an undo reopened (or is
reopening) is left alone. The lock is the one the lifecycle's writer takes first, on the run, so a
worker's message about a pruned run waits for the prune and then finds nothing ("not found").
A pruned run can no longer be undone.

The records of messages about no instance (triggers, cancels, notes, pauses…: flow45.store.once) go
by their own age, past the same cutoff, but never before MESSAGES_KEPT: until then the broker or a
client may still send a copy, which the record answers as the first was answered."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Callable, Literal

import peewee as pw

from flow45 import states as S
from flow45 import wire
from flow45.clock import to_utc
from flow45.db import atomic, dialect
from flow45.models import Attempt, Event, Outbox, ProcessedMessage, Run, TaskInstance, Workflow, WorkflowVersion
from flow45.store.export_file import ExportFailed, ExportFile
from flow45.views import View

FINISHED = sorted(S.FINISHED_RUN)
CHUNK = 50  # runs per transaction: short enough that a worker never waits long behind one
MESSAGES_CHUNK = 1000  # records of messages about no instance per transaction
# A message is sent again by the broker when its delivery was not acknowledged (the bridge's connection
# lost after the commit: at once; an acknowledgement held back: within the broker's consumer timeout,
# 30 minutes by default), or by a client that had no answer (within its timeout): never a day later.
MESSAGES_KEPT = dt.timedelta(days=1)
IDS_PER_STATEMENT = 1000  # within SQLite's limit on a statement's parameters
_SECRET = {"token", "callback_key"}  # a finished attempt's fencing token or key: no use in an archive


@dataclasses.dataclass(frozen=True)
class PruneReport(View):
    """What a prune removed (or, with dry_run, would remove)."""

    finished_before: dt.datetime
    dry_run: bool
    runs: int = 0
    instances: int = 0
    attempts: int = 0
    events: int = 0  # ledger events removed: none unless ledger_retention is prune
    outbox: int = 0
    processed: int = 0
    exported: int = 0  # runs written to the export
    processed_aged: int = 0  # records of messages about no instance, removed by age


def prune(
    finished_before: dt.datetime, *, ledger: Literal["keep", "prune"] = "keep", export: ExportFile | None = None,
    dry_run: bool = False, chunk: int = CHUNK, between: Callable[[], None] | None = None,
    now: dt.datetime | None = None,
) -> PruneReport:
    """Remove every run finished before `finished_before` with its instances, attempts, outbox rows,
    processed-message records and (with ledger="prune") ledger events; each run first written to
    `export` as one JSON line, if given; then the records of messages about no instance processed
    before `finished_before` and before `now` less MESSAGES_KEPT. `between` is called after each
    transaction. If the export cannot be written, ExportFailed says so and what was removed before
    (`report`)."""
    cutoff = to_utc(finished_before)
    totals = dict.fromkeys(("runs", "instances", "attempts", "events", "outbox", "processed", "exported"), 0)
    after: tuple[dt.datetime, int] | None = None
    while True:
        found = list(candidates(cutoff, after, chunk).tuples())
        if not found:
            break
        after = found[-1]
        ids = [run_id for _, run_id in found]
        try:
            counts = _count(ids, ledger) if dry_run else _prune_runs(ids, cutoff, ledger, export)
        except ExportFailed as failed:
            failed.report = PruneReport(cutoff, dry_run, **totals)
            raise
        for key, value in counts.items():
            totals[key] += value
        if between is not None:
            between()
    aged = _prune_aged_messages(min(cutoff, to_utc(now) - MESSAGES_KEPT), dry_run, between)
    return PruneReport(cutoff, dry_run, **totals, processed_aged=aged)


def _prune_aged_messages(before: dt.datetime, dry_run: bool, between: Callable[[], None] | None) -> int:
    """Remove (count, with `dry_run`) the records of messages about no instance processed before
    `before`, oldest first, MESSAGES_CHUNK per transaction."""
    if dry_run:
        return (ProcessedMessage.select()
                .where(ProcessedMessage.instance.is_null() & (ProcessedMessage.processed_at < before)).count())
    removed = 0
    while True:
        with atomic():
            some = dialect().aged_messages(before, MESSAGES_CHUNK)
            if some:
                ProcessedMessage.delete().where(ProcessedMessage.message_id.in_(some)).execute()
        removed += len(some)
        if len(some) < MESSAGES_CHUNK:
            return removed
        if between is not None:
            between()


def candidates(cutoff: dt.datetime, after: tuple[dt.datetime, int] | None, limit: int) -> pw.Select:
    """The next runs finished before the cutoff, oldest first, through the (finished_at, id) index."""
    query = Run.select(Run.finished_at, Run.id).where((Run.finished_at < cutoff) & Run.status.in_(FINISHED))
    if after is not None:
        query = query.where(pw.Tuple(Run.finished_at, Run.id) > pw.Tuple(*after))
    return query.order_by(Run.finished_at, Run.id).limit(limit)


def _instances_of(run_ids: list[int]):
    return TaskInstance.select(TaskInstance.id).where(TaskInstance.run.in_(run_ids))


def _count(run_ids: list[int], ledger: str) -> dict[str, int]:
    counts: dict[str, int] = {}
    for name, model, where in _rows(run_ids, ledger):
        counts[name] = counts.get(name, 0) + model.select().where(where).count()
    return counts


def _prune_runs(run_ids: list[int], cutoff: dt.datetime, ledger: str, export: ExportFile | None) -> dict[str, int]:
    """One transaction: lock the runs, keep only those still finished before the cutoff, export them,
    then remove their rows, children first."""
    with atomic():
        locked = dialect().for_update(Run.select().where(Run.id.in_(run_ids)).order_by(Run.id))
        runs = [r for r in locked if r.status in S.FINISHED_RUN and r.finished_at is not None and r.finished_at < cutoff]
        if not runs:
            return {}
        ids = [r.id for r in runs]
        if export is not None:
            export.append(_export_lines(runs))  # on the disk before the rows go
        counts: dict[str, int] = {}
        for name, query in deletes(ids, ledger):
            counts[name] = counts.get(name, 0) + query.execute()
        counts["exported"] = len(runs) if export is not None else 0
    return counts


def deletes(run_ids: list[int], ledger: str) -> list[tuple[str, pw.Query]]:
    """The statements that remove these runs' rows, children first."""
    return [(name, model.delete().where(where)) for name, model, where in _rows(run_ids, ledger)]


def _rows(run_ids: list[int], ledger: str) -> list[tuple[str, type[pw.Model], pw.Expression]]:
    """These runs' rows, table by table, children first. Each names the ids it finds them by, so
    that whatever the table's size they are found through an index, never by a scan."""
    instances = [i for (i,) in _instances_of(run_ids).tuples()]
    found: list[tuple[str, type[pw.Model], pw.Expression]] = []
    for start in range(0, len(instances), IDS_PER_STATEMENT):
        some = instances[start:start + IDS_PER_STATEMENT]
        found += [("attempts", Attempt, Attempt.instance.in_(some)), ("outbox", Outbox, Outbox.instance.in_(some)),
                  ("processed", ProcessedMessage, ProcessedMessage.instance.in_(some))]
    if ledger == "prune":
        found.append(("events", Event, Event.run.in_(run_ids)))
    return found + [("instances", TaskInstance, TaskInstance.run.in_(run_ids)), ("runs", Run, Run.id.in_(run_ids))]


def _plain(row: dict, leave: set[str] = frozenset()) -> dict:
    return {name: value for name, value in row.items() if name not in _SECRET and name not in leave}


def _export_lines(runs: list[Run]) -> list[str]:
    """One JSON line per run: the run, its instances each with its attempts, and its ledger events.
    Rows are read as dicts: building model objects was most of an export's time."""
    ids = [r.id for r in runs]
    names = {v.id: (w.name, v.version) for v, w in
             ((v, v.workflow) for v in WorkflowVersion.select(WorkflowVersion, Workflow).join(Workflow)
              .where(WorkflowVersion.id.in_({r.version_id for r in runs})))}
    attempts: dict[int, list[dict]] = {}
    instances: dict[int, list[dict]] = {}
    events: dict[int, list[dict]] = {}
    for a in (Attempt.select().where(Attempt.instance.in_(_instances_of(ids)))
              .order_by(Attempt.instance, Attempt.number).dicts()):
        attempts.setdefault(a["instance"], []).append(_plain(a, {"instance"}))
    for i in TaskInstance.select().where(TaskInstance.run.in_(ids)).order_by(TaskInstance.id).dicts():
        instances.setdefault(i["run"], []).append({**_plain(i, {"run"}), "attempts": attempts.get(i["id"], [])})
    for e in Event.select().where(Event.run.in_(ids)).order_by(Event.id).dicts():
        events.setdefault(e["run"], []).append(_plain(e, {"run"}))
    lines = []
    for run in runs:
        workflow, version = names[run.version_id]
        head = {**_plain(run.__data__, {"workflow", "version"}), "workflow": workflow, "version": version}
        lines.append(wire.dumps({"run": head, "instances": instances.get(run.id, []), "events": events.get(run.id, [])}))
    return lines
