"""Time in the store is naive UTC. Only long-running loops and API defaults read the clock."""

from __future__ import annotations

import datetime as dt
import re


_ahead = dt.timedelta(0)  # how far this process's clock was moved forward (flow45 demo only)


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None) + _ahead


def skip_ahead(delta: dt.timedelta) -> None:
    """Move this process's clock forward, never back: `flow45 demo` lets a timer hours away fire
    within seconds, with every time the store writes afterwards consistent with it."""
    global _ahead
    if delta < dt.timedelta(0):
        raise ValueError(f"the clock only moves forward, not by {delta}")
    _ahead += delta


def ahead() -> dt.timedelta:
    """How far skip_ahead moved this process's clock (zero unless it did)."""
    return _ahead


def back_to_real_time() -> None:
    """Undo every skip_ahead (the demo, when it stops)."""
    global _ahead
    _ahead = dt.timedelta(0)


def to_utc(value: dt.datetime | None) -> dt.datetime:
    """Naive UTC from an aware datetime, a naive (taken as UTC) one, or None (now)."""
    if value is None:
        return utcnow()
    if value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def parse_utc(text: str) -> dt.datetime:
    """An ISO 8601 time or date as naive UTC (without an offset it is UTC). Raises ValueError if it is
    not one, OverflowError if its offset reaches past the calendar's ends."""
    return to_utc(dt.datetime.fromisoformat(text.strip().replace("Z", "+00:00")))


_DATE_SHAPED = re.compile(r"\d{4}-\d{2}-\d{2}([T ]\d{2}:\d{2}(:\d{2}(\.\d+)?)?)?(Z|[+-]\d{2}:?\d{2})?")


def no_such_moment(text: str, error: Exception) -> str | None:
    """Why `text`, written in the form of a date or a time, names none (2026-02-30, 2026-03-01T25:00):
    the part that is wrong, as `error` (parse_utc's) says. None for text of another form."""
    text = text.strip()
    if isinstance(error, OverflowError):  # an offset that reaches past the calendar's ends
        return f"{text!r} is outside the calendar once made UTC"
    return f"{text!r} names no real day or time: {error}" if _DATE_SHAPED.fullmatch(text) else None


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")


def shown(value: dt.datetime | None) -> str:
    """A stored time (naive UTC) as people read it, to the second, absolute (so that nothing shown
    depends on the clock); `-` for none."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")
