"""The tables. Rows stay inside the store; what leaves it are the views in `flow45.views`."""

from __future__ import annotations

import json
from typing import Any

import peewee as pw
from peewee import fn

from flow45 import wire
from flow45.db import database, dialect


class JSONField(pw.TextField):
    """JSON kept as text, the same on SQLite and PostgreSQL."""

    def db_value(self, value):
        return None if value is None else value if isinstance(value, wire.Dumped) else wire.dumps(value)

    def python_value(self, value):
        return None if value is None else json.loads(value)


class _NeverReused:
    """An id no row gets twice, as PostgreSQL's sequences give them. SQLite gives max(id) + 1: once
    `prune` removed the newest rows, their ids named new runs (the dialect's `never_reused_id` says
    what the column adds)."""

    def ddl(self, ctx):
        node = super().ddl(ctx)
        words = dialect().never_reused_id
        return pw.NodeList((node, pw.SQL(words))) if words else node


class RowId(_NeverReused, pw.AutoField):
    pass


class BigRowId(_NeverReused, pw.BigAutoField):
    pass


class Table(pw.Model):
    class Meta:
        database = database
        legacy_table_names = False


class SchemaVersion(Table):
    version = pw.IntegerField()
    applied_at = pw.DateTimeField()


class Team(Table):
    name = pw.CharField(max_length=64, unique=True)
    created_at = pw.DateTimeField()


class Workflow(Table):
    team = pw.CharField(max_length=64)
    name = pw.CharField(max_length=64)
    current_version = pw.IntegerField()
    created_at = pw.DateTimeField()
    updated_at = pw.DateTimeField()
    paused_at = pw.DateTimeField(null=True)  # paused: its schedule makes no runs
    paused_triggers = pw.CharField(max_length=8, null=True)  # while paused: queue | refuse
    retired_at = pw.DateTimeField(null=True)  # retired: out of listings and schedules, history kept

    class Meta:
        indexes = ((("team", "name"), True),)


class WorkflowVersion(Table):
    # indexed by (workflow, version), like every foreign key here by a wider index: not on its own
    workflow = pw.ForeignKeyField(Workflow, backref="versions", on_delete="CASCADE", index=False)
    version = pw.IntegerField()
    content_hash = pw.CharField(max_length=64)
    spec = JSONField()  # the workflow and the declared types it uses, as deployed
    deployed_by = pw.CharField(max_length=128)
    created_at = pw.DateTimeField()

    class Meta:
        indexes = ((("workflow", "version"), True),)


class Run(Table):
    id = RowId()
    team = pw.CharField(max_length=64)  # indexed by (team, status)
    workflow = pw.ForeignKeyField(Workflow, backref="runs", index=False)  # indexed by (workflow, status)
    version = pw.ForeignKeyField(WorkflowVersion)
    status = pw.CharField(max_length=16, index=True)
    params = JSONField()
    logical_time = pw.DateTimeField(null=True)
    trigger = pw.CharField(max_length=16)  # manual | api | schedule | connected | backfill
    triggered_by = pw.CharField(max_length=128)
    upstream_run = pw.BigIntegerField(null=True, index=True)  # connected: the run whose move started it
    key = pw.CharField(max_length=128, null=True)  # the caller's name for it, one run per key (flow45.run_keys)
    sla_due_at = pw.DateTimeField(null=True)  # the workflow's `sla` after creation; null once reported (or none)
    created_at = pw.DateTimeField()
    started_at = pw.DateTimeField(null=True)
    finished_at = pw.DateTimeField(null=True)
    updated_at = pw.DateTimeField()

    class Meta:
        # (finished_at, id): `flow45 prune` walks the runs finished before a cutoff, oldest first.
        # (team, status): a team's counts per status, from the index alone however many runs it kept.
        # (workflow, id): each workflow's latest run (`flow45 workflows`), one index entry away.
        indexes = ((("workflow", "logical_time"), True), (("workflow", "status"), False), (("finished_at", "id"), False),
                   (("team", "status"), False), (("workflow", "id"), False), (("workflow", "key"), True))



def run_place(run: Any = Run) -> Any:
    """A run's place in its workflow's order: its logical time (a schedule's tick, a backfill's date), else
    the moment it was made; runs of one place in the order they were made (by id). Queued runs start in
    it, and a `depends_on_past` task's run before is the one before in it, as Airflow orders by logical date."""
    return fn.COALESCE(run.logical_time, run.created_at)


