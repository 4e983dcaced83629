"""The one writer of the lifecycle. A `Unit` locks the runs it touches (in id order: no deadlocks
between writers), reads them with their instances as plain rows (all of them, but in a run of a wide
version: those changed, and what the rules need of the rest), lets the rules in
`flow45.store.rules` change them in memory, then stores everything they decided with one statement
per table: instances, attempts, runs, ledger events, outbox rows. A freed slot starts the workflow's
queued runs, and a finished run the runs connected to it, in the same transaction. Call it inside
one `atomic()`; a per-message verb is a unit of one message, the bridge's batch a unit of many."""

from __future__ import annotations

import datetime as dt
import functools
import json
import logging
from typing import Any, Callable, Iterable, Iterator, Sequence

from peewee import Field, ForeignKeyField, Tuple

from flow45 import states as S
from flow45 import wire
from flow45.conditions import unmet
from flow45.db import CONNECTION_ERRORS, atomic, database, dialect, versions_written_here
from flow45.errors import Flow45Error, NotFound
from flow45.models import (
    Attempt, Event, JSONField, Outbox, ProcessedMessage, Run, TaskInstance, Workflow, place_of, run_place,
)
from flow45.store import connected, rules, rules_human, timers
from flow45.store.bulk import as_json, insert_rows, update_rows
from flow45.store.outbox import OutboxMessage, announce, mark_sent_in_transaction
from flow45.store.reused_sql import first_row
from flow45.store.run_cache import MOST_INSTANCES, MOST_RUNS_READ_BACK, RunCache, kept_runs
from flow45.store.slots import AWAITED_BY, awaited, awaited_queued, note_freed, queues, why_queued
from flow45.store.specs import CurrentSpecs, VersionSpec, current_spec, version_spec, wide_versions

log = logging.getLogger("flow45.scheduler")  # each_alone's sweeps are the scheduler's
INSTANCE_COLUMNS = (
    "state", "attempt", "token", "failures", "lease_expires_at", "not_before", "offered_at", "worker",
    "progress_pct", "progress_message", "updated_at", "callback_key",
    "taken_by", "due_at", "alarm_at", "reminders_sent", "overdue_at", "timeout_at",
)
INSTANCE_CASTS = {
    "id": "bigint", "state": "varchar", "attempt": "integer", "token": "varchar", "failures": "integer",
    "lease_expires_at": "timestamp", "not_before": "timestamp", "offered_at": "timestamp", "worker": "varchar",
    "progress_pct": "double precision", "progress_message": "text", "updated_at": "timestamp",
    "callback_key": "varchar",
    "taken_by": "varchar", "due_at": "timestamp", "alarm_at": "timestamp", "reminders_sent": "integer",
    "overdue_at": "timestamp", "timeout_at": "timestamp",
}
RUN_COLUMNS = ("status", "started_at", "updated_at", "finished_at")
RUN_CASTS = {"id": "bigint", "status": "varchar", "started_at": "timestamp", "updated_at": "timestamp",
             "finished_at": "timestamp"}
ATTEMPT_CASTS = {"instance_id": "bigint", "token": "varchar", "status": "varchar", "output": "text",
                 "error": "text", "finished_at": "timestamp", "comment": "text", "log_url": "varchar",
                 "log_tail": "text", "checkpoint": "text"}


class Row:
    """A row as the engine reads it: plain attributes, as cheap to build as a tuple."""

    def __init__(self, **values: Any) -> None:
        self.__dict__.update(values)


_INSTANCE_FIELDS = [TaskInstance._meta.fields[name] for name in (
    "id", "run", "team", "task", "function", "state", "attempt", "token", "failures", "priority", "human",
    "lease_expires_at", "not_before", "offered_at", "worker", "progress_pct", "progress_message", "updated_at",
    "callback_key",
    "taken_by", "due_at", "alarm_at", "reminders_sent", "overdue_at", "timeout_at",
)]
_RUN_FIELDS = [Run._meta.fields[name] for name in (
    "id", "team", "workflow", "version", "status", "params", "started_at", "updated_at", "finished_at",
    "logical_time", "created_at",
)]


