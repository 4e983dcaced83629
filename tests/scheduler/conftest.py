"""The scheduler tests' own fixture."""

from __future__ import annotations

import pytest

from flow45.store import schedule_runs, specs


@pytest.fixture(autouse=True)
def fresh_id_caches():
    """tests/conftest.py empties PostgreSQL with RESTART IDENTITY and keeps the connection (and so
    flow45.db.generation()), so the caches keyed by row id must be emptied between tests here."""
    specs._cache.clear()
    schedule_runs._starts.clear()
    schedule_runs._refused.clear()
    yield