def place_of(run: Any) -> Any:
    """`run_place` of a run in hand (a row, or a named tuple with both columns): its logical time, else the
    moment it was made; the day a timer's `wait_until` falls on too."""
    return run.logical_time or run.created_at


# Each workflow's runs in place: a depends_on_past task's run before, one index entry away however many
# runs other workflows made since.
Run.add_index(Run.index(Run.workflow, run_place(), Run.id, name="run_in_place"))
# A workflow's queued runs, first in place first: what a finishing run looks for (`Unit.start_queued`). Only
# queued runs are in it, so the planner takes it even when the statistics say the runs table is empty (a
# fresh store): any other index by workflow would read every run of it, at each run's end.
QUEUED_RUNS_INDEX = Run.index(Run.workflow, run_place(), Run.id, name="run_queued_in_place",
                              where=Run.status == "queued")
Run.add_index(QUEUED_RUNS_INDEX)


class TaskInstance(Table):
    id = RowId()
    run = pw.ForeignKeyField(Run, backref="instances", on_delete="CASCADE", index=False)  # indexed by (run, task)
    team = pw.CharField(max_length=64)
    task = pw.CharField(max_length=64)
    function = pw.CharField(max_length=64)
    state = pw.CharField(max_length=16)
    attempt = pw.IntegerField(default=0)  # number of the current (or next offered) attempt
    token = pw.CharField(max_length=64, null=True)  # fencing token of that attempt; null: none live
    failures = pw.IntegerField(default=0)  # failed attempts counted against `retries`
    priority = pw.IntegerField(default=0)
    human = pw.BooleanField(default=False)
    lease_expires_at = pw.DateTimeField(null=True)
    not_before = pw.DateTimeField(null=True)
    offered_at = pw.DateTimeField(null=True)
    worker = pw.CharField(max_length=128, null=True)
    progress_pct = pw.FloatField(null=True)
    progress_message = pw.TextField(null=True)
    updated_at = pw.DateTimeField()
    # A running attempt parked by its worker: whoever holds this key completes or fails it
    # (lease_expires_at is then the deadline, or null for none). Cleared when the attempt ends.
    callback_key = pw.CharField(max_length=64, null=True)  # indexed where set: TIMER_INDEXES
    # The running attempt's hard deadline, its task's `timeout` after the claim: its lease (or a
    # parked attempt's deadline) never runs past it, so the lease sweep ends it. Cleared when it ends.
    timeout_at = pw.DateTimeField(null=True)
    # Human tasks (flow45.store.rules_human): who has it, when it is due, the sweep's next moment for
    # it, reminders sent, and when its overdue outcome was applied. Null on every other task.
    taken_by = pw.CharField(max_length=128, null=True)
    due_at = pw.DateTimeField(null=True)
    alarm_at = pw.DateTimeField(null=True)
    reminders_sent = pw.IntegerField(null=True)
    overdue_at = pw.DateTimeField(null=True)

    class Meta:
        indexes = (
            (("run", "task"), True),
            # State first: the scrape, the human inbox and polling workers read live states only,
            # never the ended instances behind them.
            (("state", "team", "function"), False),
        )


# The sweeps' indexes hold only the instances whose timer is set (a lease, a retry's or a timer's
# moment, a human task's alarm, a parked attempt's key). An instance that ended has none, so it is in
# none of them, and the move that ends it writes no entry to them. A sweep compares the column, which
# tells the planner (PostgreSQL's and SQLite's) that the rows it wants are in the index.
TIMER_INDEXES = {
    name: TaskInstance.index(*(getattr(TaskInstance, c) for c in columns), name=name,
                             where=getattr(TaskInstance, columns[-1]).is_null(False))
    for name, columns in (("task_instance_state_alarm_at", ("state", "alarm_at")),
                          ("task_instance_state_lease_expires_at", ("state", "lease_expires_at")),
                          ("task_instance_state_not_before", ("state", "not_before")),
                          ("task_instance_callback_key", ("callback_key",)))
}
for _index in TIMER_INDEXES.values():
    TaskInstance.add_index(_index)


