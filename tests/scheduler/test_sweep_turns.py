"""The scheduler's sweeps take the teams in turn: one team with more come due than a tick takes (a
fleet of workers gone at once, a backlog of offers nobody claims) leaves another team's leases and
lost offers to wait one tick at most, not behind all of its own."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.models import Outbox, TaskInstance
from flow45.store.schedule_runs import reoffer_lost
from tests.store.helpers import T0, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

MANY = 12


@pytest.fixture
def runs(tmp_path) -> tuple[int, int]:
    tasks = "\n".join(f"          t{n:02d}: {{function: bulk, output: Blob, lease: 60s}}" for n in range(MANY))
    deploy_text(tmp_path, f"""
    team: acme
    types:
      Blob: {{fields: {{uri: string}}}}
    workflows:
      wide:
        tasks:
{tasks}
    """)
    deploy_text(tmp_path, """
    team: rival
    types:
      Blob: {fields: {uri: string}}
    workflows:
      one:
        tasks:
          only: {function: quick, output: Blob, lease: 60s}
    """)
    return (store.trigger("acme", "wide", actor="ann", now=T0),
            store.trigger("rival", "one", actor="rita", now=T0 + dt.timedelta(seconds=10)))


def of_run(run: int) -> list[TaskInstance]:
    return list(TaskInstance.select().where(TaskInstance.run == run).order_by(TaskInstance.id))


def test_another_teams_expired_lease_goes_with_the_first_tick_however_many_are_older(runs):
    wide, one = runs
    for instance in of_run(wide):
        store.claim(instance.id, instance.token, "w", now=T0)  # leases end at T0 + 60s
    rivals = of_run(one)[0]
    store.claim(rivals.id, rivals.token, "w", now=T0 + dt.timedelta(seconds=10))  # the newest lease
    expired = store.expire_leases(T0 + dt.timedelta(minutes=5), limit=4)
    assert len(expired) == 4 and rivals.id in expired
    assert TaskInstance.get_by_id(rivals.id).state != "running"
    assert len(store.expire_leases(T0 + dt.timedelta(minutes=5), limit=100)) == MANY - 3  # the rest, later


def test_another_teams_lost_offer_is_sent_again_with_the_first_tick(runs):
    wide, one = runs
    Outbox.update(sent_at=T0).where(Outbox.sent_at.is_null()).execute()
    rivals = of_run(one)[0]
    again = reoffer_lost(T0 + dt.timedelta(minutes=5), quiet=60, limit=4)
    assert len(again) == 4 and rivals.id in again
    assert Outbox.select().where((Outbox.instance == rivals.id) & Outbox.sent_at.is_null()).count() == 1
