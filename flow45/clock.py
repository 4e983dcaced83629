"""Time in the store is naive UTC. Only long-running loops and API defaults read the clock."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)


def to_utc(value: dt.datetime | None) -> dt.datetime:
    """Naive UTC from an aware datetime, a naive (taken as UTC) one, or None (now)."""
    if value is None:
        return utcnow()
    if value.tzinfo is not None:
        return value.astimezone(dt.timezone.utc).replace(tzinfo=None)
    return value


def iso(value: dt.datetime | None) -> str | None:
    return None if value is None else value.replace(tzinfo=dt.timezone.utc).isoformat().replace("+00:00", "Z")
