"""Cron arithmetic with croniter, in the workflow's timezone. Time is always an argument.

Every datetime in and out is naive UTC, like the store's. A cron expression is read as wall-clock
time in its timezone, and daylight saving time changes are resolved the way cron users expect:

- A wall time skipped when clocks go forward (02:30 on the spring-forward night in Europe/Amsterdam)
  happens once, at the end of the gap (03:00 local), unless the schedule fires every hour: then the
  skipped hour is simply not there and the hourly rhythm goes on.
- A wall time repeated when clocks go back (02:30 on the fall-back night) happens once, at its first
  occurrence, unless the schedule fires every hour: then it happens at both, one run per real hour.

So a daily schedule gives exactly one tick per local day, and an hourly one a tick per real hour.
"""

from __future__ import annotations

import datetime as dt
import difflib
import functools
import heapq
import re
import zoneinfo
from dataclasses import dataclass, field
from typing import Iterator

from flow45.clock import no_such_moment

# croniter is imported where it is used: it costs a command's start about 20 ms, and most commands
# compute no tick.

UTC = dt.timezone.utc
# No zone moves its clocks by more than this at once (historic double summer time was 2h).
_MAX_SHIFT = dt.timedelta(hours=3)
_SECOND = dt.timedelta(seconds=1)

MACROS = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


class BadSchedule(ValueError):
    """A cron expression Flow45 does not take (a version stored before the check refused it)."""


def cron_problem(cron: str) -> str | None:
    """Why `cron` is not a schedule Flow45 takes, or None: five fields (minute hour day month
    weekday), or a macro such as @daily. croniter also reads six and seven fields, seconds and a
    year last; Quartz writes seconds first, so its '0 0 6 1 * *' (06:00 on the 1st) would fire every
    second of the minute after midnight on 6 January."""
    from croniter import croniter

    fields = cron.split()
    if len(fields) == 1 and fields[0].lower() in MACROS:
        return None
    if len(fields) != 5:
        return (f"'{cron}' has {len(fields)} field{'' if len(fields) == 1 else 's'}: a schedule takes five "
                "(minute hour day month weekday), without seconds or a year")
    if not croniter.is_valid(cron):
        return f"'{cron}' is not a valid cron expression (five fields: minute hour day month weekday)"
    return None


# Names the tz database has that are no place's time: the zone of whichever machine reads them (a
# scheduler elsewhere would tick at other hours), and the database's placeholder.
_MACHINE_ZONES = ("localtime", "posixrules")
_OFFSET_NAME = re.compile(r"^(?:UTC|GMT)\s*([+-])\s*(\d{1,2})$", re.IGNORECASE)


def zone_problem(name: str) -> str | None:
    """Why `name` is not a timezone a schedule can take, or None: an IANA name of a place, or of a
    fixed offset (Etc/GMT-5 is UTC+5: the sign is POSIX's)."""
    if name in _MACHINE_ZONES:
        return (f"'{name}' is the zone of whichever machine reads it, which another machine need not share: "
                "name the place, such as Europe/Amsterdam")
    if name == "Factory":
        return "'Factory' is the tz database's placeholder, no place's time: name the place, such as Europe/Amsterdam"
    try:
        zoneinfo.ZoneInfo(name)
        return None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        pass
    offset = _OFFSET_NAME.match(name.strip())
    fixed = offset and f"Etc/GMT{'-' if offset[1] == '+' else '+'}{int(offset[2])}"
    if fixed in zoneinfo.available_timezones():
        return (f"unknown timezone '{name}': a fixed offset is written {fixed} (the sign is POSIX's, "
                "the other way round), or better, the place's name")
    if offset:  # no close name: Etc/GMT-14 is close to 'GMT-14', and fourteen hours the other way
        return f"unknown timezone '{name}': no zone is {offset[1]}{int(offset[2])} hours from UTC"
    known = sorted(zoneinfo.available_timezones() - set(_MACHINE_ZONES) - {"Factory"})
    if not known:
        return f"unknown timezone '{name}': this machine has no zone database (install the tzdata package)"
    same = [zone for zone in known if zone.lower() == name.strip().lower()]
    hint = same or difflib.get_close_matches(name, known, n=1)
    return f"unknown timezone '{name}'" + (f"; did you mean {hint[0]}?" if hint else
                                           " (use an IANA name such as Europe/Amsterdam)")


