"""Several bridges may consume at once, but only one relays the outbox at a time, so no row is
published twice by two of them. PostgreSQL: a session advisory lock, lost with the connection.
SQLite: one process, always the relay."""

from __future__ import annotations

from flow45.db import database, is_sqlite

RELAY_LOCK_KEY = 45_0001


class RelayLock:
    def __init__(self) -> None:
        self.held = False

    def refresh(self) -> bool:
        if is_sqlite():
            self.held = True
            return True
        # Asked each tick: a reconnected session has lost the lock. Only try when not holding it,
        # since the lock stacks per call.
        (mine,) = database.execute_sql(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND objid = %s"
            " AND pid = pg_backend_pid() AND granted)", (RELAY_LOCK_KEY,),
        ).fetchone()
        if not mine:
            (mine,) = database.execute_sql("SELECT pg_try_advisory_lock(%s)", (RELAY_LOCK_KEY,)).fetchone()
        self.held = bool(mine)
        return self.held
