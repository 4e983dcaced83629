"""What every message shares: strict parsing, and the `type` values of a union of them."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, get_args

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from flow45.clock import parse_utc


UTC_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"


def _on_the_calendar(text: str) -> str:
    """The pattern lets through 30 February and hour 25: those are refused here, named."""
    try:
        dt.datetime.fromisoformat(text)
    except ValueError as exc:
        raise ValueError(f"{text} is not a time on the calendar ({exc})") from None
    return text


UtcTime = Annotated[str, Field(pattern=UTC_TIME), AfterValidator(_on_the_calendar)]  # e.g. 2026-03-01T06:00:00Z


def utc_time(text: str | None) -> dt.datetime | None:
    """A message's UtcTime (checked already) as naive UTC, or None."""
    return None if text is None else parse_utc(text)


class _Message(BaseModel):
    # Strict: on the wire a number is never a string, nor a boolean an integer ("14" is no instance id).
    model_config = ConfigDict(extra="forbid", strict=True, defer_build=True)


def _types(message: Any) -> frozenset[str]:
    """The `type` values of a discriminated union of messages."""
    union = get_args(message)[0]
    return frozenset(get_args(model.model_fields["type"].annotation)[0] for model in get_args(union))