def _readers(fields: list[Field]) -> tuple[list[str], list[tuple[str, Any]], list[tuple[str, Any]]]:
    """Attribute names as peewee names them (a foreign key `run` is `run_id`), and (name, converter)
    for every column on SQLite, for the JSON columns only on PostgreSQL (psycopg2 returns the rest typed)."""
    names = [f.name + "_id" if isinstance(f, ForeignKeyField) else f.name for f in fields]
    every = [(name, f.python_value) for name, f in zip(names, fields)]
    return names, every, [(name, read) for (name, read), f in zip(every, fields) if isinstance(f, JSONField)]


def _build(readers, values: tuple) -> Row:
    names, every, json_only = readers
    row = Row.__new__(Row)
    row.__dict__ = values = dict(zip(names, values))  # not through keywords: a batch reads thousands of rows
    for name, read in dialect().typed_columns(every, json_only):
        values[name] = read(values[name])
    return row


_INSTANCE_READERS, _RUN_READERS = _readers(_INSTANCE_FIELDS), _readers(_RUN_FIELDS)
_TEAM_COLUMN = _INSTANCE_READERS[0].index("team")


def _of_teams(rows: list[tuple], named: dict[tuple, None]) -> bool:
    """Whether each instance of these rows named with a team is of that team."""
    team_of = {row[0]: row[_TEAM_COLUMN] for row in rows}
    return all(team is None or team_of.get(i) == team for i, team in named)


# The dialect fills {runs}, the condition that picks the runs to read (r) and their instances (i), and {extra}.
_SELECT = (
    "SELECT " + ", ".join(f"i.{f.column_name}" for f in _INSTANCE_FIELDS) + ", "
    + ", ".join(f"r.{f.column_name}" for f in _RUN_FIELDS)
    + "{extra} FROM task_instance i JOIN run r ON r.id = i.run_id WHERE {runs} ORDER BY r.id, i.id"
)


def _queued_first_in_place(workflow_id: int) -> Iterator[Any]:
    """The workflow's queued runs in their place (flow45.models.run_place). A run that finishes usually
    frees one slot: it reads the head of the queue, not all of it."""
    after, size = None, 4
    while True:
        page = (Run.select(Run.id, Run.version, run_place().alias("place"))
                .where((Run.workflow == workflow_id) & (Run.status == S.QUEUED)))
        if after is not None:
            page = page.where(Tuple(run_place(), Run.id) > Tuple(*after))
        page = list(page.order_by(run_place(), Run.id).limit(size))
        yield from page
        if len(page) < size:
            return
        after, size = (page[-1].place, page[-1].id), min(size * 4, 1000)


class _WholeRuns:
    """`unit.by_run[run_id]`: every instance of the run, by task, read when first wanted (a sweep
    that changes one instance of a run of thousands reads that one alone)."""

    def __init__(self, unit: Unit) -> None:
        self._unit = unit

    def __getitem__(self, run_id: int) -> dict[str, Row]:
        return self._unit.whole_run(run_id)