def window_bound(text: str, timezone: str, *, end: bool) -> dt.datetime:
    """A schedule's `start` or `end` as naive UTC: a date is its day in the schedule's timezone (as
    `end`, the whole day: up to the next midnight there); a time without an offset is a wall time
    there. Raises BadSchedule naming what is wrong."""
    written = text.strip()
    try:
        moment = dt.datetime.fromisoformat(written.replace("Z", "+00:00"))
    except ValueError as exc:
        raise BadSchedule(no_such_moment(written, exc) or f"expected a date such as 2027-01-31 or a time such as "
                                                           f"2027-01-31T06:00, got {written!r}") from None
    try:
        if len(written) == 10 and end:  # a date: ticks on that day are in, the next midnight's are not
            moment += dt.timedelta(days=1) - dt.timedelta(microseconds=1)
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=zoneinfo.ZoneInfo(timezone))
        return moment.astimezone(UTC).replace(tzinfo=None)
    except OverflowError as exc:
        raise BadSchedule(no_such_moment(written, exc)) from None


def window_text(start: str | None, end: str | None) -> str:
    """`from 2027-01-01 until 2027-01-31`, as written; empty without a window."""
    return " ".join(f"{name} {text}" for name, text in (("from", start), ("until", end)) if text is not None)


@functools.lru_cache(maxsize=512)
def window(start: str | None, end: str | None, timezone: str) -> tuple[dt.datetime | None, dt.datetime | None]:
    """The first and last instants (naive UTC) whose ticks a schedule runs; None: no bound."""
    return (None if start is None else window_bound(start, timezone, end=False),
            None if end is None else window_bound(end, timezone, end=True))


