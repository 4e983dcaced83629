"""Wakes the relay when another process commits outbox rows: PostgreSQL LISTEN on a connection of
its own, its socket watched by pika's IO loop. Polling every relay_interval stays as the fallback."""

from __future__ import annotations

import logging
from typing import Callable

import psycopg2
import psycopg2.extensions

from flow45.db import database, is_sqlite
from flow45.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger("flow45.bridge")


class OutboxListener:
    def __init__(self, ioloop, on_rows: Callable[[], None]):
        self._ioloop = ioloop
        self._on_rows = on_rows
        self._connection = None
        self.own_pid: int | None = None  # this bridge's own commits: already published from memory

    def ensure(self) -> None:
        """Listen if not listening (PostgreSQL only); called at start and on each relay tick."""
        if is_sqlite():
            return
        (self.own_pid,) = database.execute_sql("SELECT pg_backend_pid()").fetchone()
        if self._connection is not None:
            return
        try:
            self._connection = psycopg2.connect(**database.obj.connect_params, dbname=database.obj.database)
            self._connection.set_isolation_level(psycopg2.extensions.ISOLATION_LEVEL_AUTOCOMMIT)
            self._connection.cursor().execute(f"LISTEN {NOTIFY_CHANNEL}")
            self._ioloop.add_handler(self._connection.fileno(), self._readable, self._ioloop.READ)
        except psycopg2.Error as exc:
            log.warning("bridge: cannot listen for outbox rows (%s); polling only", str(exc).strip())
            self._connection = None

    def _readable(self, _fd: int, _events: int) -> None:
        try:
            self._connection.poll()
            senders = {n.pid for n in self._connection.notifies}
            self._connection.notifies.clear()
        except psycopg2.Error:
            self.close()
            return
        if senders - {self.own_pid}:
            self._on_rows()

    def close(self) -> None:
        if self._connection is None:
            return
        try:
            self._ioloop.remove_handler(self._connection.fileno())
        except Exception:  # the loop or the socket is already gone
            pass
        try:
            self._connection.close()
        except psycopg2.Error:
            pass
        self._connection = None
