"""PostgreSQL's advisory locks: the scheduler's, on a connection of its own, and the relay's, on the
shared connection of its thread."""

from __future__ import annotations

import contextlib
import datetime as dt
import logging

import peewee

log = logging.getLogger("flow45.scheduler")


class SessionLock:
    """A session advisory lock on the shared connection of this thread, lost with it. Asked each
    tick: a reconnected session has lost the lock. Only taken when not held (the lock stacks per call)."""

    def __init__(self, db: peewee.Database, key: int) -> None:
        self._db, self._key = db, key
        self._held = False
        self._session = None  # the DB-API connection the lock was taken on

    @property
    def held(self) -> bool:
        return self._held and not self._db.is_closed() and self._db.connection() is self._session

    def lose(self) -> None:
        self._held = False
        self._session = None

    def refresh(self) -> bool:
        (mine,) = self._db.execute_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
            " AND pid = pg_backend_pid() AND granted)", (self._key,),
        ).fetchone()
        if not mine:
            (mine,) = self._db.execute_sql("SELECT pg_try_advisory_lock(%s)", (self._key,)).fetchone()
        self._held = bool(mine)
        self._session = self._db.connection() if mine else None
        return self._held


class AdvisoryLock:
    """PostgreSQL: a session advisory lock, held on a connection of its own for as long as the
    scheduler lives. When the process dies its session ends and the lock goes to the next waiter."""

    def __init__(self, dialect, key: int):
        self.dialect = dialect
        self.key = key
        self.conn = None
        self.held = False

    def _connect(self):
        return self.dialect.own_session("flow45-scheduler-lock")

    def _query(self, sql: str, params: tuple = ()):
        with self.conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchone() if cursor.description else None

    def hold(self, now: dt.datetime, wait: float = 0.0) -> bool:
        """True while this scheduler holds the lock; else try to take it, waiting up to `wait` seconds."""
        import psycopg2

        try:
            if self.held:
                self._query("SELECT 1")  # a live session still holds its lock
                return True
            if self.conn is None or self.conn.closed:
                self.conn = self._connect()
            if wait <= 0:
                self.held = bool(self._query("SELECT pg_try_advisory_lock(%s)", (self.key,))[0])
            else:
                self._query(f"SET lock_timeout = {max(1, int(wait * 1000))}")
                try:
                    self._query("SELECT pg_advisory_lock(%s)", (self.key,))
                    self.held = True
                except psycopg2.errors.LockNotAvailable:
                    self.held = False
                finally:
                    self._query("SET lock_timeout = 0")
        except psycopg2.Error as exc:
            if self.held:
                log.error("scheduler lock lost: its connection failed (%s)", str(exc).strip())
            self.close()
        return self.held

    def holder(self) -> str | None:
        """Who holds the lock, as the database sees it (for the log)."""
        if self.conn is None or self.conn.closed:
            return None
        try:
            row = self._query(
                "SELECT a.pid, a.client_addr, a.backend_start FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid "
                "WHERE l.locktype = 'advisory' AND l.granted AND l.objid = (%s::bigint & 4294967295)::oid "
                "AND l.classid = ((%s::bigint >> 32) & 4294967295)::oid",
                (self.key, self.key),
            )
        except Exception:  # noqa: BLE001 - only for the log
            return None
        if row is None:
            return None
        return f"backend pid {row[0]} from {row[1] or 'local socket'} since {row[2]:%Y-%m-%d %H:%M:%S}"

    def release(self) -> None:
        if self.held and self.conn is not None and not self.conn.closed:
            with contextlib.suppress(Exception):
                self._query("SELECT pg_advisory_unlock(%s)", (self.key,))
        self.held = False

    def close(self) -> None:
        """Drop the lock connection (the server releases the lock when the session ends)."""
        self.held = False
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None