class Unit:
    """The rows one transaction locked, and the changes the rules made to them."""

    def __init__(self, at: dt.datetime, wake_relays: bool = True, kept: RunCache | None = None) -> None:
        """`wake_relays`: notify listening relays of the outbox rows written, on commit (False: the
        caller publishes them itself, or wakes the relay after its commit). `kept`: the runs kept from
        earlier commits, taken instead of read where the batch's runs all are, and given those of this
        one after its commit (`read_back`)."""
        self.kept = kept if kept is not None and dialect().keeps_runs else None
        self.changes = self._fresh_changes(at)
        self.wake_relays = wake_relays
        self.runs: dict[int, Row] = {}
        self.instances: dict[int, Row] = {}
        self.by_run = _WholeRuns(self)
        self._of_run: dict[int, dict[str, Row]] = {}  # run -> the instances read of it, by task
        self._whole: set[int] = set()  # runs every instance of which is read
        self.written: list[OutboxMessage] = []  # outbox rows stored, for a relay in this process
        self.sent: list[int] = []  # outbox rows the broker confirmed, marked sent with the next writes
        self._given: dict[int, dict] = {}  # instance -> the inputs it receives, once worked out
        self._not_done_by_run: dict[int, dict[str, str]] = {}  # run -> task -> state of those not done
        self._current = CurrentSpecs()  # workflow -> its current version, once read here
        self.limits_changed_here = versions_written_here()  # a deploy's: read the limits in force here

    @property
    def at(self) -> dt.datetime:
        return self.changes.at

    # ---- reading -----------------------------------------------------------------------------

    def lock_instances(self, ids: Iterable[int], message_keys: Iterable[str] = (),
                       whole_runs: bool = True, teams: Iterable[str | None] | None = None) -> dict[str, Any]:
        """Lock and read the runs of these instances (`whole_runs`: with every instance of them, but
        in a wide run, known by its version; else these instances alone), the others read when
        wanted; returns the replies already stored for the message keys (read after the locks, so a
        concurrent copy of a message is seen). `teams`, beside the ids: the team each was named by
        (None: any); an instance of another team is left unread, so its run is not locked."""
        return self._lock("instance" if whole_runs else "instance_alone", self._unread(ids, teams, self.instances),
                          list(set(message_keys)))

    def lock_runs(self, ids: Iterable[int], teams: Iterable[str | None] | None = None) -> None:
        self._lock("run", self._unread(ids, teams, self.runs), [])

    @staticmethod
    def _unread(ids: Iterable[int], teams: Iterable[str | None] | None, read: dict[int, Row]) -> dict[tuple, None]:
        """The (id, team) pairs wanted, once each, but those read already."""
        named = zip(ids, teams) if teams is not None else ((i, None) for i in ids)
        return dict.fromkeys(pair for pair in named if pair[0] not in read)

    def _lock(self, wanted_are: str, named: dict[tuple, None], keys: list[str]) -> dict[str, Any]:
        if not named and not keys:
            return {}
        wanted = [i for i, _ in named]
        teams = [team for _, team in named] if any(team is not None for _, team in named) else None
        if wanted_are == "instance" and self.kept is not None and not self.runs:
            hit = self.kept.find(wanted)
            if hit is not None and (teams is None or _of_teams(hit.rows, named)):
                dialect().check_kept(hit.run_ids, hit.versions, keys)  # locked and checked with the next statement
                self._take(hit.rows)
                self._whole.update(hit.run_ids)
                return {}  # a message applied already fails the check: then read as below
        wide = wide_versions() if wanted_are == "instance" else []
        rows, seen = dialect().lock_and_read(_SELECT, wanted_are, wanted, keys, wide, teams)
        self._take(rows)
        if wanted_are != "instance_alone":
            self._whole.update(run for run in {row[1] for row in rows} if self.runs[run].version_id not in wide)
        return seen

    def _take(self, rows: list[tuple]) -> None:
        split = len(_INSTANCE_FIELDS)
        for row in rows:
            run_id = row[1]
            if run_id in self.runs and row[0] in self.instances:
                continue  # read before: the copy in memory may have changed since
            run = self.runs.get(run_id)
            if run is None:
                run = self.runs[run_id] = _build(_RUN_READERS, row[split:])
                spec = version_spec(run.version_id)
                run.timers = timers.run_timers(spec, run)
                run.assignments = (rules_human.run_assignments(spec, self.current_spec(run.workflow_id))
                                   if spec.human_tasks else {})
            instance = _build(_INSTANCE_READERS, row)
            instance.timer = run.timers.get(instance.task)
            instance.assignment = run.assignments.get(instance.task)
            self.instances[instance.id] = instance
            self._of_run.setdefault(run_id, {})[instance.task] = instance

    def whole_run(self, run_id: int) -> dict[str, Row]:
        """Every instance of a run locked here, by task."""
        if run_id not in self._whole:
            self._lock("run", {(run_id, None): None}, [])  # held already: a read, with the copies in memory kept
        return self._of_run.setdefault(run_id, {})

    def run_tasks(self, run_id: int, tasks: Iterable[str]) -> dict[str, Row]:
        """The instances of these tasks of a run locked here, by task (and maybe others)."""
        self._read_tasks([(run_id, task) for task in tasks])
        return self._of_run.setdefault(run_id, {})

    def _read_tasks(self, wanted: Iterable[tuple[int, str]]) -> None:
        """Read, in one statement, the instances of these (run, task) pairs not read yet."""
        missing = {(run, task) for run, task in wanted
                   if run not in self._whole and task not in self._of_run.get(run, ())}
        if missing:
            self._take(dialect().read_run_tasks(_SELECT, sorted(missing)))

    def _inputs_from(self, instance: Row) -> dict[str, Row]:
        """The instances the task's declared inputs come from, by task."""
        return self.run_tasks(instance.run_id, self.task(instance).inputs.values())

    def instance(self, instance_id: int, team: str | None = None) -> Row:
        found = self.instances.get(instance_id)
        if found is None or (team is not None and found.team != team):
            raise NotFound(f"task instance {instance_id} not found" + (f" for team {team}" if team else ""))
        return found

    def run(self, run_id: int, team: str | None = None) -> Row:
        found = self.runs.get(run_id)
        if found is None or (team is not None and found.team != team):
            raise NotFound(f"run {run_id} not found" + (f" for team {team}" if team else ""))
        return found

    def run_of(self, instance: Row) -> Row:
        return self.runs[instance.run_id]

    def spec(self, run_id: int) -> VersionSpec:
        return version_spec(self.runs[run_id].version_id)

    def task(self, instance: Row):
        return self.spec(instance.run_id).task(instance.task)

    def current_spec(self, workflow_id: int) -> VersionSpec:
        """The workflow's current version, read once in this transaction: its limits and groups are those in
        force for every run."""
        return self._current[workflow_id]

    def _fresh_changes(self, at: dt.datetime) -> rules.Changes:
        changes = rules.Changes(at)
        changes.unmet = self._unmet
        changes.upstream_states = self._upstream_states
        changes.why_queued = functools.partial(why_queued, self)
        changes.run_slot = self._run_slot
        changes.run_status = lambda run_id: self.runs[run_id].status
        return changes

    def _run_slot(self, run: Row) -> rules.RunSlot:
        """Whether a finished run given work again may run, or must wait queued: its workflow's
        max_active_runs all running, counted under the workflow's lock as a trigger counts them, and no
        running run waits for it (`flow45.store.slots.awaited`: else it runs past the limit)."""
        limit = self.current_spec(run.workflow_id).workflow.max_active_runs  # in force for every run
        if limit is None:
            return rules.FREE_SLOT
        lock_workflow(run.workflow_id)
        here = {r.id: r.status for r in self.runs.values() if r.workflow_id == run.workflow_id}
        stored = Run.select(Run.id).where((Run.workflow == run.workflow_id) & (Run.status == S.RUNNING)).tuples()
        running = sorted({i for (i,) in stored if i not in here} | {i for i, status in here.items() if status == S.RUNNING})
        if len(running) < limit:
            return rules.FREE_SLOT
        if (waited_for := awaited(run.workflow_id, place_of(run), run.id)) is not None:
            return rules.RunSlot(over_limit=waited_for)  # it could never start, nor that run finish
        named = ", ".join(str(i) for i in running[:5]) + (", …" if len(running) > 5 else "")
        return rules.RunSlot(waits=f"max_active_runs {limit}: run{'s' if len(running) > 1 else ''} {named} running")

    def _unmet(self, instance: Row) -> str | None:
        """Why the inputs the instance would receive (and its run's params) do not meet its task's
        `when`; None if they do."""
        inputs = self.inputs_of([instance])[instance.id]  # an input named params hides the run's
        return unmet(self.task(instance).when, {"params": self.run_of(instance).params, **inputs})

    def _upstream_states(self, instance: Row) -> dict[str, str]:
        """The states of the upstream instances of `instance`, by task."""
        upstream = self.spec(instance.run_id).upstream(instance.task)
        found = self.run_tasks(instance.run_id, upstream)
        return {task: found[task].state for task in upstream}

    def settle(self, run_id: int, actor: str) -> None:
        rules.settle_run(self.changes, self.runs[run_id], self.by_run[run_id], self.spec(run_id), actor)

    def start_new(self, run_id: int, spec: VersionSpec, actor: str) -> None:
        """Settle a running run this transaction just inserted, every instance of it pending: its roots
        are offered. Of a wide one, the roots alone are read, with the run's row (no other transaction
        sees the run before this commits: no lock to wait for), not its thousands of instances back."""
        if not spec.wide:
            self.lock_runs([run_id])
            return self.settle(run_id, actor)
        not_done = {name: S.PENDING for name in spec.order}
        candidates = spec.in_order(spec.roots())
        while candidates:  # a root skipped for its `when` on the run's params: what follows it may be ready
            found = self.run_tasks(run_id, candidates)
            skipped = rules.settle_after(self.changes, self.runs[run_id], [found[name] for name in candidates],
                                         not_done, spec, actor)
            candidates = rules.ready_after([i.task for i in skipped], not_done, spec)

    def settle_changed(self, run_id: int, changed: list[Row], actor: str) -> None:
        """Settle the run after changes to these of its instances alone (a worker's submit, fail or
        skip; a sweep's). A run not read whole is not read whole for it: only pending instances
        downstream of the changed ones can have become ready, and the run's status follows from the
        states of the instances not done, one narrow statement (a submit in a run of 5,000 tasks read
        them all: 42 ms, 34 of it the bridge's CPU)."""
        if run_id in self._whole:
            return self.settle(run_id, actor)
        spec, not_done = self.spec(run_id), self._not_done(run_id)
        ready = rules.ready_after([i.task for i in changed], not_done, spec)
        found = self.run_tasks(run_id, ready)
        skipped = rules.settle_after(self.changes, self.runs[run_id], [found[name] for name in ready], not_done, spec,
                                     actor)
        if skipped:  # skipped for their `when`: what follows them may be ready now
            self.settle_changed(run_id, skipped, actor)

    def _not_done(self, run_id: int) -> dict[str, str]:
        """Task -> state of the run's instances not done: as stored (the run is locked, and this unit's
        writes wait for its flush), with the rows in memory laid over them, each time asked."""
        not_done = self._not_done_by_run.get(run_id)
        if not_done is None:
            query = (TaskInstance.select(TaskInstance.task, TaskInstance.state)
                     .where((TaskInstance.run == run_id) & TaskInstance.state.not_in(sorted(S.DONE))))
            # The driver's rows as they come: peewee's per-row work was most of the time at 5,000.
            not_done = self._not_done_by_run[run_id] = dict(database.execute_sql(*query.sql()).fetchall())
        for task, instance in self._of_run.get(run_id, {}).items():
            if instance.state in S.DONE:
                not_done.pop(task, None)
            else:
                not_done[task] = instance.state
        return not_done

    def inputs_of(self, instances: list[Row]) -> dict[int, dict]:
        """What each instance receives from upstream; one read for all of them."""
        missing = [i for i in instances if i.id not in self._given]
        self._read_tasks((i.run_id, up) for i in missing for up in self.task(i).inputs.values())
        needed: set[int] = set()
        for instance in missing:
            spec = self.spec(instance.run_id)
            needed.update(rules.upstream_outputs_needed(instance, self._inputs_from(instance), spec))
        outputs = dict(self.changes.outputs)
        needed -= outputs.keys()
        if needed:
            sql = "SELECT instance_id, output FROM attempt WHERE instance_id {} AND status = 'succeeded' AND NOT archived"
            rows = dialect().select_in(sql, list(needed), "bigint[]")
            outputs.update((i, json.loads(output) if output is not None else None) for i, output in rows)
        for instance in missing:
            spec = self.spec(instance.run_id)
            self._given[instance.id] = rules.inputs(instance, self._inputs_from(instance), spec, outputs)
        return {i.id: self._given[i.id] for i in instances}

    def checkpoints_of(self, instances: list[Row]) -> dict[int, Any]:
        """Where each instance's earlier attempts got to: the last checkpoint of those an undo has not
        archived (flow45.checkpoints). A first attempt has none, so first attempts cost no read."""
        later = [i.id for i in instances if i.attempt > 1]
        if not later:
            return {}
        sql = ("SELECT instance_id, number, checkpoint FROM attempt WHERE instance_id {} AND checkpoint IS NOT NULL "
               "AND NOT archived")
        last: dict[int, tuple[int, str]] = {}
        for instance_id, number, checkpoint in dialect().select_in(sql, later, "bigint[]"):
            if instance_id not in last or number > last[instance_id][0]:
                last[instance_id] = (number, checkpoint)
        return {i: json.loads(checkpoint) for i, (_, checkpoint) in last.items()}

    # ---- writing -----------------------------------------------------------------------------

    def flush(self, processed: list[dict] | None = None) -> list[OutboxMessage]:
        """Store every change (and the `processed` message rows), then start the runs connected to the
        runs that finished and the queued runs of workflows that got a free slot. Returns the outbox
        rows written, in order."""
        self._write(processed or [])
        while self.changes.freed_slots or self.changes.reached:
            freed, reached, awaited_in = self.changes.freed_slots, self.changes.reached, self.changes.awaited
            self.changes = self._fresh_changes(self.at)
            # Runs connected to a run that finished here start with it (connected workflows).
            connected.start_connected(self, reached)
            # Lock the workflows (in id order, as `trigger` does); usually none has a queued run.
            for workflow_id in dialect().lock_workflows_with_queued_runs(sorted(freed)) if freed else ():
                self.start_queued(workflow_id, freed[workflow_id], workflow_id in awaited_in)
            self._write([])
        if self.kept is not None:
            self.kept.after_commit(self.runs, self._to_keep())
        return self.written

    def _to_keep(self) -> list[int]:
        """The runs to read back once this commits: the open ones read whole, of a batch of a few."""
        if len(self.runs) > MOST_RUNS_READ_BACK:
            return []
        return [run for run in sorted(self._whole)
                if self.runs[run].status == S.RUNNING and len(self._of_run.get(run, ())) <= MOST_INSTANCES]

    def start_queued(self, workflow_id: int, actor: str, awaited_here: bool = False) -> int:
        """The queued runs first in place take the free slots of the workflow's max_active_runs (its current
        version's: a deploy that changes it changes it for every run); the workflow's lock is held (else a run
        triggered meanwhile could count a finishing run as active and queue, unseen by this one).
        A paused workflow's queued runs wait for its resume (flow45.store.pause). `awaited_here`: a
        running run began to wait for a queued one here (rules.Changes.awaited): that one starts too.
        Returns how many runs it started."""
        if Workflow.select(Workflow.paused_at).where(Workflow.id == workflow_id).scalar() is not None:
            return 0
        started = 0
        active = Run.select().where((Run.workflow == workflow_id) & (Run.status == S.RUNNING)).count()
        limit = self.current_spec(workflow_id).workflow.max_active_runs  # in force for every run, not its version's
        for candidate in _queued_first_in_place(workflow_id):
            if limit is not None and active >= limit:
                break
            self.lock_runs([candidate.id])
            run = self.runs[candidate.id]
            if run.status != S.QUEUED:  # started or cancelled since the list was read
                continue
            rules.start_run(self.changes, run, self.by_run[run.id], self.spec(run.id), actor)
            active += 1
            started += 1
        for run_id, why in awaited_queued(workflow_id) if awaited_here else ():  # past the limit
            self.lock_runs([run_id])
            run = self.runs[run_id]
            if run.status == S.QUEUED:
                rules.start_run(self.changes, run, self.by_run[run.id], self.spec(run.id), AWAITED_BY,
                                {"over_max_active_runs": why})
                started += 1
        return started

    def _write(self, processed: list[dict]) -> None:
        ch = self.changes
        for instance in ch.offers:  # a task's start_within: the offer's deadline for a claim (flow45.store.sweep)
            within = self.task(instance).start_within
            if within and instance.lease_expires_at is None:
                instance.lease_expires_at = instance.offered_at + dt.timedelta(seconds=within)
        self._not_done_by_run.clear()  # stored from here on: read again if wanted
        given = self.inputs_of(ch.offers)
        deferred = dialect().deferred()  # where it can, the writes below travel in one round trip
        mark_sent_in_transaction(self.sent, self.at, deferred)
        self.sent = []
        rows = [(i.id, *(getattr(i, c) for c in INSTANCE_COLUMNS)) for i in (ch.instances[x] for x in sorted(ch.instances))]
        update_rows("task_instance", ("id",), INSTANCE_COLUMNS, rows, INSTANCE_CASTS, deferred=deferred)
        for attempt in ch.new_attempts:  # lineage: every attempt records the upstream outputs it was given
            instance = self.instances[attempt["instance"]]
            attempt["lineage"] = rules.lineage(instance, self._inputs_from(instance), self.spec(instance.run_id))
        insert_rows(Attempt, ch.new_attempts, deferred=deferred)
        ended = [(i, token, status, as_json(output), error, self.at) for i, token, status, output, error in ch.ended_attempts]
        update_rows("attempt", ("instance_id", "token"), ("status", "output", "error", "finished_at"),
                    ended, ATTEMPT_CASTS, where="{t}.status = 'running'", deferred=deferred)
        comments = [(i, token, text) for (i, token), text in ch.comments.items()]
        update_rows("attempt", ("instance_id", "token"), ("comment",), comments, ATTEMPT_CASTS, deferred=deferred)
        for column, n in (("log_url", 0), ("log_tail", 1)):  # each only where sent: the other one stays
            logs = [(i, token, sent[n]) for (i, token), sent in ch.logs.items() if sent[n] is not None]
            update_rows("attempt", ("instance_id", "token"), (column,), logs, ATTEMPT_CASTS, deferred=deferred)
        checkpoints = [(i, token, as_json(value)) for (i, token), value in ch.checkpoints.items()]
        update_rows("attempt", ("instance_id", "token"), ("checkpoint",), checkpoints, ATTEMPT_CASTS, deferred=deferred)
        runs = [(r.id, *(getattr(r, c) for c in RUN_COLUMNS)) for r in (ch.runs[x] for x in sorted(ch.runs))]
        update_rows("run", ("id",), RUN_COLUMNS, runs, RUN_CASTS, deferred=deferred)
        insert_rows(Event, ch.events, deferred=deferred)
        # Duplicates were answered under the run locks; a client reusing an id for another message is not ours to fail on.
        insert_rows(ProcessedMessage, processed, skip_conflicts=True, deferred=deferred)
        if ch.offers:
            if self.wake_relays:
                announce(deferred)
            offers = [rules.offer_row(i, self.runs[i.run_id], self.spec(i.run_id), given[i.id], self.at) for i in ch.offers]
            bodies = [r["body"] for r in offers]
            for row in offers:  # encoded once: stored, and published by the relay in this process
                row["body"] = wire.Dumped(wire.dumps(row["body"]))
            ids = insert_rows(Outbox, offers, returning="id", deferred=deferred)  # sends everything waiting
            self.written.extend(OutboxMessage(id_, r["team"], r["kind"], r["routing_key"], r["priority"], body, r["body"])
                                for id_, r, body in zip(ids, offers, bodies))
        if deferred is not None:
            deferred.send_later()  # with the commit, or whatever the transaction sends next
        if ch.may_free:
            note_freed((self.runs[i.run_id].workflow_id, i.team, i.function, i.task) for i in ch.may_free
                       if queues(self.spec(i.run_id), self.runs[i.run_id].workflow_id, i.task, i.function))
        freed, reached, awaited_in = ch.freed_slots, ch.reached, ch.awaited
        self.changes = self._fresh_changes(self.at)
        self.changes.freed_slots, self.changes.reached, self.changes.awaited = freed, reached, awaited_in


