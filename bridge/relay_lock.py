"""Several bridges may consume at once, but only one relays the outbox at a time, so no row is
published twice by two of them. PostgreSQL: a session advisory lock on the bridge's own connection,
lost with it. SQLite: one process, always the relay.

The lock belongs to one database session: once that connection is dropped (a restart, a crash, a
network cut) the lock is gone, maybe taken by another bridge, so `held` turns false at once and
stays false until `refresh()` takes it again on the new session. Rows read for relaying are read on
the locked session itself, so a read that succeeds proves the lock was still held."""

from __future__ import annotations

from flow45.db import dialect

RELAY_LOCK_KEY = 45_0001


class RelayLock:
    def __init__(self) -> None:
        self._lock = None  # the bound database's session lock, made on first use

    def _session_lock(self):
        if self._lock is None:
            self._lock = dialect().session_lock(RELAY_LOCK_KEY)
        return self._lock

    @property
    def held(self) -> bool:
        return self._lock is not None and self._lock.held

    def lose(self) -> None:
        """The connection failed: whatever it held is gone."""
        if self._lock is not None:
            self._lock.lose()

    def refresh(self) -> bool:
        return self._session_lock().refresh()
