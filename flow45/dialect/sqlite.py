"""SQLite: one writer at a time, no row locks, no notifications; Python converts every column."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any, Sequence
from urllib.parse import unquote, urlsplit

import peewee

from flow45.dialect import Dialect
from flow45.errors import Flow45Error, NoDatabase, TooSlow

CHUNK = 500  # rows per multi-row INSERT


def sqlite_path(url: str) -> str:
    """The file of a `sqlite:///PATH` URL (`sqlite:////ABS` for an absolute one), or `:memory:`."""
    parts = urlsplit(url)
    path = unquote(url.split("://", 1)[1].lstrip("/") if parts.netloc == "" else parts.netloc + parts.path)
    return ":memory:" if path in ("", ":memory:") else ("/" + path if url.startswith("sqlite:////") else path)


def _in(values: list) -> str:
    return f"IN ({', '.join('?' * len(values))})"


def _owned(wanted: list, teams: Sequence[str | None]) -> tuple[str, list]:
    """The condition that a row `o` is one of the `wanted` ids, of the team beside it (None: any)."""
    pairs = [(i, team) for i, team in zip(wanted, teams) if team is not None]
    anyone = [i for i, team in zip(wanted, teams) if team is None]
    parts = [f"(o.id, o.team) IN (VALUES {', '.join('(?, ?)' for _ in pairs)})"] if pairs else []
    parts += [f"o.id {_in(anyone)}"] if anyone else []
    # By the ids first: the pairs alone would be looked for in every row.
    return (f"o.id {_in(wanted)} AND ({' OR '.join(parts)})",
            [*wanted, *(value for pair in pairs for value in pair), *anyone])


def _plain(values: Sequence[Any]) -> list[Any]:
    return [str(v) if hasattr(v, "isoformat") and not isinstance(v, str) else v for v in values]


class _OneProcessLock:
    """SQLite serves one process: it always holds the lock, once asked."""

    def __init__(self) -> None:
        self.held = False

    def lose(self) -> None:
        self.held = False

    def refresh(self) -> bool:
        self.held = True
        return True


class SqliteDialect(Dialect):
    schemes = ("sqlite",)

    def open(self) -> peewee.Database:
        return peewee.SqliteDatabase(
            sqlite_path(self.url),
            timeout=30,
            pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": "normal"},
        )

    def store_file(self) -> str:
        return sqlite_path(self.url)

    def has_schema(self, timeout: float) -> bool:
        path = self.store_file()
        if path == ":memory:" or not Path(path).is_file():
            raise NoDatabase(f"no Flow45 database at {self.url}: run `flow45 db upgrade` to create it")
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=timeout)
        try:
            (count,) = conn.execute(
                "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'schema_version'"
            ).fetchone()
        finally:
            conn.close()
        return bool(count)

    @contextlib.contextmanager
    def atomic(self):
        # Take the write lock at once, so two writers serialize instead of failing on lock upgrade.
        try:
            with self.db.atomic(lock_type="IMMEDIATE"):
                yield
        except peewee.OperationalError as exc:
            # A full disk (or an I/O error) rolls the transaction back inside SQLite; peewee's own
            # rollback then fails, and that second error would hide the one that says what happened.
            cause: BaseException | None = exc
            while cause is not None and "no transaction is active" in str(cause):
                cause = cause.__context__  # peewee's error, then the driver's it wraps
            if cause is not exc and isinstance(cause, peewee.DatabaseError):
                raise cause from None
            raise

    never_reused_id = "AUTOINCREMENT"  # else SQLite gives max(id) + 1

    @contextlib.contextmanager
    def changing_schema(self):
        # A table is rebuilt by dropping it: with foreign keys on, the drop would delete (cascading)
        # every row that references it. SQLite sets this only outside a transaction.
        self.db.execute_sql("PRAGMA foreign_keys = OFF")
        try:
            yield
        finally:
            self.db.execute_sql("PRAGMA foreign_keys = ON")

    def stop_reusing_ids(self, tables: Sequence[str]) -> None:
        """Rebuild each table with AUTOINCREMENT, as SQLite's own way to change a table goes: a new
        table with the same columns, its rows copied, the old one dropped, the new one renamed to it,
        its indexes made again. Its rows keep their ids; sqlite_sequence starts at the largest."""
        rebuilt = False
        for table in tables:
            (made,) = self.db.execute_sql("SELECT sql FROM sqlite_master WHERE type = 'table' AND name = ?",
                                          (table,)).fetchone()
            if "AUTOINCREMENT" in made.upper():
                continue
            if self.db.execute_sql("PRAGMA foreign_keys").fetchone() != (0,):  # in a transaction begun before
                raise Flow45Error("foreign keys are on: dropping a table would delete the rows that reference it")
            rebuilt = True
            key = '"id" INTEGER NOT NULL PRIMARY KEY'
            head = f'CREATE TABLE "{table}" ('
            if made.count(key) != 1 or not made.startswith(head):
                raise Flow45Error(f"table {table} is not as Flow45 made it: {made}")
            indexes = [sql for (sql,) in self.db.execute_sql(
                "SELECT sql FROM sqlite_master WHERE type = 'index' AND tbl_name = ? AND sql IS NOT NULL", (table,))]
            columns = ", ".join(f'"{c.name}"' for c in self.db.get_columns(table))
            self.db.execute_sql(f'CREATE TABLE "{table}__ids" (' + made[len(head):].replace(key, key + " AUTOINCREMENT"))
            self.db.execute_sql(f'INSERT INTO "{table}__ids" ({columns}) SELECT {columns} FROM "{table}"')
            self.db.execute_sql(f'DROP TABLE "{table}"')
            self.db.execute_sql(f'ALTER TABLE "{table}__ids" RENAME TO "{table}"')
            for sql in indexes:
                self.db.execute_sql(sql)
        broken = self.db.execute_sql("PRAGMA foreign_key_check").fetchall() if rebuilt else []
        if broken:
            raise Flow45Error(f"rows whose foreign keys name no row after the rebuild: {broken[:5]}")

    def for_update(self, query):
        return query  # no row locks: the IMMEDIATE transaction already serializes writers

    def for_share(self, query):
        return query

    @contextlib.contextmanager
    def time_limit(self, seconds: float):
        deadline = time.monotonic() + seconds
        connection = self.db.connection()
        # SQLite calls this every N virtual machine steps; a true answer interrupts the statement.
        connection.set_progress_handler(lambda: time.monotonic() > deadline, 10_000)
        try:
            yield
        except peewee.OperationalError as exc:
            if str(exc) == "interrupted":
                raise TooSlow() from None
            raise
        finally:
            connection.set_progress_handler(None, 0)

    def scheduler_lock(self, holder: str, lease: float):
        from flow45.scheduler_lock import LeaseLock

        return LeaseLock(holder, lease)

    def session_lock(self, key: int):
        return _OneProcessLock()

    # ---- the hot path -------------------------------------------------------------------------

    def insert_rows(self, model, rows, returning=None, skip_conflicts=False, deferred=None) -> list:
        if not rows:
            return []
        if returning is not None and len(rows) == 1:
            return [model.insert(rows[0]).execute()]
        column = getattr(model, returning) if returning is not None else None
        before = 0 if column is None else model.select(peewee.fn.MAX(column)).scalar() or 0
        for start in range(0, len(rows), CHUNK):
            query = model.insert_many(rows[start : start + CHUNK])
            (query.on_conflict_ignore() if skip_conflicts else query).execute()
        if column is None:
            return []
        # Read back, not one INSERT a row (5,000 offers took 0.6 s): a new row's id is past the
        # largest before it, and the write lock this transaction holds lets no other row in.
        return [row[0] for row in model.select(column).where(column > before).order_by(column).tuples()]

    def update_rows(self, table, key, columns, rows, casts, where="", deferred=None) -> None:
        if not rows:
            return
        assignments = ", ".join(f"{c} = ?" for c in columns)
        match = " AND ".join(f"{k} = ?" for k in key)
        extra = " AND " + where.replace("{t}.", "") if where else ""
        sql = f"UPDATE {table} SET {assignments} WHERE {match}{extra}"
        cursor = self.db.cursor()
        with peewee.__exception_wrapper__:  # sqlite3's errors as peewee's, as execute_sql raises them
            cursor.executemany(sql, [(*_plain(r[len(key):]), *r[: len(key)]) for r in rows])

    def select_in(self, sql: str, values: list, cast: str):
        return self.db.execute_sql(sql.format(_in(values)), values)

    def pending_outbox(self, limit, exclude, skip_keys):
        sql = ("SELECT id, team, kind, routing_key, priority, body FROM (SELECT *, row_number() OVER "
               "(PARTITION BY team ORDER BY priority DESC, id) AS turn FROM outbox WHERE sent_at IS NULL "
               f"AND id NOT {_in(exclude)} AND routing_key NOT {_in(skip_keys)}) ORDER BY turn, team LIMIT ?")
        return self.db.execute_sql(sql, [*exclude, *skip_keys, limit]).fetchall()

    def most_urgent_outbox(self, routing_keys, limit):
        # INDEXED BY: an index of each team's pending rows would serve too, sorted after (every pending
        # row of the team read on each take). The transaction holds the write lock already.
        sql = ("SELECT id, team, kind, routing_key, priority, body FROM outbox INDEXED BY outbox_pending_by_key "
               "WHERE sent_at IS NULL AND routing_key = ? ORDER BY priority DESC, id LIMIT ?")
        return [row for key in routing_keys for row in self.db.execute_sql(sql, [key, limit]).fetchall()]

    def aged_messages(self, before, limit):
        sql = ("SELECT message_id FROM processed_message INDEXED BY processed_message_unowned_by_age "
               "WHERE instance IS NULL AND processed_at < ? ORDER BY processed_at LIMIT ?")
        return [key for (key,) in self.db.execute_sql(sql, [*_plain([before]), limit]).fetchall()]

    def lock_and_read(self, select, wanted_are, wanted, keys, wide_versions=(), teams=None):
        # The transaction holds SQLite's one write lock already; another team's rows are not read either.
        if teams is None and wanted_are == "run":
            runs, values = f"r.id {_in(wanted)}", list(wanted)
        else:
            table, run_id = ("run", "id") if wanted_are == "run" else ("task_instance", "run_id")
            owned, values = (f"o.id {_in(wanted)}", list(wanted)) if teams is None else _owned(wanted, teams)
            runs = f"r.id IN (SELECT o.{run_id} FROM {table} o WHERE {owned})"
        if wanted_are == "instance_alone":
            runs, values = runs + f" AND i.id {_in(wanted)}", values + wanted
        elif wanted_are == "instance" and wide_versions:
            runs += f" AND (i.id {_in(wanted)} OR r.version_id NOT {_in(wide_versions)})"
            values += [*wanted, *wide_versions]
        rows = self.db.execute_sql(select.format(extra="", runs=runs), values).fetchall()
        replies = self.select_in("SELECT message_id, reply FROM processed_message WHERE message_id {}", keys, "varchar[]")
        return rows, {key: json.loads(reply) if reply is not None else None for key, reply in replies}

    def read_run_tasks(self, select, wanted):
        pairs = ", ".join("(?, ?)" for _ in wanted)
        runs = f"r.id {_in(wanted)} AND (i.run_id, i.task) IN (VALUES {pairs})"
        values = [run for run, _ in wanted] + [value for pair in wanted for value in pair]
        return self.db.execute_sql(select.format(extra="", runs=runs), values).fetchall()

    def try_lock_slots(self, limited):
        return True  # one writer at a time: the write lock is held

    def lock_workflows_with_queued_runs(self, workflow_ids):
        return list(workflow_ids)  # the write lock is held; let the caller look

    def doubled_wait_elapsed(self, offered, since, at):
        # julianday() is a float of days: allow a millisecond for its rounding
        now_days = peewee.fn.julianday(at.isoformat(" ")) + 1e-3 / 86400
        return 2 * peewee.fn.julianday(offered) - peewee.fn.julianday(since) <= now_days
