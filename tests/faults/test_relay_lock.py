"""Only one bridge relays the outbox: its lock lives in its database session, so a dropped session
loses it at once, and a bridge relays again only once it holds it on its new session."""

from __future__ import annotations

import psycopg2
import pytest

from bridge.relay_lock import RELAY_LOCK_KEY, RelayLock
from flow45.db import connect, drop_connection

pytestmark = pytest.mark.integration


def test_a_dropped_session_loses_the_relay_lock_until_taken_again(pg):
    url = pg.create_database("relay_lock")
    connect(url)
    lock = RelayLock()
    assert lock.refresh() and lock.held
    drop_connection()  # what a failed query does: the server may already have given the lock away
    assert not lock.held
    other = psycopg2.connect(url)
    other.autocommit = True
    try:
        other.cursor().execute("SELECT pg_advisory_lock(%s)", (RELAY_LOCK_KEY,))
        assert not lock.refresh() and not lock.held, "another bridge relays now"
        other.cursor().execute("SELECT pg_advisory_unlock(%s)", (RELAY_LOCK_KEY,))
        assert lock.refresh() and lock.held
    finally:
        other.close()
        drop_connection()
