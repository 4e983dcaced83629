"""PostgreSQL: row locks, advisory locks, LISTEN/NOTIFY, and the engine's statements, sent on the hot
path as `postgres_statements` prepares and batches them."""

from __future__ import annotations

import contextlib
import functools
import time
import zlib
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee

from flow45.dialect import Dialect, sqlstate
from flow45.dialect.postgres_begin import LazyBeginDatabase
from flow45.dialect.postgres_locks import AdvisoryLock, SessionLock
from flow45.dialect.postgres_statements import (GENERIC_PLANS, Deferred, columns_of, insert_shape, prepared,
                                                 send_statement, update_statement)
from flow45.errors import SettingsError, TooSlow
from flow45.urls import hide_password

QUERY_CANCELED = "57014"  # SQLSTATE of a statement stopped by statement_timeout
STARTING_QUEUED_RUNS = 45_0003  # the advisory locks' upper 32 bits; the lower are the workflow's id
TAKING_SLOTS = 45_0004  # and for a task's or function's max_running slots, the lower a checksum of its name

_GENERIC_PLANS = GENERIC_PLANS.encode()
_NO_NESTED_LOOPS, _NESTED_LOOPS = b"SET LOCAL enable_nestloop = off", b"SET LOCAL enable_nestloop = on"

# Each team's pending rows from its own part of the index `outbox_pending_by_team`, teams found by
# skipping from one to the next in it: a team with 100,000 rows waiting costs another team's rows no
# more than a page. Planned afresh each time (not prepared), so that the arrays are constants, which
# PostgreSQL looks up by hash: the relay's rows in flight number thousands.
_PENDING_BY_TEAM = """SET LOCAL enable_seqscan = off;
WITH RECURSIVE teams(team) AS (
    (SELECT team FROM outbox WHERE sent_at IS NULL ORDER BY team LIMIT 1)
  UNION ALL
    SELECT (SELECT o.team FROM outbox o WHERE o.sent_at IS NULL AND o.team > teams.team ORDER BY o.team LIMIT 1)
    FROM teams WHERE teams.team IS NOT NULL)
SELECT p.id, p.team, p.kind, p.routing_key, p.priority, p.body FROM teams CROSS JOIN LATERAL (
    SELECT id, team, kind, routing_key, priority, body FROM outbox
    WHERE sent_at IS NULL AND team = teams.team AND NOT (id = ANY(%s::bigint[]))
      AND NOT (routing_key = ANY(%s::varchar[]))
    ORDER BY priority DESC, id LIMIT %s) p"""


# Each key's head of `outbox_pending_by_key`, the only plan that needs no sort once sorts are
# disabled: statistics taken while every row was sent made a take read all of its team's pending
# rows by `outbox_pending_by_team`, and sort them. Rows another take holds are passed over.
_MOST_URGENT_BY_KEY = """SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off;
SELECT o.id, o.team, o.kind, o.routing_key, o.priority, o.body FROM unnest(%s::varchar[]) AS k(routing_key)
CROSS JOIN LATERAL (
    SELECT id, team, kind, routing_key, priority, body FROM outbox
    WHERE sent_at IS NULL AND routing_key = k.routing_key
    ORDER BY priority DESC, id LIMIT %s FOR UPDATE SKIP LOCKED) o"""

# flow45.store.prune's read of the records of messages about no instance, oldest first.
AGED_MESSAGES = ("SELECT message_id FROM processed_message WHERE instance IS NULL AND processed_at < %s "
                 "ORDER BY processed_at LIMIT %s")