class Attempt(Table):
    id = RowId()
    instance = pw.ForeignKeyField(TaskInstance, backref="attempts", on_delete="CASCADE", index=False)
    number = pw.IntegerField()
    token = pw.CharField(max_length=64)
    status = pw.CharField(max_length=16)  # running | succeeded | failed | expired | skipped | revoked
    worker = pw.CharField(max_length=128, null=True)
    claimed_at = pw.DateTimeField()
    finished_at = pw.DateTimeField(null=True)
    output = JSONField(null=True)
    error = pw.TextField(null=True)
    archived = pw.BooleanField(default=False)  # superseded by an undo, kept for the record
    archived_by = pw.BigIntegerField(null=True)  # the undo event
    comment = pw.TextField(null=True)  # a human submit's comment
    # Lineage: parameter -> {"task", "instance", "attempt"} of the upstream output it received
    # (attempt null: the upstream was skipped and passed null); null when the task has no inputs.
    lineage = JSONField(null=True)
    log_url = pw.CharField(max_length=2048, null=True)  # where its log is, as its worker said (flow45.logs)
    log_tail = pw.TextField(null=True)  # or the log's last lines
    checkpoint = JSONField(null=True)  # where it got to, as its worker last said (flow45.checkpoints)

    class Meta:
        indexes = ((("instance", "number"), False),)


class Event(Table):
    """The ledger: append-only, one row per move."""

    id = BigRowId()
    at = pw.DateTimeField()
    team = pw.CharField(max_length=64)
    run = pw.BigIntegerField(null=True, index=True)
    instance = pw.BigIntegerField(null=True, index=True)
    kind = pw.CharField(max_length=32)
    from_state = pw.CharField(max_length=16, null=True)
    to_state = pw.CharField(max_length=16, null=True)
    actor = pw.CharField(max_length=128)
    detail = JSONField(null=True)

    class Meta:
        indexes = ((("team", "id"), False),)


class Outbox(Table):
    """Messages to publish, written in the same transaction as the change that causes them."""

    id = BigRowId()
    team = pw.CharField(max_length=64)
    kind = pw.CharField(max_length=16)  # offer | undo
    routing_key = pw.CharField(max_length=160)
    priority = pw.IntegerField(default=0)
    body = JSONField()
    instance = pw.BigIntegerField(null=True)
    created_at = pw.DateTimeField()
    sent_at = pw.DateTimeField(null=True)

    class Meta:
        # by instance: prune; unsent rows by team and by routing key: `outbox_pending_by_team` and
        # `outbox_pending_by_key` (partial, made by migrate)
        indexes = ((("instance",), False),)


class ProcessedMessage(Table):
    """Message ids already applied, recorded with the change they made, and the answer given."""

    message_id = pw.CharField(max_length=200, primary_key=True)
    team = pw.CharField(max_length=64)
    kind = pw.CharField(max_length=16)
    processed_at = pw.DateTimeField()
    reply = JSONField(null=True)
    instance = pw.BigIntegerField(null=True)  # the instance it was about, if any: pruned with its run

    class Meta:
        indexes = ((("instance",), False),)


# Records of messages about no instance (a trigger, a cancel, a note…) by age: `flow45 prune` removes
# the old ones, which no run takes with it.
ProcessedMessage.add_index(ProcessedMessage.index(ProcessedMessage.processed_at, name="processed_message_unowned_by_age",
                                                  where=ProcessedMessage.instance.is_null()))


class Connection(Table):
    """A workflow whose current version starts a run when an upstream workflow's run reaches a state
    (its `on:`); kept by deploy, read when a run finishes (flow45.store.connected)."""

    workflow = pw.ForeignKeyField(Workflow, on_delete="CASCADE", unique=True)  # the connected (downstream) one
    upstream_team = pw.CharField(max_length=64)
    upstream_workflow = pw.CharField(max_length=64)
    state = pw.CharField(max_length=16)

    class Meta:
        indexes = ((("upstream_team", "upstream_workflow", "state"), False),)


class ScheduleCursor(Table):
    """Per scheduled workflow, the newest tick the scheduler has dealt with (a run made, or passed over)."""

    workflow = pw.ForeignKeyField(Workflow, primary_key=True, on_delete="CASCADE")
    last_tick = pw.DateTimeField()
    updated_at = pw.DateTimeField()


class SchedulerLock(Table):
    """The single-scheduler lease on SQLite (PostgreSQL uses a session advisory lock instead)."""

    name = pw.CharField(max_length=64, primary_key=True)
    holder = pw.CharField(max_length=200)
    acquired_at = pw.DateTimeField()
    expires_at = pw.DateTimeField()


ALL_TABLES = [
    SchemaVersion, Team, Workflow, WorkflowVersion, Run, TaskInstance, Attempt, Event, Outbox, ProcessedMessage,
    ScheduleCursor, SchedulerLock, Connection,
]