def read_back(kept: RunCache) -> None:
    """After the commit of a unit given `kept`, outside its transaction: read back the runs it left
    to keep, with their versions, and keep them."""
    runs = kept.take_to_keep()
    if runs:
        kept.keep(kept_runs(dialect().read_kept(_SELECT, runs), len(_INSTANCE_FIELDS) + len(_RUN_FIELDS)))


def each_alone(due: Sequence[Any], at: dt.datetime, change: Callable[[Unit, Row], bool],
               actor: str | None = None, written: list[OutboxMessage] | None = None) -> list[int]:
    """Apply `change` to each instance of `due` (rows with `id` and `run_id`), `alone`: the instances
    of one run in one transaction, which locks and reads the run once (a sweep must not hold many
    runs' locks at once); should that one fail, each of them in a transaction of its own, so that one
    that cannot be changed keeps no other back. `change` looks again under the lock and says whether
    it changed anything (that instance alone); the run is then settled by `actor`, if given. Returns
    the instances changed. Of a run known to be wide, the other instances are read only as wanted (to
    settle it, or by `change`): a change to one instance of a run of thousands costs about what it
    costs in a run of one. With `written`, the transactions notify no relay, and `written` gets the
    outbox rows they committed, for the caller to publish."""
    unit_written: list[OutboxMessage] = []  # of the last transaction, kept once it committed

    def change_all(run_id: int, ids: list[int]) -> list[int]:
        unit = Unit(at, wake_relays=written is None)
        unit.lock_instances(ids, whole_runs=actor is not None)
        changed = [i for i in ids if change(unit, unit.instance(i))]
        if changed:
            if actor is not None:
                unit.settle_changed(run_id, [unit.instance(i) for i in changed], actor)
            unit_written[:] = unit.flush()
        return changed

    def committed(changed: list[int]) -> list[int]:
        if written is not None and changed:
            written.extend(unit_written)
        unit_written.clear()
        return changed

    by_run: dict[int, list[int]] = {}
    for row in due:
        by_run.setdefault(row.run_id, []).append(row.id)
    changed: list[int] = []
    for run_id, ids in by_run.items():
        unit_written.clear()
        if len(ids) > 1:
            together = _together(functools.partial(change_all, run_id, ids))
            if together is not None:
                changed += committed(together)
                continue
        for i in ids:
            unit_written.clear()
            if alone(f"task instance {i}", lambda i=i: bool(change_all(run_id, [i]))):
                changed += committed([i])
    return changed


