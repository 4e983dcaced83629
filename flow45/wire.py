"""The wire format's rules, one place for all of them: JSON without non-finite numbers, and
datetimes in UTC with a `Z`, to the microsecond.

Everything Flow45 writes as JSON (offers, replies, stored outputs, `--json` output) goes through
`dumps`, so a non-finite number fails loudly here instead of leaving as `NaN`, which is not JSON.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from typing import Any

from flow45.errors import Flow45Error

# An integer is 64-bit signed (ids, counts, declared `integer` fields): a worker in any language, and
# the store, read one into a native integer.
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

# RFC 3339 with at most 6 fractional digits (Python keeps microseconds; more would be cut silently).
DATETIME_PATTERN = r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.\d{1,6})?([Zz]|[+-]\d{2}:\d{2})$"
DATE_PATTERN = r"^\d{4}-\d{2}-\d{2}$"
_DATETIME = re.compile(r"^\d{4}-\d{2}-\d{2}[Tt]\d{2}:\d{2}:\d{2}(\.(\d+))?([Zz]|[+-]\d{2}:\d{2})?$")
_DATE = re.compile(DATE_PATTERN)


class Dumped(str):
    """JSON text `dumps` wrote already: stored and sent as it is, not encoded again."""


class NotJSON(Flow45Error, ValueError):
    """A value that has no JSON form (a non-finite number, an unknown type)."""


def _default(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return utc_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    raise NotJSON(f"{type(value).__name__} has no JSON form")


# Built once: json.dumps with any argument builds an encoder per call, and the hot path writes
# several documents per task instance.
_COMPACT = json.JSONEncoder(allow_nan=False, default=_default, separators=(",", ":"))


def dumps(value: Any, *, indent: int | None = None) -> str:
    """`value` as JSON; raises NotJSON for NaN, ±Infinity and values JSON cannot hold."""
    try:
        if indent is None:
            return _COMPACT.encode(value)
        return json.dumps(value, allow_nan=False, default=_default, indent=indent,
                          separators=None if indent else (",", ":"))
    except ValueError as exc:
        raise NotJSON(f"not JSON: {exc}") from None


def utc_text(value: dt.datetime) -> str:
    """A datetime as the wire writes it; a naive one is taken as UTC (the store keeps naive UTC)."""
    if value.tzinfo is not None:
        value = value.astimezone(dt.timezone.utc)
    return value.replace(tzinfo=None).isoformat() + "Z"


def _refused(kind: str, message: str, context: dict[str, Any] | None = None) -> Exception:
    """pydantic's error for a value these rules refuse. pydantic_core is imported here, where a value
    is refused: every command imports the wire's rules, and most never validate a datetime."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError(kind, message, context)


def parse_datetime(value: Any) -> dt.datetime:
    """A wire datetime as an aware UTC datetime. Refuses no offset, more than 6 fractional digits,
    and anything but a string (or, from Python code, an aware datetime)."""
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.utcoffset() is None:
            raise _refused(
                "datetime_naive", "a datetime needs a time zone: use UTC (tzinfo=timezone.utc)"
            )
        return _in_utc(value, value.isoformat())
    if not isinstance(value, str):
        raise _refused("datetime_type", "expected an RFC 3339 datetime string such as 2026-03-01T12:05:00Z")
    match = _DATETIME.match(value)
    if match is None:
        raise _refused(
            "datetime_format", "expected an RFC 3339 datetime such as 2026-03-01T12:05:00Z, got '{value}'",
            {"value": value[:60]},
        )
    fraction, offset = match.group(2), match.group(3)
    if offset is None:
        raise _refused(
            "datetime_naive", "the datetime '{value}' has no offset: add Z for UTC, or +HH:MM", {"value": value},
        )
    if fraction is not None and len(fraction) > 6:
        raise _refused(
            "datetime_precision",
            "the datetime '{value}' has {digits} fractional digits; at most 6 (microseconds) are kept",
            {"value": value, "digits": len(fraction)},
        )
    try:
        parsed = dt.datetime.fromisoformat(value.upper().replace("Z", "+00:00"))
    except ValueError as exc:
        raise _refused("datetime_value", "not a valid datetime: {error}", {"error": str(exc)}) from None
    return _in_utc(parsed, value)


def _in_utc(value: dt.datetime, written: str) -> dt.datetime:
    """An aware datetime in UTC; refused when its offset takes it past the calendar's ends (year 1 or 9999)."""
    try:
        return value.astimezone(dt.timezone.utc)
    except OverflowError:
        raise _refused(
            "datetime_value", "the datetime '{value}' is outside the calendar once made UTC", {"value": written[:60]},
        ) from None


def parse_date(value: Any) -> dt.date:
    """A wire date (YYYY-MM-DD only: a datetime is not a date)."""
    if isinstance(value, dt.date) and not isinstance(value, dt.datetime):
        return value
    if not isinstance(value, str) or _DATE.match(value) is None:
        raise _refused(
            "date_format", "expected a date as YYYY-MM-DD, got '{value}'", {"value": str(value)[:60]}
        )
    try:
        return dt.date.fromisoformat(value)
    except ValueError as exc:
        raise _refused("date_value", "not a valid date: {error}", {"error": str(exc)}) from None