class CronSchedule:
    """A cron expression in a timezone; ticks are naive UTC datetimes."""

    def __init__(self, cron: str, timezone: str = "UTC"):
        from croniter import croniter

        if (problem := cron_problem(cron) or zone_problem(timezone)) is not None:
            raise BadSchedule(problem)
        self.cron = cron
        self.timezone = timezone
        self.zone = zoneinfo.ZoneInfo(timezone)
        hours = croniter(cron).expanded[1]
        self.every_hour = hours == ["*"] or len(set(hours)) == 24
        self._next: dict[dt.datetime, dt.datetime | None] = {}

    def __repr__(self) -> str:
        return f"CronSchedule({self.cron!r}, {self.timezone!r})"

    # ---- wall clock <-> UTC -------------------------------------------------------------------

    def _wall(self, instant: dt.datetime) -> dt.datetime:
        return instant.replace(tzinfo=UTC).astimezone(self.zone).replace(tzinfo=None)

    def _utc(self, wall: dt.datetime, fold: int) -> dt.datetime:
        return wall.replace(tzinfo=self.zone, fold=fold).astimezone(UTC).replace(tzinfo=None)

    def _offset(self, instant: dt.datetime) -> dt.timedelta:
        return instant.replace(tzinfo=UTC).astimezone(self.zone).utcoffset()

    def _shift_near(self, instant: dt.datetime) -> bool:
        """Whether the clocks change within a few hours of `instant`."""
        offsets = {self._offset(instant + k * _MAX_SHIFT) for k in (-1, 0, 1)}
        return len(offsets) > 1

    def _gap_end(self, before: dt.datetime, after: dt.datetime) -> dt.datetime:
        """The instant the clocks jump forward, in (before, after]: found by halving, to the second
        (the tz database moves clocks on whole seconds)."""
        late = self._offset(after)
        low, high = before.replace(microsecond=0), after
        while high - low > _SECOND:
            middle = low + dt.timedelta(seconds=(high - low) // _SECOND // 2)
            if self._offset(middle) == late:
                high = middle
            else:
                low = middle
        return high

    def _instants(self, wall: dt.datetime) -> tuple[dt.datetime | None, dt.datetime | None]:
        """(primary, second) UTC instants of a matching wall time; see the module docstring."""
        first, second = self._utc(wall, 0), self._utc(wall, 1)
        if first == second:
            return first, None
        if self._wall(first) != wall:  # a gap: zoneinfo put fold=0 after it and fold=1 before it
            return (None, None) if self.every_hour else (self._gap_end(second, first), None)
        return first, (second if self.every_hour else None)  # a repeated hour

    # ---- iteration ----------------------------------------------------------------------------

    def ticks_after(self, after: dt.datetime) -> Iterator[dt.datetime]:
        """Every tick strictly after `after`, ascending; endless unless the cron names no date that
        exists (`0 0 30 2 *`, which deploy refuses)."""
        from croniter import CroniterBadDateError, croniter

        start = self._wall(after) - (_MAX_SHIFT if self._shift_near(after) else _SECOND)
        walls = croniter(self.cron, start)
        pending: list[dt.datetime] = []
        last: dt.datetime | None = None
        while True:
            try:
                wall = walls.get_next(dt.datetime)
            except CroniterBadDateError:  # no later date: no more ticks
                return
            primary, second = self._instants(wall)
            if primary is None:
                continue
            # Primaries never go back in time, and a second instant follows its primary; so
            # everything at or before this primary is final.
            while pending and pending[0] <= primary:
                tick = heapq.heappop(pending)
                if tick > after and tick != last:
                    last = tick
                    yield tick
            heapq.heappush(pending, primary)
            if second is not None:
                heapq.heappush(pending, second)

    def next_after(self, after: dt.datetime) -> dt.datetime | None:
        """The first tick after `after` (None: there is none); remembered, as the scheduler asks the
        same every tick."""
        if after not in self._next:
            if len(self._next) > 256:
                self._next.clear()
            self._next[after] = next(self.ticks_after(after), None)
        return self._next[after]

    def between(self, start: dt.datetime, end: dt.datetime, limit: int | None = None) -> list[dt.datetime]:
        """Ticks in (start, end], oldest first, at most `limit` of them."""
        found: list[dt.datetime] = []
        for tick in self.ticks_after(start):
            if tick > end or (limit is not None and len(found) >= limit):
                break
            found.append(tick)
        return found

    def latest_at(self, at: dt.datetime) -> dt.datetime | None:
        """The newest tick at or before `at` (None if croniter finds none)."""
        from croniter import CroniterBadDateError, croniter

        near = self._shift_near(at)
        margin = _MAX_SHIFT if near else _SECOND
        walls = croniter(self.cron, self._wall(at) + margin)
        best: dt.datetime | None = None
        for _ in range(100_000):
            try:
                wall = walls.get_prev(dt.datetime)
            except CroniterBadDateError:  # nothing earlier
                break
            primary, second = self._instants(wall)
            for tick in (primary, second):
                if tick is not None and tick <= at and (best is None or tick > best):
                    best = tick
            # Earlier walls give primaries at most this one, and second instants at most
            # _MAX_SHIFT after their primary.
            if best is not None and primary is not None and primary + (_MAX_SHIFT if near else dt.timedelta()) <= best:
                break
        return best


@functools.lru_cache(maxsize=512)
def cron_schedule(cron: str, timezone: str = "UTC") -> CronSchedule:
    return CronSchedule(cron, timezone)


@dataclass(frozen=True)
class DueTicks:
    """What a catchup policy makes of the ticks since the last one dealt with.

    `run`: ticks to create runs for, oldest first. `skipped`: how many ticks are passed over
    (counted up to SKIP_COUNT_CAP), the first and last of them. `cursor`: the newest tick now
    dealt with (None: nothing changed).
    """

    run: list[dt.datetime] = field(default_factory=list)
    skipped: int = 0
    first_skipped: dt.datetime | None = None
    last_skipped: dt.datetime | None = None
    cursor: dt.datetime | None = None


SKIP_COUNT_CAP = 1000


def due_ticks(
    schedule: CronSchedule, catchup: str, *, since: dt.datetime, now: dt.datetime,
    on_time: dt.timedelta, limit: int = 100, end: dt.datetime | None = None,
) -> DueTicks:
    """The ticks in (since, now] (and at most `end`, the schedule's own) to run now, by catchup policy.

    all: every one, oldest first (at most `limit`; the rest on the next call).
    latest: only the newest. none: only the newest, and only if it is at most `on_time` old, so a
    scheduler that was away runs nothing it missed; a tick that just came due is not missed.
    """
    if catchup not in ("all", "latest", "none"):
        raise ValueError(f"catchup must be latest, all or none, not {catchup!r}")
    upto = now if end is None else min(now, end)
    first = schedule.next_after(since)
    if first is None or first > upto:
        return DueTicks()
    if catchup == "all":
        ticks = schedule.between(since, upto, limit)
        return DueTicks(run=ticks, cursor=ticks[-1])
    newest = schedule.latest_at(upto)
    run = [newest] if catchup == "latest" or now - newest <= on_time else []
    if run and first == newest:
        return DueTicks(run=run, cursor=newest)
    last = schedule.latest_at(newest - dt.timedelta(microseconds=1)) if run else newest
    skipped = len(schedule.between(since, last, SKIP_COUNT_CAP))
    return DueTicks(run=run, skipped=skipped, first_skipped=first, last_skipped=last, cursor=newest)
