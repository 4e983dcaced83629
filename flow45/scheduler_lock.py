"""The single-scheduler lock: a PostgreSQL session advisory lock on a connection of its own, or on
SQLite a lease row renewed each tick. The database's dialect picks one (`scheduler_lock`)."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from typing import Protocol

from flow45.clock import iso, to_utc
from flow45.db import atomic
from flow45.models import SchedulerLock

log = logging.getLogger("flow45.scheduler")


class SchedulerLockHolder(Protocol):
    held: bool

    def hold(self, now: dt.datetime, wait: float = 0.0) -> bool: ...
    def holder(self) -> str | None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


LOCK_KEY = int.from_bytes(hashlib.blake2b(b"flow45.scheduler", digest_size=8).digest(), "big", signed=True)


class AdvisoryLock:
    """PostgreSQL: a session advisory lock, held on a connection of its own for as long as the
    scheduler lives. When the process dies its session ends and the lock goes to the next waiter."""

    def __init__(self, dialect):
        self.dialect = dialect
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
                self.held = bool(self._query("SELECT pg_try_advisory_lock(%s)", (LOCK_KEY,))[0])
            else:
                self._query(f"SET lock_timeout = {max(1, int(wait * 1000))}")
                try:
                    self._query("SELECT pg_advisory_lock(%s)", (LOCK_KEY,))
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
                (LOCK_KEY, LOCK_KEY),
            )
        except Exception:  # noqa: BLE001 - only for the log
            return None
        if row is None:
            return None
        return f"backend pid {row[0]} from {row[1] or 'local socket'} since {row[2]:%Y-%m-%d %H:%M:%S}"

    def release(self) -> None:
        if self.held and self.conn is not None and not self.conn.closed:
            with contextlib.suppress(Exception):
                self._query("SELECT pg_advisory_unlock(%s)", (LOCK_KEY,))
        self.held = False

    def close(self) -> None:
        """Drop the lock connection (the server releases the lock when the session ends)."""
        self.held = False
        if self.conn is not None:
            with contextlib.suppress(Exception):
                self.conn.close()
        self.conn = None


class LeaseLock:
    """SQLite: a row naming the holder and when its lease expires, renewed at each tick. Another
    scheduler takes over once the lease has expired without renewal."""

    NAME = "scheduler"

    def __init__(self, holder: str, ttl: float):
        self.holder_id = holder
        self.ttl = dt.timedelta(seconds=ttl)
        self.held = False
        self.other: str | None = None

    def hold(self, now: dt.datetime, wait: float = 0.0) -> bool:
        at = to_utc(now)
        with atomic():
            row = SchedulerLock.get_or_none(SchedulerLock.name == self.NAME)
            if row is None:
                SchedulerLock.create(name=self.NAME, holder=self.holder_id, acquired_at=at, expires_at=at + self.ttl)
                held = True
            elif row.holder == self.holder_id or row.expires_at <= at:
                changes = {"holder": self.holder_id, "expires_at": at + self.ttl}
                if row.holder != self.holder_id:
                    changes["acquired_at"] = at
                SchedulerLock.update(**changes).where(SchedulerLock.name == self.NAME).execute()
                held = True
            else:
                held = False
                self.other = f"{row.holder} until {iso(row.expires_at)}"
        if self.held and not held:
            log.error("scheduler lock lost: %s took over after our lease expired", self.other)
        self.held = held
        return held

    def holder(self) -> str | None:
        return self.other

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(Exception), atomic():
                SchedulerLock.delete().where(
                    (SchedulerLock.name == self.NAME) & (SchedulerLock.holder == self.holder_id)
                ).execute()
        self.held = False

    def close(self) -> None:
        self.held = False
