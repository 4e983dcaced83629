"""The outbox's unsent rows, as the relay reads them: the teams in turn, each team's most urgent first
(priority, then age), the rows in flight and those of refusing queues passed over; on both databases."""

from __future__ import annotations

import pytest

from flow45.models import Outbox
from flow45.store import outbox
from tests.store.helpers import T0

pytestmark = pytest.mark.usefixtures("store_db")


def _row(team: str, key: str = "k", priority: int = 0) -> int:
    return Outbox.create(team=team, kind="offer", routing_key=f"flow45.tasks.{team}.{key}", priority=priority,
                         body={"team": team}, created_at=T0).id


def test_the_teams_take_turns_each_most_urgent_first():
    big = [_row("big") for _ in range(6)]
    urgent = _row("big", priority=5)
    small = [_row("small"), _row("small")]
    other = _row("third", key="full")
    page = outbox.pending(limit=6)
    assert [row.id for row in page] == [urgent, small[0], other, big[0], small[1], big[1]]
    rest = outbox.pending(limit=100, exclude={row.id for row in page}, skip_keys={"flow45.tasks.big.k"})
    assert rest == []  # big's others go to a queue that refuses rows for now
    assert [row.id for row in outbox.pending(limit=100, exclude={row.id for row in page})] == big[2:]
