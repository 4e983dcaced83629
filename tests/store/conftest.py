"""Fixtures of the store's tests."""

from __future__ import annotations

import pytest

from flow45.store.unit import Unit


@pytest.fixture
def rows_read(monkeypatch) -> list[int]:
    """How many instance rows each read of a Unit took in."""
    counted: list[int] = []
    take = Unit._take

    def counting(self, rows):
        counted.append(len(rows))
        return take(self, rows)

    monkeypatch.setattr(Unit, "_take", counting)
    return counted