def _together(change: Callable[[], list[int]]) -> list[int] | None:
    """`change()` in one transaction; None if it failed (rolled back), for the caller to go one by one."""
    try:
        with atomic():
            return change()
    except CONNECTION_ERRORS:
        raise
    except Exception as exc:  # noqa: BLE001 - each alone next, where the one at fault is named
        log.debug("changing several instances of a run at once failed (%s); each alone", exc)
        return None


def alone(what: str, change: Callable[[], bool], doing: str = "changing it") -> bool:
    """`change()` in a transaction of its own; whether it changed anything. One that fails is logged
    and left as it was, and the sweep goes on to the others: raised, it would end the sweep at the same
    one on every tick, and no team's leases, retries, timers, human tasks or SLAs behind it would move
    again. A lost database connection is raised: nothing can go on."""
    try:
        with atomic():
            return change()
    except CONNECTION_ERRORS:
        raise
    except Flow45Error as exc:
        log.error("%s: %s; left as it was", what, exc.message)
    except Exception:  # noqa: BLE001 - see above: one must not stop the sweep for all
        log.exception("%s: %s failed; left as it was", what, doing)
    return False


# ---- writes outside the lifecycle --------------------------------------------------------------

def record_event(
    at: dt.datetime, team: str, kind: str, actor: str, *, run: int | None = None, instance: int | None = None,
    from_state: str | None = None, to_state: str | None = None, detail: Any = None,
) -> Event:
    """A ledger event that moves nothing (a deploy, a trigger, an undo's summary), stored at once."""
    return Event.create(at=at, team=team, run=run, instance=instance, kind=kind, from_state=from_state,
                        to_state=to_state, actor=actor, detail=detail)


