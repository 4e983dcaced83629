"""Cron ticks against a brute-force reading of the rules in flow45.schedule, minute by minute, for random
schedules near the clock changes of zones that change them oddly: by half an hour (Lord Howe), by two
hours (Troll), at midnight (São Paulo, so that midnight itself is skipped), twice a year around Ramadan
(Casablanca), at 02:45 (Chatham), and by a whole day (Apia skipped 30 December 2011). Pure: no database.

The rules, as the oracle reads them: a wall time that matches the cron happens at the instant the clock
shows it; skipped (clocks forward), at the end of the gap, unless the schedule fires every hour; repeated
(clocks back), at its first occurrence, or at both for an hourly one."""

from __future__ import annotations

import datetime as dt
import functools
import os
import zoneinfo

from croniter import croniter
from hypothesis import given, settings, strategies as st

from flow45.schedule import CronSchedule

UTC = dt.timezone.utc
MINUTE = dt.timedelta(minutes=1)
HOUR = dt.timedelta(hours=1)
EXAMPLES = int(os.environ.get("FLOW45_PROPERTY_EXAMPLES", "60"))

ZONES = {  # zone -> years whose clock changes are looked at
    "Europe/Amsterdam": (2026, 2027), "America/New_York": (2027, 2028), "Australia/Lord_Howe": (2026, 2027),
    "Antarctica/Troll": (2026, 2027), "America/Sao_Paulo": (2017, 2018), "Africa/Casablanca": (2026, 2027),
    "Pacific/Chatham": (2026, 2027), "Pacific/Apia": (2011, 2012), "Asia/Kolkata": (2026, 2027),
}
CRONS = st.one_of(
    st.sampled_from(["@daily", "@hourly", "@weekly", "@monthly"]),
    st.builds(lambda *fields: " ".join(fields),
              st.sampled_from(["0", "30", "45", "59", "*/15", "5,35", "*"]),
              st.sampled_from(["*", "0", "1", "2", "3", "1-3", "*/2", "23", "0-23", "2,14"]),
              st.sampled_from(["*", "*", "1", "29", "30", "1-7"]),
              st.sampled_from(["*", "*", "*", "3,10", "12"]),
              st.sampled_from(["*", "*", "0", "1-5", "6"])),
)


def wall(zone: zoneinfo.ZoneInfo, instant: dt.datetime) -> dt.datetime:
    return instant.replace(tzinfo=UTC).astimezone(zone).replace(tzinfo=None)


@functools.lru_cache(maxsize=None)
def changes(name: str) -> list[dt.datetime]:
    """The instants (naive UTC, to the hour) the zone's offset changes in its years."""
    zone, (first, last) = zoneinfo.ZoneInfo(name), ZONES[name]
    found, instant = [], dt.datetime(first, 1, 1)
    offset = instant.replace(tzinfo=UTC).astimezone(zone).utcoffset()
    while instant.year <= last:
        instant += HOUR
        now = instant.replace(tzinfo=UTC).astimezone(zone).utcoffset()
        if now != offset:
            found.append(instant)
        offset = now
    return found or [dt.datetime(first, 12, 31, 18, 30)]  # none (Kolkata): a New Year's Eve


def matcher(cron: str):
    """Whether a wall time matches, from croniter's expansion of the fields (day of month or day of
    week when both are given, as cron reads them)."""
    minutes, hours, days, months, weekdays = (None if field == ["*"] else set(field) for field in croniter(cron).expanded)
    weekdays = None if weekdays is None else {day % 7 for day in weekdays}  # 7 is Sunday too

    def day_matches(moment: dt.datetime) -> bool:
        by_date = days is None or moment.day in days
        by_weekday = weekdays is None or (moment.weekday() + 1) % 7 in weekdays
        if days is not None and weekdays is not None:
            return by_date or by_weekday
        return by_date and by_weekday

    return lambda moment: ((minutes is None or moment.minute in minutes) and (hours is None or moment.hour in hours)
                           and (months is None or moment.month in months) and day_matches(moment))


def oracle(cron: str, name: str, after: dt.datetime, until: dt.datetime) -> list[dt.datetime]:
    """The ticks in (after, until], minute by minute."""
    zone, matches = zoneinfo.ZoneInfo(name), matcher(cron)
    hours = croniter(cron).expanded[1]
    every_hour = hours == ["*"] or len(set(hours)) == 24
    margin = dt.timedelta(days=1, hours=3)  # a whole day skipped, and then some
    grid, instant = [], after - margin
    while instant <= until + margin:
        grid.append((instant, wall(zone, instant)))
        instant += MINUTE
    shown: dict[dt.datetime, list[dt.datetime]] = {}
    for instant, clock in grid:
        shown.setdefault(clock, []).append(instant)
    ticks: set[dt.datetime] = set()
    near = [c for i, c in grid if after - MINUTE <= i <= until]  # what the clocks show over the window
    clock, last = min(near), max(near)
    while clock <= last:
        if matches(clock):
            if clock in shown:
                ticks.update(shown[clock] if every_hour else shown[clock][:1])
            elif not every_hour:  # skipped: the instant the clocks jumped past it
                ticks.add(next(i2 for (_, c1), (i2, c2) in zip(grid, grid[1:]) if c1 < clock < c2))
        clock += MINUTE
    return sorted(tick for tick in ticks if after < tick <= until)


@st.composite
def windows(draw) -> tuple[str, dt.datetime, dt.datetime]:
    name = draw(st.sampled_from(sorted(ZONES)))
    change = draw(st.sampled_from(changes(name)))
    start = change + draw(st.integers(-40 * 60, 10 * 60)) * MINUTE
    return name, start, start + draw(st.integers(1, 50 * 60)) * MINUTE


@settings(max_examples=EXAMPLES, deadline=None)
@given(cron=CRONS, window=windows())
def test_ticks_near_clock_changes_are_the_wall_times_the_cron_names(cron, window):
    name, after, until = window
    assert CronSchedule(cron, name).between(after, until) == oracle(cron, name, after, until)


@settings(max_examples=EXAMPLES, deadline=None)
@given(cron=CRONS, window=windows())
def test_the_next_and_the_latest_tick_agree_with_the_ticks_between(cron, window):
    name, after, until = window
    schedule = CronSchedule(cron, name)
    ticks = schedule.between(after, until)
    if ticks:
        assert schedule.next_after(after) == ticks[0]
        assert schedule.latest_at(until) == ticks[-1]
        for earlier, later in zip(ticks, ticks[1:]):  # a scheduler resuming from any tick finds the next
            assert schedule.next_after(earlier) == later
    else:
        assert schedule.next_after(after) is None or schedule.next_after(after) > until
