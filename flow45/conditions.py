"""A task's `when`: conditions on the inputs it would receive, or on its run's `params`, checked as it
becomes ready. Met, it is offered as any task; not met, it is skipped (its downstream gets null for
it, as for any skip), and the ledger says which condition and what the value was. Camunda's
conditional flows, Conductor's SWITCH and Airflow's branching, written as data:

    publish: {..., inputs: {document: render, approval: approve}, when: {approval.approved: true}}
    review:  {..., inputs: {invoice: extract}, when: {invoice.amount: {gt: 1000}, invoice.region: [emea, apac]}}
    reload:  {..., when: {params.full_reload: true}}

Each key is an input's name (or `params`: the run's; an input of that name comes first) and a path of
fields in it; each value is what that field must be: a value (equal to it), a list (one of them), or
comparisons (`gt`, `ge`, `lt`, `le`, `ne`). Every condition must hold. A skipped upstream passes null,
which meets only a condition asking for null."""

from __future__ import annotations

import datetime as dt
import math
import re
from typing import Annotated, Any

from pydantic import BeforeValidator, Field

from flow45 import wire

WHEN_PATH = r"^[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$"  # an input, then a field in it (and deeper)
COMPARISONS = {"gt": ">", "ge": ">=", "lt": "<", "le": "<=", "ne": "!="}
MOST_CHOICES = 100
_TIME = re.compile(wire.DATETIME_PATTERN)


def _scalar(value: Any) -> bool:
    if isinstance(value, float):
        return math.isfinite(value)
    return value is None or isinstance(value, (bool, int, str))


def _expected(value: Any) -> Any:
    """A condition as written, checked: a value, a list of values, or comparisons."""
    if isinstance(value, dict):
        if not value:
            raise ValueError("no comparison given: write gt, ge, lt, le or ne")
        for key, bound in value.items():
            if key not in COMPARISONS:
                raise ValueError(f"unknown comparison {key!r}: write gt, ge, lt, le or ne")
            if not _scalar(bound) or (key != "ne" and (bound is None or isinstance(bound, bool))):
                raise ValueError(f"{key} takes a number or a text (a date, a time), got {_written(bound)}")
        return value
    if isinstance(value, list):
        if not value or len(value) > MOST_CHOICES:
            raise ValueError(f"a list of the values it may be holds 1 to {MOST_CHOICES} of them")
        if bad := [v for v in value if not _scalar(v)]:
            raise ValueError(f"a list of the values it may be holds plain values only, not {_written(bad[0])}")
        return value
    if not _scalar(value):
        raise ValueError("expected a value, a list of the values it may be, or comparisons (gt, ge, lt, le, ne), "
                         f"not {_written(value)}")
    return value


Expected = Annotated[Any, BeforeValidator(_expected)]
When = dict[Annotated[str, Field(pattern=WHEN_PATH)], Expected]


def unmet(when: dict[str, Any] | None, inputs: dict[str, Any]) -> str | None:
    """Why `inputs` do not meet `when`, naming the first condition that fails and the value found;
    None when every condition holds (or there is none)."""
    for path, expected in (when or {}).items():
        value = _at(inputs, path)
        if not _holds(value, expected):
            return f"when {path} {describe(expected)}: it is {_shown(value)}"
    return None


def describe(expected: Any) -> str:
    if isinstance(expected, dict):
        return " and ".join(f"{COMPARISONS[key]} {_shown(bound)}" for key, bound in expected.items())
    if isinstance(expected, list):
        return "is one of " + ", ".join(_shown(v) for v in expected)
    return f"is {_shown(expected)}"


def _at(inputs: dict[str, Any], path: str) -> Any:
    value: Any = inputs
    for name in path.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(name)
    return value


def _holds(value: Any, expected: Any) -> bool:
    if isinstance(expected, dict):
        return all(not _same(value, bound) if key == "ne" else _ordered(value, key, bound)
                   for key, bound in expected.items())
    if isinstance(expected, list):
        return any(_same(value, option) for option in expected)
    return _same(value, expected)


def _instants(value: Any, bound: Any) -> tuple[Any, Any]:
    """Two times as the instants they name, else both as they are. The store keeps a time in UTC and
    leaves out a zero fraction, so as text 09:30Z is before 10:00+01:00, and 09:00:00Z after 09:00:00.5Z."""
    if isinstance(value, str) and isinstance(bound, str) and _TIME.match(value) and _TIME.match(bound):
        try:
            return wire.parse_datetime(value), wire.parse_datetime(bound)
        except (ValueError, OverflowError):  # 2028-02-30, or an offset past year 1: no instant, so as text
            pass
    return value, bound


def _same(value: Any, expected: Any) -> bool:
    """Equal as JSON values are: true is not 1, and 2 is 2.0; two times, the same instant."""
    if isinstance(value, bool) or isinstance(expected, bool):
        return value is expected
    value, expected = _instants(value, expected)
    return value == expected


def _ordered(value: Any, key: str, bound: Any) -> bool:
    value, bound = _instants(value, bound)
    number = (int, float)
    comparable = (isinstance(value, number) and not isinstance(value, bool) and isinstance(bound, number)) or (
        isinstance(value, str) and isinstance(bound, str)) or (
        isinstance(value, dt.datetime) and isinstance(bound, dt.datetime))
    if not comparable:
        return False  # a missing value, or one of another kind, is neither above nor below
    return {"gt": value > bound, "ge": value >= bound, "lt": value < bound, "le": value <= bound}[key]


def _written(value: Any) -> str:
    """A value as the config wrote it, which may not be JSON (.nan, .inf)."""
    try:
        return wire.dumps(value)
    except ValueError:
        return repr(value)


def _shown(value: Any) -> str:
    text = wire.dumps(value)
    return text if len(text) <= 60 else text[:57] + "..."
