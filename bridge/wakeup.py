"""Wakes the relay when another process commits outbox rows: PostgreSQL LISTEN on a connection of
its own, its socket watched by pika's IO loop. Polling every relay_interval stays as the fallback."""

from __future__ import annotations

import logging
from typing import Callable, Iterable

import psycopg2

from flow45.db import dialect
from flow45.store.outbox import NOTIFY_CHANNEL

log = logging.getLogger("flow45.bridge")


class OutboxListener:
    def __init__(self, ioloop, on_rows: Callable[[], None], also_own: Callable[[], Iterable[int]] = tuple):
        """`also_own`: the other sessions of this bridge (its committers), whose rows it publishes from memory."""
        self._ioloop = ioloop
        self._on_rows = on_rows
        self._also_own = also_own
        self._connection = None
        self._fd: int | None = None  # kept: a dead connection no longer tells its socket
        self.own_pid: int | None = None  # this bridge's own commits: already published from memory
        self._failing = False  # said once per outage, not once per tick

    def ensure(self) -> None:
        """Listen if not listening (where the database can notify); called at start and on each
        relay tick, so a LISTEN connection lost to a database restart is opened again. Notifications
        sent while it was away are not lost work: the tick relays whatever is pending right after."""
        bound = dialect()
        self.own_pid = bound.backend_id()
        if self._connection is not None or self.own_pid is None:  # listening, or nothing to listen to
            return
        try:
            self._connection = bound.listen(NOTIFY_CHANNEL)  # a short connect timeout: never hang the IO loop
            self._fd = self._connection.fileno()
            self._ioloop.add_handler(self._fd, self._readable, self._ioloop.READ)
        except psycopg2.Error as exc:
            if not self._failing:
                log.warning("bridge: cannot listen for outbox rows (%s); polling only", str(exc).strip())
            self._failing = True
            self.close()
            return
        if self._failing:
            log.info("bridge: listening for outbox rows again")
        self._failing = False

    def _readable(self, _fd: int, _events: int) -> None:
        try:
            self._connection.poll()
            senders = {n.pid for n in self._connection.notifies}
            self._connection.notifies.clear()
        except psycopg2.Error as exc:  # the server went away: the next relay tick listens again
            log.warning("bridge: outbox listener lost its connection (%s)", " ".join(str(exc).split()))
            self.close()
            return
        if senders - {self.own_pid} - set(self._also_own()):
            self._on_rows()

    def close(self) -> None:
        if self._fd is not None:
            try:
                self._ioloop.remove_handler(self._fd)
            except Exception:  # the loop is already gone
                pass
            self._fd = None
        if self._connection is None:
            return
        try:
            self._connection.close()
        except psycopg2.Error:
            pass
        self._connection = None
