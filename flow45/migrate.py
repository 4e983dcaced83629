"""Schema creation and upgrades: `flow45 db upgrade`, and `deploy` and `demo` on an empty database.
Every other command needs the schema there and current (`require_schema`)."""

from __future__ import annotations

import peewee as pw

from flow45.clock import utcnow
from flow45.db import atomic, database, dialect
from flow45.errors import NoDatabase, SchemaNewer, SchemaOutdated
from flow45.models import (ALL_TABLES, TIMER_INDEXES, Attempt, Connection, Event, JSONField, Outbox, ProcessedMessage,
                           Run, ScheduleCursor, SchedulerLock, SchemaVersion, TaskInstance)
from flow45.urls import hide_password


def _create_v1() -> None:
    database.create_tables(ALL_TABLES)


def _scheduler_v2() -> None:
    """The scheduler's cursors and SQLite lease, and a small index for finding offers that may be lost."""
    database.create_tables([ScheduleCursor, SchedulerLock], safe=True)
    database.execute_sql(
        "CREATE INDEX IF NOT EXISTS task_instance_available_offered_at "
        "ON task_instance (offered_at) WHERE state = 'available'"
    )


def _callbacks_v3() -> None:
    """Callbacks: the key a parked attempt is completed with (already there if v1 made the table)."""
    if "callback_key" not in {c.name for c in database.get_columns("task_instance")}:
        database.execute_sql("ALTER TABLE task_instance ADD COLUMN callback_key VARCHAR(64)")
    database.execute_sql("CREATE INDEX IF NOT EXISTS task_instance_callback_key ON task_instance (callback_key)")


def _human_tasks_v4() -> None:
    """Human tasks: who has one, when it is due, the sweep's next moment for it (indexed), reminders
    sent, when it went overdue; and a human submit's comment on its attempt. A database created at
    this version already has them (step 1 creates the tables as the models are now)."""
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = SchemaMigrator.from_database(database.obj)
    wanted = {
        "task_instance": [("taken_by", pw.CharField(max_length=128, null=True)), ("due_at", pw.DateTimeField(null=True)),
                          ("alarm_at", pw.DateTimeField(null=True)), ("reminders_sent", pw.IntegerField(null=True)),
                          ("overdue_at", pw.DateTimeField(null=True))],
        "attempt": [("comment", pw.TextField(null=True))],
    }
    operations = []
    for table, columns in wanted.items():
        present = {column.name for column in database.get_columns(table)}
        operations += [migrator.add_column(table, name, field) for name, field in columns if name not in present]
    if not any(index.name == "task_instance_state_alarm_at" for index in database.get_indexes("task_instance")):
        operations.append(migrator.add_index("task_instance", ("state", "alarm_at")))
    migrate(*operations)


def _retention_v5() -> None:
    """Retention (`flow45 prune`): the instance a processed message was about, and the indexes that
    find a finished run's rows without a scan: runs by (finished_at, id), outbox and processed
    messages by instance. Already there on a database that step 1 created at this version."""
    from playhouse.migrate import SchemaMigrator, migrate

    migrator = SchemaMigrator.from_database(database.obj)
    operations = []
    if "instance" not in {column.name for column in database.get_columns("processed_message")}:
        operations.append(migrator.add_column("processed_message", "instance", pw.BigIntegerField(null=True)))
    for table, columns in (("run", ("finished_at", "id")), ("outbox", ("instance",)), ("processed_message", ("instance",))):
        name = f"{table}_{'_'.join(columns)}"
        if not any(index.name == name for index in database.get_indexes(table)):
            operations.append(migrator.add_index(table, columns))
    migrate(*operations)


def _connected_v6() -> None:
    """Connected workflows: which workflow each one waits on, and the run that started a connected
    run. Already there on a database that step 1 created at this version."""
    from playhouse.migrate import SchemaMigrator, migrate

    database.create_tables([Connection], safe=True)
    if "upstream_run" not in {column.name for column in database.get_columns("run")}:
        migrator = SchemaMigrator.from_database(database.obj)
        migrate(migrator.add_column("run", "upstream_run", pw.BigIntegerField(null=True)),
                migrator.add_index("run", ("upstream_run",)))


def _sla_v7() -> None:
    """A run's SLA time (the workflow's `sla` after it was triggered), cleared once reported."""
    from playhouse.migrate import SchemaMigrator, migrate

    if "sla_due_at" not in {column.name for column in database.get_columns("run")}:
        migrate(SchemaMigrator.from_database(database.obj).add_column("run", "sla_due_at", pw.DateTimeField(null=True)))


def _pause_v8() -> None:
    """Paused workflows: since when, and whether triggers meanwhile queue or are refused."""
    from playhouse.migrate import SchemaMigrator, migrate

    columns = {column.name for column in database.get_columns("workflow")}
    migrator = SchemaMigrator.from_database(database.obj)
    if "paused_at" not in columns:
        migrate(migrator.add_column("workflow", "paused_at", pw.DateTimeField(null=True)),
                migrator.add_column("workflow", "paused_triggers", pw.CharField(max_length=8, null=True)))