_LOCK_RUNS = "SELECT id FROM run WHERE id = ANY({run_ids}) ORDER BY id FOR UPDATE"  # in id order: no deadlocks
_STALE_ROWS = "F45RC"  # SQLSTATE of a failed check of kept rows (flow45.store.run_cache)
_ROW_CHECK_FUNCTION = f"""CREATE OR REPLACE FUNCTION flow45_require_unchanged(unchanged boolean) RETURNS void
LANGUAGE plpgsql AS $$
BEGIN
    IF unchanged IS NOT TRUE THEN
        RAISE EXCEPTION 'rows kept by the bridge changed since they were read' USING ERRCODE = '{_STALE_ROWS}';
    END IF;
END $$"""
# After the run locks (a statement of its own: see _lock_and_read_statements): the versions of the runs
# and of their instances, none added or gone, and none of the batch's messages applied already.
_ROWS_UNCHANGED = (
    "SELECT flow45_require_unchanged("
    "ARRAY(SELECT id::text || ':' || xmin::text FROM run WHERE id = ANY($1) ORDER BY id)"
    " || ARRAY(SELECT id::text || ':' || xmin::text FROM task_instance WHERE run_id = ANY($1) ORDER BY id) = $2"
    " AND NOT EXISTS (SELECT 1 FROM processed_message WHERE message_id = ANY($3)))"
)


def _wanted_runs(wanted_are: str, teams: str | None) -> str:
    """The run ids of the wanted ids ($1), those of their `teams` (the parameter beside $1, if any)."""
    if teams is None:
        return "$1" if wanted_are == "run" else "ARRAY(SELECT run_id FROM task_instance WHERE id = ANY($1))"
    table, run_id = ("run", "id") if wanted_are == "run" else ("task_instance", "run_id")
    # Looked up by $1 first, each row then matched with the team wanted beside its id.
    return (f"ARRAY(SELECT o.{run_id} FROM {table} o WHERE o.id = ANY($1) AND EXISTS (SELECT 1 FROM "
            f"unnest($1, {teams}) AS w(id, team) WHERE w.id = o.id AND (w.team IS NULL OR w.team = o.team)))")


@functools.lru_cache(maxsize=None)  # the engine's one SELECT, by instances or by runs
def _lock_and_read_statements(select: str, wanted_are: str, by_team: bool) -> tuple[str, str]:
    """The run locks, then the runs with their instances and the replies already stored. One round trip
    of two statements. They must be two: a statement that waited for a row lock sees the other tables
    as they were *before* the wait (READ COMMITTED re-reads only the locked row), so instances read in
    the locking statement could miss what the holder wrote. The run ids are an array, worked out
    first: a subquery joined in could be planned, with statistics that say the tables are empty, as a
    scan of every run for each run. `by_team`: the teams beside the wanted ids are the last parameter."""
    read_teams = ("$4" if wanted_are == "instance" else "$3") if by_team else None
    run_ids = _wanted_runs(wanted_are, read_teams)
    runs = f"r.id = ANY({run_ids}) AND i.run_id = ANY({run_ids})"  # both tables by key, in either join order
    if wanted_are == "instance_alone":
        runs += " AND i.id = ANY($1)"
    lock = _LOCK_RUNS.format(run_ids=_wanted_runs(wanted_are, "$2" if by_team else None))
    replies = "(SELECT json_object_agg(message_id, reply::json) FROM processed_message WHERE message_id = ANY($2))"
    if wanted_are == "instance":
        # The wanted instances, then every other instance of the runs not of a wide version ($3): two
        # parts, each by its own key. One condition with an OR was planned, with statistics that say
        # the tables are empty, as a walk of every instance.
        small = f"ARRAY(SELECT id FROM run WHERE id = ANY({run_ids}) AND version_id <> ALL($3))"
        unordered = select[:select.rindex(" ORDER BY ")]  # the engine's SELECT ends with its ORDER BY
        wanted = unordered.format(extra=f", {replies}", runs=f"{runs} AND i.id = ANY($1)")
        rest = unordered.format(extra=f", {replies}",
                                runs=f"r.id = ANY({small}) AND i.run_id = ANY({small}) AND i.id <> ALL($1)")
        return lock, f"{wanted} UNION ALL {rest} ORDER BY 2, 1"  # by run, then instance
    return lock, select.format(extra=f", {replies}", runs=runs)


