"""Time in the store is naive UTC. Only long-running loops and API defaults read the clock."""

from __future__ import annotations

import datetime as dt


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


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")