def _retire_v9() -> None:
    """Retired workflows: gone from listings and schedules, their runs and ledger kept."""
    from playhouse.migrate import SchemaMigrator, migrate

    if "retired_at" not in {column.name for column in database.get_columns("workflow")}:
        migrate(SchemaMigrator.from_database(database.obj).add_column("workflow", "retired_at",
                                                                        pw.DateTimeField(null=True)))


def _lineage_v10() -> None:
    """Lineage: which upstream attempt's output each attempt received."""
    from playhouse.migrate import SchemaMigrator, migrate

    if "lineage" not in {column.name for column in database.get_columns("attempt")}:
        migrate(SchemaMigrator.from_database(database.obj).add_column("attempt", "lineage", pw.TextField(null=True)))


def _log_links_v11() -> None:
    """Log links: where an attempt's log is, or its last lines, as its worker sent them."""
    from playhouse.migrate import SchemaMigrator, migrate

    present = {column.name for column in database.get_columns("attempt")}
    migrator = SchemaMigrator.from_database(database.obj)
    migrate(*[migrator.add_column("attempt", name, field) for name, field in (
        ("log_url", pw.CharField(max_length=2048, null=True)), ("log_tail", pw.TextField(null=True)))
        if name not in present])


def _run_counts_v12() -> None:
    """A team's counts per status read from an index alone (the runs screen's header). Already there
    on a database that step 1 created at this version."""
    from playhouse.migrate import SchemaMigrator, migrate

    if not any(index.name == "run_team_status" for index in database.get_indexes("run")):
        migrate(SchemaMigrator.from_database(database.obj).add_index("run", ("team", "status")))


# table -> its indexes whose columns lead a wider index of the table, which finds the same rows:
# each write maintained both (and every state change of an instance rewrites its index entries).
REDUNDANT_INDEXES = {"task_instance": ("task_instance_run_id",), "attempt": ("attempt_instance_id",),
                     "run": ("run_team", "run_workflow_id"), "workflow_version": ("workflow_version_workflow_id",)}


def _lean_indexes_v13() -> None:
    """Drop the indexes that a wider index of the same table leads with (peewee made one per foreign
    key). Already gone on a database that step 1 created at this version."""
    for names in REDUNDANT_INDEXES.values():
        for name in names:
            database.execute_sql(f"DROP INDEX IF EXISTS {name}")


def _pending_by_team_v14() -> None:
    """Each team's unsent outbox rows in the relay's order, apart: the relay takes the teams in turn
    (`outbox.pending`), so one team's backlog of offers does not hold up another team's."""
    database.execute_sql("CREATE INDEX IF NOT EXISTS outbox_pending_by_team ON outbox (team, priority DESC, id) "
                         "WHERE sent_at IS NULL")


def _one_pending_index_v15() -> None:
    """The outbox's index of every row by (sent_at, priority, id) goes: the relay reads each team's
    unsent rows by `outbox_pending_by_team`, and every offer paid for both (written with its row,
    and again when marked sent). Already gone on a database that step 1 created at this version."""
    database.execute_sql("DROP INDEX IF EXISTS outbox_sent_at_priority_id")


def _row_check_v16() -> None:
    """The check a bridge's batch makes of the runs it kept from its last commit
    (flow45.store.run_cache); a function on PostgreSQL, nothing on SQLite."""
    dialect().create_row_check()


def _timer_indexes_v17() -> None:
    """The sweeps' indexes of task instances hold only the rows whose timer is set (`TIMER_INDEXES`),
    and the index by team, function and state leads with the state: each index of every row goes, and
    is made again as the model has it. Already so on a database that step 1 created at this version."""
    made = {index.name: index.sql for index in database.get_indexes("task_instance")}
    for name in TIMER_INDEXES:
        if name in made and " WHERE " not in made[name].upper():
            database.execute_sql(f'DROP INDEX "{name}"')
    database.execute_sql("DROP INDEX IF EXISTS task_instance_team_function_state")
    TaskInstance._schema.create_indexes(safe=True)


def _task_timeout_v18() -> None:
    """A task's `timeout`: the running attempt's hard deadline. Already there on a database that step 1
    created at this version."""
    from playhouse.migrate import SchemaMigrator, migrate

    if "timeout_at" not in {column.name for column in database.get_columns("task_instance")}:
        migrate(SchemaMigrator.from_database(database.obj).add_column("task_instance", "timeout_at",
                                                                      pw.DateTimeField(null=True)))


def _last_run_v19() -> None:
    """Runs by (workflow, id): each workflow's latest run for `flow45 workflows`. Already there on a
    database that step 1 created at this version."""
    Run._schema.create_indexes(safe=True)


