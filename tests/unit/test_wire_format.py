"""The wire format: JSON values are never coerced, numbers are finite, datetimes are UTC with `Z`."""

from __future__ import annotations

import json
import re

import pytest
from pydantic import ValidationError

from flow45 import strictjson, wire
from flow45.config import TypeSpec, load_config
from flow45.errors import ConfigError
from flow45.types import TypeRegistry, describe_errors


def registry(**types: dict) -> TypeRegistry:
    return TypeRegistry({name: TypeSpec.model_validate({"fields": fields}) for name, fields in types.items()})


def refusal(types: TypeRegistry, name: str, value: dict) -> str:
    with pytest.raises(ValidationError) as caught:
        types.validate(name, value)
    return describe_errors(caught.value, "output")


@pytest.mark.parametrize("type_, value, words", [
    ("integer", "7", "valid integer"),
    ("integer", True, "valid integer"),
    ("integer", 7.5, "valid integer"),
    ("number", "0.5", "valid number"),
    ("number", True, "valid number"),
    ("number", float("nan"), "finite number"),
    ("number", float("inf"), "finite number"),
    ("number", float("-inf"), "finite number"),
    ("number", 10**400, "valid number"),
    ("boolean", "yes", "valid boolean"),
    ("boolean", 1, "valid boolean"),
    ("string", 7, "valid string"),
    ("enum", True, "'left' or 'right'"),
])
def test_json_values_are_never_coerced(type_, value, words):
    spec = {"type": "enum", "values": ["left", "right"]} if type_ == "enum" else type_
    assert refusal(registry(T={"v": spec}), "T", {"v": value}) == f"output.v: Input should be a {words}".replace(
        "a 'left'", "'left'")


def test_a_number_field_takes_json_integers():
    assert registry(T={"v": "number"}).validate("T", {"v": 7}) == {"v": 7.0}


@pytest.mark.parametrize("sent, stored", [
    ("2026-03-01T14:05:00+02:00", "2026-03-01T12:05:00Z"),
    ("2026-03-01T00:30:00-01:00", "2026-03-01T01:30:00Z"),
    ("2026-03-01T12:05:00z", "2026-03-01T12:05:00Z"),
    ("2026-03-01t12:05:00.5Z", "2026-03-01T12:05:00.500000Z"),
    ("2026-03-01T12:05:00.123456Z", "2026-03-01T12:05:00.123456Z"),
])
def test_datetimes_are_stored_in_utc_with_z(sent, stored):
    assert registry(T={"at": "datetime"}).validate("T", {"at": sent}) == {"at": stored}


@pytest.mark.parametrize("sent, words", [
    ("2026-03-01T12:05:00", "has no offset: add Z for UTC, or +HH:MM"),
    ("2026-03-01T12:05:00.1234567Z", "has 7 fractional digits; at most 6 (microseconds) are kept"),
    ("2026-03-01T12:05:00.123456789+01:00", "has 9 fractional digits"),
    ("2026-03-01", "expected an RFC 3339 datetime"),
    ("2026-03-01 12:05:00Z", "expected an RFC 3339 datetime"),
    ("2026-02-30T12:05:00Z", "day is out of range for month"),
    ("0001-01-01T00:30:00+01:00", "the datetime '0001-01-01T00:30:00+01:00' is outside the calendar once made UTC"),
    ("9999-12-31T23:30:00-01:00", "is outside the calendar once made UTC"),
    (1772366700, "expected an RFC 3339 datetime string"),
])
def test_datetimes_without_offset_or_beyond_microseconds_are_refused(sent, words):
    assert words in refusal(registry(T={"at": "datetime"}), "T", {"at": sent})


@pytest.mark.parametrize("sent", ["2026-03-01T00:00:00Z", "2026-03-01T00:00:00", "20260301", 20260301])
def test_a_date_field_takes_only_a_date(sent):
    types = registry(T={"day": "date"})
    assert types.validate("T", {"day": "2026-03-01"}) == {"day": "2026-03-01"}
    assert "expected a date as YYYY-MM-DD" in refusal(types, "T", {"day": sent})


def test_omitted_optional_fields_are_stored_as_null_and_lists_of_types_normalised():
    types = registry(
        Part={"at": "datetime", "note": {"type": "string", "optional": True}},
        Doc={"parts": {"type": "list", "items": "Part"}, "checksum": {"type": "string", "optional": True}},
    )
    stored = types.validate("Doc", {"parts": [{"at": "2026-03-01T13:00:00+01:00"}]})
    assert stored == {"parts": [{"at": "2026-03-01T12:00:00Z", "note": None}], "checksum": None}


def test_the_json_schema_says_it_without_format_checking():
    # 2020-12 validators need not check `format`: the patterns state the offset, precision and date alone.
    properties = registry(T={"at": "datetime", "day": "date"}).json_schema("T")["properties"]
    at, day = re.compile(properties["at"]["pattern"]), re.compile(properties["day"]["pattern"])
    assert properties["at"]["format"] == "date-time" and properties["day"]["format"] == "date"
    assert at.match("2026-03-01T12:05:00.123456+02:00") and at.match("2026-03-01T12:05:00Z")
    assert not at.match("2026-03-01T12:05:00") and not at.match("2026-03-01T12:05:00.1234567Z")
    assert day.match("2026-03-01") and not day.match("2026-03-01T00:00:00Z")


def test_dumps_refuses_non_finite_numbers_loudly():
    for value in (float("nan"), float("inf"), {"a": [float("-inf")]}):
        with pytest.raises(wire.NotJSON, match="not JSON"):
            wire.dumps(value)
    assert wire.dumps({"a": 1.5, "b": None}) == '{"a":1.5,"b":null}'


@pytest.mark.parametrize("text", ['{"a": NaN}', '{"a": Infinity}', '[-Infinity]', '{"a": 1e400}', "-1e999"])
def test_loads_refuses_what_is_not_json(text):
    assert json.loads(text) is not None, "Python's own parser takes it"
    with pytest.raises(strictjson.JSONRefused):
        strictjson.loads(text)


def test_a_config_constraint_must_be_finite(tmp_path):
    path = tmp_path / "team.yaml"
    path.write_text("team: acme\ntypes:\n  T:\n    fields: {v: {type: number, le: .inf}}\n")
    with pytest.raises(ConfigError, match=r"types\.T\.fields\.v\.le: .*finite number"):
        load_config(path)


def test_an_inbox_item_comes_back_from_json_with_its_views():
    import datetime as dt

    from flow45.views import InboxItem, InstanceView, RunView

    at = dt.datetime(2026, 3, 1, 12, 0)
    instance = InstanceView(id=3, run=1, team="reports", task="approve", function="approve_report", state="available",
                            attempt=1, human=True, priority=0, worker=None, progress_pct=None, progress_message=None,
                            lease_expires_at=None, not_before=None, upstream=["render"], updated_at=at,
                            taken_by="ann", due_at=at, overdue_at=at)
    run = RunView(id=1, team="reports", workflow="monthly_report", version=1, status="running", trigger="manual",
                  triggered_by="ann", params={"month": "2026-02"}, logical_time=None, created_at=at, started_at=at,
                  finished_at=None, counts={"available": 1})
    item = InboxItem(instance=instance, run=run, inputs={"document": {"uri": "s3://x"}}, who="ann", overdue=False,
                     checked_at=at)
    assert InboxItem.from_json(item.to_json()) == item
    assert item.to_json()["checked_at"] == "2026-03-01T12:00:00Z", "the bridge's time travels with the item"
    assert InboxItem.from_json({**item.to_json(), "run": None}).run is None