def lock_workflow(workflow_id: int) -> Workflow:
    return _workflow_locked("lock_workflow", lambda i: dialect().for_update(Workflow.select().where(Workflow.id == i)),
                            workflow_id)


def _workflow_locked(name: str, build, workflow_id: int) -> Workflow:
    row = first_row(name, Workflow, build, workflow_id)
    if row is None:
        raise Workflow.DoesNotExist(f"workflow {workflow_id} not found")
    return row


class _LimitAdded(Exception):
    """A redeploy set a run limit between the look and the share lock."""


def lock_workflow_for_a_run(seen: Workflow) -> Workflow:
    """The workflow's row (`seen`: as read without a lock), locked to create a run: exclusively when
    its current version limits its active runs (the count must hold until this commits), else shared,
    so that triggers and the runs finishing meanwhile (which share-lock it, to start queued runs) do
    not wait for each other's commit. A limit deployed between the look and the share lock is seen
    under it: the share goes with a savepoint rolled back, and the row is locked exclusively."""
    workflow_id = seen.id
    if _limited(seen):
        return lock_workflow(workflow_id)
    try:
        with atomic():
            row = _workflow_locked("share_workflow", lambda i: dialect().for_share(Workflow.select().where(Workflow.id == i)),
                                   workflow_id)
            if _limited(row):
                raise _LimitAdded
            return row
    except _LimitAdded:
        return lock_workflow(workflow_id)


def _limited(workflow: Workflow) -> bool:
    return current_spec(workflow).workflow.max_active_runs is not None