def _checkpoints_v20() -> None:
    """An attempt's checkpoint (flow45.checkpoints). Already there on a database that step 1 created at
    this version."""
    from playhouse.migrate import SchemaMigrator, migrate

    if "checkpoint" not in {column.name for column in database.get_columns("attempt")}:
        migrate(SchemaMigrator.from_database(database.obj).add_column("attempt", "checkpoint", JSONField(null=True)))


def _run_keys_v21() -> None:
    """A run's key (flow45.run_keys), one run per key of a workflow. Already there on a database that
    step 1 created at this version."""
    from playhouse.migrate import SchemaMigrator, migrate

    if "key" not in {column.name for column in database.get_columns("run")}:
        key = pw.CharField(max_length=128, null=True)
        migrate(SchemaMigrator.from_database(database.obj).add_column("run", "key", key))
    Run._schema.create_indexes(safe=True)


def _queued_runs_v22() -> None:
    """A workflow's queued runs by their own index (flow45.models.QUEUED_RUNS_INDEX). Already there on a
    database that step 1 created at this version."""
    Run._schema.create_indexes(safe=True)


def _runs_in_place_v23() -> None:
    """Runs in their place (flow45.models.run_place): queued runs start in it, and depends_on_past's run
    before is the one before in it. Already there on a database that step 1 created at this version."""
    database.execute_sql("DROP INDEX IF EXISTS run_queued_by_workflow")
    Run._schema.create_indexes(safe=True)


def _ids_never_reused_v24() -> None:
    """The ids of runs, instances, attempts, ledger events and outbox rows are never given twice, on
    SQLite too (flow45.models.RowId): an id removed by `prune` named a new row after it. Already so on
    a database that step 1 created at this version."""
    dialect().stop_reusing_ids([model._meta.table_name for model in (Run, TaskInstance, Attempt, Event, Outbox)])


def _pending_by_key_v25() -> None:
    """Each routing key's unsent outbox rows in delivery order, apart: the local transport takes the
    most urgent rows of one key (`outbox.take`) without reading every other pending row."""
    database.execute_sql("CREATE INDEX IF NOT EXISTS outbox_pending_by_key ON outbox (routing_key, priority DESC, id) "
                         "WHERE sent_at IS NULL")


def _unowned_messages_by_age_v26() -> None:
    """The records of messages about no instance, by age (flow45.models), for `flow45 prune`. Already
    there on a database that step 1 created at this version."""
    ProcessedMessage._schema.create_indexes(safe=True)


# Each step takes the schema from version i to i + 1; append, never edit.
STEPS = [_create_v1, _scheduler_v2, _callbacks_v3, _human_tasks_v4, _retention_v5, _connected_v6, _sla_v7, _pause_v8, _retire_v9,
         _lineage_v10, _log_links_v11, _run_counts_v12, _lean_indexes_v13,
         _pending_by_team_v14, _one_pending_index_v15, _row_check_v16, _timer_indexes_v17,
         _task_timeout_v18, _last_run_v19, _checkpoints_v20, _run_keys_v21,
         _queued_runs_v22, _runs_in_place_v23, _ids_never_reused_v24, _pending_by_key_v25,
         _unowned_messages_by_age_v26]
CURRENT = len(STEPS)


def schema_version() -> int:
    if not database.table_exists(SchemaVersion._meta.table_name):
        return 0
    row = SchemaVersion.select().order_by(SchemaVersion.version.desc()).first()
    return row.version if row else 0


def upgrade() -> tuple[int, int]:
    """Apply every missing step; returns (version before, version after)."""
    with dialect().changing_schema(), atomic():
        before = schema_version()
        _refuse_newer(before)
        for version in range(before, CURRENT):
            STEPS[version]()
            SchemaVersion.create(version=version + 1, applied_at=utcnow())
    return before, CURRENT


def ensure_schema() -> None:
    """Create the schema of an empty database; refuse to work on one of another version."""
    version = schema_version()
    if version == 0:
        upgrade()
    else:
        _refuse_another_version(version)


def require_schema() -> None:
    """Refuse to work on a database without the schema, or with one of another version; never creates."""
    version = schema_version()
    if version == 0:
        where = hide_password(getattr(database.obj, "flow45_url", None) or "the database")
        raise NoDatabase(f"no Flow45 schema in {where}: run `flow45 db upgrade` to create it")
    _refuse_another_version(version)


def _refuse_newer(version: int) -> None:
    if version > CURRENT:
        raise SchemaNewer(
            f"the database is at schema version {version}, newer than this Flow45 ({CURRENT}): upgrade Flow45"
        )


def _refuse_another_version(version: int) -> None:
    _refuse_newer(version)  # an older Flow45 (one rolled back) would write rows the newer does not expect
    if version < CURRENT:
        raise SchemaOutdated(
            f"the database is at schema version {version}, this Flow45 needs {CURRENT}: run `flow45 db upgrade`"
        )