def _host(netloc: str) -> str:
    """The host of a URL's network location, percent-decoded and in its own case (a socket's
    directory is a path: `urlsplit` would lower-case it)."""
    host = netloc.rpartition("@")[2]
    if host.startswith("["):  # an IPv6 address
        return host[1:host.find("]")]
    return unquote(host.partition(":")[0])



class PostgresDialect(Dialect):
    schemes = ("postgres", "postgresql")
    concurrent_writers = True

    def open(self) -> peewee.Database:
        """The URL's parts, as libpq reads them: a host that is a directory is a Unix socket's
        (`postgresql://flow45@%2Frun%2Fpostgresql/flow45`, or `?host=/run/postgresql`), and a
        parameter in the query wins over the same part before it."""
        parts = urlsplit(self.url)
        try:
            port = parts.port
        except ValueError:
            raise SettingsError(f"database URL {hide_password(self.url)}: the port must be a number "
                                "from 1 to 65535") from None
        options: dict[str, Any] = {
            "user": unquote(parts.username) if parts.username else None,
            "password": unquote(parts.password) if parts.password else None,
            "host": _host(parts.netloc) or "127.0.0.1",
            "port": port or 5432,
            **dict(parse_qsl(parts.query)),
        }
        return LazyBeginDatabase(options.pop("dbname", None) or unquote(parts.path.lstrip("/")), **options)

    def has_schema(self, timeout: float) -> bool:
        self.db.connect_params.setdefault("connect_timeout", max(1, int(timeout)))
        try:
            (found,) = self.db.execute_sql("SELECT to_regclass('schema_version') IS NOT NULL").fetchone()
        finally:
            self.db.close()
        return bool(found)

    def own_session(self, application_name: str | None = None):
        import psycopg2  # the driver peewee uses

        params = {"connect_timeout": 5, **self.db.connect_params}  # never hang a caller for long
        if application_name:
            params["application_name"] = application_name
        conn = psycopg2.connect(dbname=self.db.database, **params)
        conn.autocommit = True
        return conn

    def for_update(self, query):
        return query.for_update()

    def for_share(self, query):
        return query.for_update("FOR SHARE")

    @contextlib.contextmanager
    def time_limit(self, seconds: float):
        # Each statement's SET LOCAL rides with it and ends with the transaction: the connection keeps no limit.
        with self.db.atomic():
            connection = self.db.connection()
            connection.deadline = time.monotonic() + seconds
            try:
                yield
            except peewee.DatabaseError as exc:
                if sqlstate(exc) == QUERY_CANCELED:
                    raise TooSlow() from None
                raise
            finally:
                connection.deadline = None

    def scheduler_lock(self, holder: str, lease: float):
        from flow45.scheduler_lock import LOCK_KEY

        return AdvisoryLock(self, LOCK_KEY)

    def session_lock(self, key: int):
        return SessionLock(self.db, key)

    def open_writers(self) -> int:
        # A transaction id of its own: ids are handed out in order, so every writer open now has a smaller
        # one (the snapshot's xmax is one past the newest *ended*, above which a writer may still be open).
        # Committed at once, without waiting for the disk: it wrote nothing.
        (xid,) = self.db.execute_sql("SET LOCAL synchronous_commit = off; SELECT pg_current_xact_id()::text").fetchone()
        return int(xid)

    def oldest_open_writer(self) -> int:
        (xmin,) = self.db.execute_sql("SELECT pg_snapshot_xmin(pg_current_snapshot())::text").fetchone()
        return int(xmin)

    def notify(self, channel: str, deferred: Deferred | None = None) -> None:
        if deferred is not None:
            deferred.add(f"NOTIFY {channel}")
        else:
            self.db.execute_sql(f"NOTIFY {channel}")

    def listen(self, channel: str):
        conn = self.own_session()
        try:
            conn.cursor().execute(f"LISTEN {channel}")
        except Exception:
            conn.close()
            raise
        return conn

    def backend_id(self) -> int:
        (pid,) = self.db.execute_sql("SELECT pg_backend_pid()").fetchone()
        return pid

    def commit_without_disk_wait(self) -> None:
        self.db.execute_sql("SET LOCAL synchronous_commit = off")

    # ---- the hot path -------------------------------------------------------------------------

    def deferred(self) -> Deferred:
        return Deferred(self.db)

    def insert_rows(self, model, rows, returning=None, skip_conflicts=False, deferred=None) -> list:
        """Held in `deferred` unless values are returned (then it sends everything waiting)."""
        if not rows:
            return []
        sql, types, fields, defaults = insert_shape(model, tuple(rows[0]), returning, skip_conflicts)
        if defaults:
            rows = [{**row, **{f.name: f.default() if callable(f.default) else f.default for f in defaults}} for row in rows]
        values = [tuple(f.db_value(row[f.name]) for f in fields) for row in rows]
        statement = prepared(self.db, sql, types, columns_of(values, len(fields)))
        pending = deferred or Deferred(self.db)
        if returning:
            return [r[0] for r in pending.send(statement).fetchall()]
        pending.add_bound(statement)
        if deferred is None:
            pending.send()
        return []

    def update_rows(self, table, key, columns, rows, casts, where="", deferred=None) -> None:
        if not rows:
            return
        names = (*key, *columns)
        sql = update_statement(table, tuple(key), tuple(columns), where)
        # A hash join of the rows given with the table's, whatever the statistics say: planned on
        # statistics taken while the table looked empty, a nested loop compares every row given with
        # every row found (1,000 outbox rows marked sent: a million comparisons, 160 ms instead of 7).
        statement = b";\n".join([_NO_NESTED_LOOPS, prepared(self.db, sql, [casts[c] + "[]" for c in names],
                                                             columns_of(rows, len(names))), _NESTED_LOOPS])
        if deferred is None:  # outside the engine's transactions, which set GENERIC_PLANS first
            send_statement(self.db, _GENERIC_PLANS + b";\n" + statement)
        else:
            deferred.add_bound(statement)

    def select_in(self, sql: str, values: list, cast: str):
        return send_statement(self.db, prepared(self.db, sql.format("= ANY($1)"), [cast], [values]))

    def pending_outbox(self, limit, exclude, skip_keys):
        return self.db.execute_sql(_PENDING_BY_TEAM, (exclude, skip_keys, limit)).fetchall()

    def most_urgent_outbox(self, routing_keys, limit):
        rows = self.db.execute_sql(_MOST_URGENT_BY_KEY, (routing_keys, limit)).fetchall()
        self.db.send_later([b"SET LOCAL enable_sort = on"])
        return rows

    def aged_messages(self, before, limit):
        # A cold path, in a transaction of its own (flow45.store.prune): the settings end with it.
        sql = "SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off; " + AGED_MESSAGES
        return [key for (key,) in self.db.execute_sql(sql, (before, limit)).fetchall()]

    def lock_and_read(self, select, wanted_are, wanted, keys, wide_versions=(), teams=None):
        lock, read = _lock_and_read_statements(select, wanted_are, teams is not None)
        types, values = ["bigint[]", "varchar[]"], [wanted, keys]
        if wanted_are == "instance":
            types, values = [*types, "bigint[]"], [*values, list(wide_versions)]
        lock_types, lock_values = ["bigint[]"], [wanted]
        if teams is not None:
            types, values = [*types, "varchar[]"], [*values, list(teams)]
            lock_types, lock_values = [*lock_types, "varchar[]"], [*lock_values, list(teams)]
        statements = [_GENERIC_PLANS, prepared(self.db, lock, lock_types, lock_values),
                      prepared(self.db, read, types, values)]
        rows = send_statement(self.db, b";\n".join(statements)).fetchall()
        seen = (rows[0][-1] or {}) if rows else {}
        return rows, seen  # the replies column rides last: readers zip the columns they know

    keeps_runs = True

    def create_row_check(self):
        self.db.execute_sql(_ROW_CHECK_FUNCTION)

    def check_kept(self, run_ids, versions, keys):
        self.db.send_later([_GENERIC_PLANS, prepared(self.db, _LOCK_RUNS.format(run_ids="$1"), ["bigint[]"], [run_ids]),
                            prepared(self.db, _ROWS_UNCHANGED, ["bigint[]", "text[]", "varchar[]"],
                                     [run_ids, versions, keys])])

    def is_stale_rows(self, exc):
        return sqlstate(exc) == _STALE_ROWS

    def read_kept(self, select, run_ids):
        read = select.format(extra=", r.xmin::text, i.xmin::text", runs="r.id = ANY($1) AND i.run_id = ANY($1)")
        # Generic, as the engine's statements are: left to choose, PostgreSQL planned this one afresh
        # for every batch read back (its generic plan looked dearer), 0.16 ms each, four times its run.
        statement = prepared(self.db, read, ["bigint[]"], [run_ids])
        return send_statement(self.db, _GENERIC_PLANS + b";\n" + statement).fetchall()

    def read_run_tasks(self, select, wanted):
        # The instances' ids worked out first, each looked up by the (run, task) index. Joined in, a
        # plan made while the table looked small (a generic plan is kept) took the run from the run
        # row and compared every instance of it with every pair: 1.2 s for a fan-out of 5,000.
        runs = ("r.id = ANY($1) AND i.id = ANY(ARRAY(SELECT t.id FROM unnest($1, $2) AS w(run_id, task)"
                " JOIN task_instance t ON t.run_id = w.run_id AND t.task = w.task))")
        statement = prepared(self.db, select.format(extra="", runs=runs), ["bigint[]", "varchar[]"],
                             [[run for run, _ in wanted], [task for _, task in wanted]])
        return send_statement(self.db, b";\n".join([_GENERIC_PLANS, statement])).fetchall()

    def try_lock_slots(self, limited):
        key = (TAKING_SLOTS << 32) + zlib.crc32(limited.encode())
        return bool(self.db.execute_sql("SELECT pg_try_advisory_xact_lock(%s)", (key,)).fetchone()[0])

    def lock_workflows_with_queued_runs(self, workflow_ids):
        """One round trip, and a second only where a run is queued. The workflows are share-locked:
        a trigger of a workflow with a run limit still waits for this commit before it counts the
        active runs (it locks exclusively; one without a limit shares the lock), but runs of one
        workflow finishing on several connections do not wait for each other's commit and disk
        flush. Where a run is queued (the check after the locks sees one queued meanwhile), the
        finishers start queued runs one at a time, in turn on a transaction-level advisory lock per
        workflow: a row lock raised from share could deadlock two finishers holding the share."""
        # A scalar subquery, not EXISTS: never planned as a join that reads every queued run.
        first_queued = "(SELECT 1 FROM run WHERE workflow_id = w.id AND status = 'queued' LIMIT 1)"
        share = "SELECT id FROM workflow WHERE id = ANY($1) ORDER BY id FOR SHARE"
        queued = (f"SELECT coalesce(array_agg(id ORDER BY id), '{{}}') FROM workflow w "
                  f"WHERE id = ANY($1) AND {first_queued} IS NOT NULL")
        turns = "SELECT pg_advisory_xact_lock(($1 << 32) + id) FROM unnest($2::bigint[]) AS id ORDER BY id"
        cursor = send_statement(self.db, prepared(self.db, share, ["bigint[]"], [workflow_ids]) + b";\n"
                          + prepared(self.db, queued, ["bigint[]"], [workflow_ids]))
        waiting = cursor.fetchone()[0]
        if waiting:
            send_statement(self.db, prepared(self.db, turns, ["bigint", "bigint[]"], [STARTING_QUEUED_RUNS, waiting]),
                           cursor)
        return waiting

    def typed_columns(self, every, json_only):
        return json_only  # psycopg2 returns the other columns typed already

    def doubled_wait_elapsed(self, offered, since, at):
        return (offered + (offered - since)) <= at
