"""A schedule's `start` and `end`: no run for a tick outside them, whatever the catchup policy, the
scheduler's absences, or the clocks changing in the schedule's timezone."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import Flow45Error
from flow45.scheduler import tick
from flow45.timing import next_run_text
from tests.scheduler.helpers import deploy_at, logical_times, scheduled, skip_events, tick_every

pytestmark = pytest.mark.usefixtures("store_db")

D = dt.datetime
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


def windowed(catchup: str, window: str, cron: str = "30 2 * * *", timezone: str = "Europe/Amsterdam") -> str:
    return scheduled(cron, timezone=timezone, catchup=catchup).replace(
        f"catchup: {catchup}}}", f"catchup: {catchup}, {window}}}")


def test_runs_only_on_the_days_from_its_start_to_its_end_across_the_spring_forward_night(tmp_path):
    """02:30 does not exist in Amsterdam on 29 March 2026: that night's run is at 03:00 CEST (01:00
    UTC). `end` as a date covers its whole local day; the next day's tick is not run."""
    deploy_at(tmp_path, windowed("all", 'start: "2026-03-27", end: "2026-03-30"'), D(2026, 3, 20, 12))
    tick_every(D(2026, 3, 20, 12), D(2026, 4, 2, 12), HOUR)
    assert logical_times() == [D(2026, 3, 27, 1, 30), D(2026, 3, 28, 1, 30), D(2026, 3, 29, 1, 0),
                               D(2026, 3, 30, 0, 30)]


@pytest.mark.parametrize("catchup, made", [
    ("all", [D(2026, 3, 5, 6), D(2026, 3, 6, 6), D(2026, 3, 7, 6)]),
    ("latest", [D(2026, 3, 7, 6)]),  # the newest tick before the end, though the end is long past
    ("none", []),  # that tick is not on time when the scheduler comes back
])
def test_a_scheduler_away_over_the_end_runs_by_its_policy_and_never_past_the_end(tmp_path, catchup, made):
    deploy_at(tmp_path, windowed(catchup, 'end: "2026-03-07T06:00:00Z"', cron="0 6 * * *", timezone="UTC"),
              D(2026, 3, 4, 12))
    for now in (D(2026, 3, 12, 12), D(2026, 3, 13, 6, 0, 1), D(2026, 4, 1, 6, 0, 1)):
        assert tick(now).errors == []
    assert logical_times() == made
    if catchup != "all":
        assert sum(skip["ticks"] for skip in skip_events()) == 3 - len(made)


def test_a_start_after_the_deploy_waits_for_it_then_runs_each_tick(tmp_path):
    deploy_at(tmp_path, windowed("all", 'start: "2026-03-10T06:00"', cron="0 6 * * *"), D(2026, 3, 1, 12))
    tick_every(D(2026, 3, 1, 12), D(2026, 3, 11, 12), 6 * HOUR)
    # 06:00 in Amsterdam is 05:00 UTC in winter
    assert logical_times() == [D(2026, 3, 10, 5), D(2026, 3, 11, 5)]


def test_backfill_keeps_to_the_window_and_refuses_a_range_outside_it(tmp_path):
    deploy_at(tmp_path, windowed("latest", 'start: "2026-01-10", end: "2026-01-12"', cron="0 6 * * *",
                                 timezone="UTC"), D(2026, 3, 1, 12))
    plan = store.backfill("acme", "nightly", D(2026, 1, 1), D(2026, 1, 31), actor="ann", now=D(2026, 3, 1, 12))
    assert [item.logical_time for item in plan.items] == [D(2026, 1, 10, 6), D(2026, 1, 11, 6), D(2026, 1, 12, 6)]
    with pytest.raises(Flow45Error) as refused:
        store.backfill("acme", "nightly", D(2025, 12, 1), D(2025, 12, 31), actor="ann", dry_run=True)
    assert refused.value.message == ("backfill acme/nightly: its schedule runs from 2026-01-10 until 2026-01-12 "
                                     "(UTC), which that range lies outside of")


def test_workflows_shows_the_window_and_an_ended_schedule(tmp_path):
    deploy_at(tmp_path, windowed("all", 'start: "2026-03-05", end: "2026-03-06"', cron="0 6 * * *",
                                 timezone="UTC"), D(2026, 3, 1, 12))
    [view] = store.list_workflows("acme")
    assert (view.schedule, view.next_run, view.schedule_ended) == (
        "0 6 * * * UTC from 2026-03-05 until 2026-03-06", D(2026, 3, 5, 6), False)
    tick(D(2026, 3, 7, 12))
    [view] = store.list_workflows("acme")
    assert (view.next_run, view.schedule_ended) == (None, True)
    assert next_run_text(view, D(2026, 3, 7, 12), dt.timedelta(minutes=1)) == ("ended", False)
    assert logical_times() == [D(2026, 3, 5, 6), D(2026, 3, 6, 6)]
