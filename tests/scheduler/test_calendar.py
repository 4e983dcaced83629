"""The awkward days of the calendar, through tick(now) on both backends: the 1st of a month, New Year,
29 February and the DST changes of the example timezones. The example config's own schedules are
used where they apply, so what a team deploys is what is tested."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.config import load_config
from flow45.scheduler import tick
from tests.conftest import EXAMPLES
from tests.scheduler.helpers import deploy_at, logical_times, scheduled, tick_every

pytestmark = pytest.mark.usefixtures("store_db")

D = dt.datetime
SECOND, MINUTE, DAY = dt.timedelta(seconds=1), dt.timedelta(minutes=1), dt.timedelta(days=1)


def deploy_examples(now: dt.datetime) -> None:
    store.deploy(load_config(EXAMPLES), actor="tester", now=now)


@pytest.mark.parametrize(
    "first, expected",
    [
        (D(2026, 12, 1), D(2026, 12, 1, 5)),  # 06:00 CET
        (D(2027, 1, 1), D(2027, 1, 1, 5)),  # New Year's Day
        (D(2027, 4, 1), D(2027, 4, 1, 4)),  # 06:00 CEST, the first 1st after spring forward
        (D(2027, 11, 1), D(2027, 11, 1, 5)),  # the first 1st after fall back
        (D(2028, 3, 1), D(2028, 3, 1, 5)),  # the day after 29 February
    ],
    ids=["december", "new-year", "after-spring-forward", "after-fall-back", "after-leap-day"],
)
def test_the_monthly_report_runs_once_on_the_first_at_six_in_amsterdam(first, expected):
    deploy_examples(first - 10 * DAY)
    tick_every(first - 2 * DAY, first + DAY, 15 * MINUTE)
    assert logical_times("monthly_report") == [expected]


def test_a_tick_at_midnight_on_new_year_is_made_at_midnight_not_before(tmp_path):
    deploy_at(tmp_path, scheduled("0 0 1 1 *", catchup="all"), D(2026, 6, 1))
    assert tick(D(2026, 12, 31, 23, 59, 59, 999999)).created == []
    assert [r.logical_time for r in tick(D(2027, 1, 1)).created] == [D(2027, 1, 1)]
    assert tick(D(2027, 1, 1, 0, 0, 1)).created == []


def test_a_last_minute_of_the_year_schedule_runs_on_31_december_and_not_on_new_year(tmp_path):
    deploy_at(tmp_path, scheduled("59 23 31 12 *", catchup="all"), D(2026, 12, 30))
    tick_every(D(2026, 12, 31, 23, 58), D(2027, 1, 1, 0, 2), 30 * SECOND)
    assert logical_times() == [D(2026, 12, 31, 23, 59)]


def test_a_29_february_schedule_waits_for_the_leap_year(tmp_path):
    deploy_at(tmp_path, scheduled("0 12 29 2 *", catchup="all"), D(2026, 1, 1))
    tick_every(D(2026, 1, 1), D(2028, 3, 2), DAY)
    assert logical_times() == [D(2028, 2, 29, 12)]


def test_a_daily_schedule_has_a_run_on_29_february_and_none_missing_around_it(tmp_path):
    deploy_at(tmp_path, scheduled("30 2 * * *", catchup="all"), D(2028, 2, 27))
    tick_every(D(2028, 2, 27), D(2028, 3, 2, 12), 6 * 60 * MINUTE)
    assert [t.date() for t in logical_times()] == [
        dt.date(2028, 2, 27), dt.date(2028, 2, 28), dt.date(2028, 2, 29), dt.date(2028, 3, 1), dt.date(2028, 3, 2)]


def test_the_nightly_example_runs_once_per_night_over_new_year():
    deploy_examples(D(2026, 12, 30, 12))
    tick_every(D(2026, 12, 30, 12), D(2027, 1, 2, 12), 20 * MINUTE)
    assert logical_times("nightly_sales") == [D(2026, 12, 31, 2, 30), D(2027, 1, 1, 2, 30), D(2027, 1, 2, 2, 30)]
