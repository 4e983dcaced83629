"""Several bridges may consume at once, but only one relays the outbox at a time, so no row is
published twice by two of them. PostgreSQL: a session advisory lock on the bridge's own connection,
lost with it. SQLite: one process, always the relay.

The lock belongs to one database session: once that connection is dropped (a restart, a crash, a
network cut) the lock is gone, maybe taken by another bridge, so `held` turns false at once and
stays false until `refresh()` takes it again on the new session. Rows read for relaying are read on
the locked session itself, so a read that succeeds proves the lock was still held."""

from __future__ import annotations

from flow45.db import database, is_sqlite

RELAY_LOCK_KEY = 45_0001


class RelayLock:
    def __init__(self) -> None:
        self._held = False
        self._session = None  # the DB-API connection the lock was taken on

    @property
    def held(self) -> bool:
        if not self._held:
            return False
        if is_sqlite():
            return True
        return not database.is_closed() and database.connection() is self._session

    def lose(self) -> None:
        """The connection failed: whatever it held is gone."""
        self._held = False
        self._session = None

    def refresh(self) -> bool:
        if is_sqlite():
            self._held = True
            return True
        # Asked each tick: a reconnected session has lost the lock. Only try when not holding it,
        # since the lock stacks per call.
        (mine,) = database.execute_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
            " AND pid = pg_backend_pid() AND granted)", (RELAY_LOCK_KEY,),
        ).fetchone()
        if not mine:
            (mine,) = database.execute_sql("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,)).fetchone()
        self._held = bool(mine)
        self._session = database.connection() if mine else None
        return self._held
