"""Durations as written in config: `30s`, `10m`, `1h30m`, `2d`, or a number of seconds."""

from __future__ import annotations

import math
import re

MAX_DURATION = 36500 * 86400.0  # durations are added to now: a century is more than any lease or due date needs
OVER_MAX_DURATION = "longer than a century (36500d)"
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")


def parse_duration(value: object) -> float:
    """Seconds in `value`; raises ValueError naming the accepted forms."""
    if isinstance(value, bool):
        raise ValueError("expected a duration such as 30s, 10m, 1h or a number of seconds")
    number = value
    if isinstance(value, str):
        text = value.strip().replace(" ", "")
        try:
            number = float(text)  # plain seconds, as environment variables give them
        except ValueError:
            if text and _PART.sub("", text) == "":
                return sum(float(n) * _UNITS[u] for n, u in _PART.findall(text))
    # inf, nan and 1e400 read as numbers, and are no duration
    if isinstance(number, (int, float)) and math.isfinite(number):
        if number < 0:
            raise ValueError("a duration cannot be negative")
        return float(number)
    raise ValueError(f"{value!r} is not a duration: use forms such as 30s, 10m, 1h30m, 2d")


def bounded_duration(value: object) -> float:
    """As `parse_duration`, at most MAX_DURATION (a settings' default lease far past the calendar's
    end would fail when a task is claimed, not when the settings are read)."""
    seconds = parse_duration(value)
    if seconds > MAX_DURATION:
        raise ValueError(f"{value!r} is {OVER_MAX_DURATION}")
    return seconds


def format_duration(seconds: float) -> str:
    seconds = int(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds and seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
