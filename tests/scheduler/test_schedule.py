"""Cron arithmetic: ticks in the workflow's timezone across DST changes, and the catchup policies.
Pure functions of time: no database."""

from __future__ import annotations

import datetime as dt
from collections import Counter

import pytest

from flow45.schedule import cron_schedule, due_ticks
from tests.scheduler.helpers import local

D = dt.datetime
MINUTE = dt.timedelta(minutes=1)


def local_days(ticks):
    return Counter(local(t).date() for t in ticks)


def test_daily_0230_across_spring_forward_runs_once_per_day_at_the_end_of_the_gap():
    # 2026-03-29: Amsterdam jumps from 02:00 CET to 03:00 CEST; 02:30 does not exist that night.
    ticks = cron_schedule("30 2 * * *", "Europe/Amsterdam").between(D(2026, 3, 27), D(2026, 3, 31))
    assert ticks == [D(2026, 3, 27, 1, 30), D(2026, 3, 28, 1, 30), D(2026, 3, 29, 1, 0), D(2026, 3, 30, 0, 30)]
    assert local(ticks[2]).strftime("%H:%M %Z") == "03:00 CEST"
    assert set(local_days(ticks).values()) == {1}


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *"])
def test_daily_across_fall_back_runs_once_per_day(cron):
    # 2026-10-25: Amsterdam goes from 03:00 CEST back to 02:00 CET; 02:00-02:59 happens twice.
    ticks = cron_schedule(cron, "Europe/Amsterdam").between(D(2026, 10, 23, 12), D(2026, 10, 27, 12))
    assert local_days(ticks) == {dt.date(2026, 10, day): 1 for day in (24, 25, 26, 27)}
    assert {local(t).strftime("%H:%M") for t in ticks} == {f"0{cron[3]}:30"}


def test_the_repeated_0230_happens_at_its_first_occurrence():
    ticks = cron_schedule("30 2 * * *", "Europe/Amsterdam").between(D(2026, 10, 24, 12), D(2026, 10, 25, 12))
    assert ticks == [D(2026, 10, 25, 0, 30)]
    assert local(ticks[0]).strftime("%H:%M %Z") == "02:30 CEST"


def test_hourly_keeps_one_tick_per_real_hour_across_both_changes():
    hourly = cron_schedule("30 * * * *", "Europe/Amsterdam")
    spring = hourly.between(D(2026, 3, 28, 23), D(2026, 3, 29, 22))  # the local day of 23 hours
    autumn = hourly.between(D(2026, 10, 24, 22), D(2026, 10, 25, 23))  # the local day of 25 hours
    for ticks, hours in ((spring, 23), (autumn, 25)):
        assert len(ticks) == hours
        assert all(b - a == dt.timedelta(hours=1) for a, b in zip(ticks, ticks[1:]))


def test_ticks_come_out_sorted_without_duplicates_around_the_changes():
    for cron in ("0,30 * * * *", "*/20 1-3 * * *", "0,30 2,3 * * *", "* 2 * * *"):
        schedule = cron_schedule(cron, "Europe/Amsterdam")
        for start in (D(2026, 3, 28, 20), D(2026, 10, 24, 20)):
            ticks = schedule.between(start, start + dt.timedelta(hours=12))
            assert ticks == sorted(set(ticks)), cron


def test_next_after_and_latest_at_agree_with_between():
    schedule = cron_schedule("15,45 */2 * * *", "Europe/Amsterdam")
    ticks = schedule.between(D(2026, 10, 24), D(2026, 10, 27))
    for earlier, later in zip(ticks, ticks[1:]):
        assert schedule.next_after(earlier) == later
        assert schedule.latest_at(later - MINUTE) == earlier
        assert schedule.latest_at(later) == later


def test_a_utc_schedule_is_plain_cron():
    schedule = cron_schedule("0 6 1 * *")
    assert schedule.between(D(2026, 1, 1), D(2026, 4, 1)) == [D(2026, 1, 1, 6), D(2026, 2, 1, 6), D(2026, 3, 1, 6)]
    assert schedule.latest_at(D(2026, 3, 1, 5, 59)) == D(2026, 2, 1, 6)


# ---- catchup ------------------------------------------------------------------------------------

DAILY = cron_schedule("0 6 * * *")
SINCE = D(2026, 3, 2, 6)  # the last tick dealt with, a Monday
BACK = D(2026, 3, 9, 12)  # a week later the scheduler is back: 7 ticks missed
ON_TIME = dt.timedelta(seconds=60)


def test_catchup_all_runs_every_missed_tick_oldest_first_in_batches():
    due = due_ticks(DAILY, "all", since=SINCE, now=BACK, on_time=ON_TIME)
    assert due.run == [D(2026, 3, day, 6) for day in range(3, 10)] and due.cursor == D(2026, 3, 9, 6)
    first = due_ticks(DAILY, "all", since=SINCE, now=BACK, on_time=ON_TIME, limit=3)
    assert first.run == [D(2026, 3, 3, 6), D(2026, 3, 4, 6), D(2026, 3, 5, 6)] and first.cursor == D(2026, 3, 5, 6)


def test_catchup_latest_runs_only_the_newest_missed_tick():
    due = due_ticks(DAILY, "latest", since=SINCE, now=BACK, on_time=ON_TIME)
    assert due.run == [D(2026, 3, 9, 6)]
    assert (due.skipped, due.first_skipped, due.last_skipped) == (6, D(2026, 3, 3, 6), D(2026, 3, 8, 6))


def test_catchup_none_runs_nothing_missed_but_a_tick_that_just_came_due():
    due = due_ticks(DAILY, "none", since=SINCE, now=BACK, on_time=ON_TIME)
    assert due.run == [] and due.skipped == 7 and due.cursor == D(2026, 3, 9, 6)
    just = due_ticks(DAILY, "none", since=due.cursor, now=D(2026, 3, 10, 6, 0, 1), on_time=ON_TIME)
    assert just.run == [D(2026, 3, 10, 6)] and just.skipped == 0


def test_nothing_due_before_the_next_tick():
    for policy in ("all", "latest", "none"):
        due = due_ticks(DAILY, policy, since=SINCE, now=D(2026, 3, 3, 5, 59), on_time=ON_TIME)
        assert due.run == [] and due.cursor is None


@pytest.mark.parametrize("cron", ["0 0 30 2 *", "0 6 31 4,6,9,11 *"])
def test_a_cron_naming_no_date_that_exists_has_no_ticks_and_nothing_is_ever_due(cron):
    # Deploy refuses such a cron; one stored before it did must not fail the scheduler's every tick.
    never = cron_schedule(cron, "Europe/Amsterdam")
    assert never.next_after(SINCE) is None and never.between(SINCE, BACK) == []
    for policy in ("all", "latest", "none"):
        due = due_ticks(never, policy, since=SINCE, now=BACK, on_time=ON_TIME)
        assert due.run == [] and due.cursor is None


def test_29_february_fires_in_leap_years_only():
    leap_day = cron_schedule("0 6 29 2 *")
    assert leap_day.next_after(D(2026, 12, 1)) == D(2028, 2, 29, 6)
    assert leap_day.between(D(2027, 1, 1), D(2033, 1, 1)) == [D(2028, 2, 29, 6), D(2032, 2, 29, 6)]
