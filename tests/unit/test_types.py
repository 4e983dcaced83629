"""Declared types: what a submitted value must look like, and the JSON Schema workers are given."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from flow45.config import TypeSpec
from flow45.types import TypeRegistry


def registry(**types: dict) -> TypeRegistry:
    return TypeRegistry({name: TypeSpec.model_validate({"fields": fields}) for name, fields in types.items()})


@pytest.mark.parametrize("type_, good, stored, bad", [
    ("string", "s3://b/k", "s3://b/k", 5),
    ("integer", 3, 3, "three"),
    ("number", 2.5, 2.5, "much"),
    ("boolean", True, True, "maybe"),
    ("datetime", "2024-05-01T06:00:00Z", "2024-05-01T06:00:00Z", "yesterday"),
    ("date", "2024-05-01", "2024-05-01", "2024-13-01"),
])
def test_scalar_field_types(type_, good, stored, bad):
    types = registry(T={"v": type_})
    assert types.validate("T", {"v": good}) == {"v": stored}
    with pytest.raises(ValidationError):
        types.validate("T", {"v": bad})


@pytest.mark.parametrize("spec, good, bad", [
    ({"type": "integer", "ge": 0}, 0, -1),
    ({"type": "number", "le": 1.0}, 1.0, 1.01),
    ({"type": "string", "max_length": 3}, "abc", "abcd"),
    ({"type": "string", "pattern": "^[0-9]{4}-[0-9]{2}$"}, "2024-05", "May 2024"),
])
def test_constraints(spec, good, bad):
    types = registry(T={"v": spec})
    assert types.validate("T", {"v": good}) == {"v": good}
    with pytest.raises(ValidationError):
        types.validate("T", {"v": bad})


def test_optional_field_may_be_missing_or_null_but_required_may_not():
    types = registry(Doc={"uri": "string", "checksum": {"type": "string", "optional": True}})
    assert types.validate("Doc", {"uri": "u"}) == {"uri": "u", "checksum": None}
    assert types.validate("Doc", {"uri": "u", "checksum": None}) == {"uri": "u", "checksum": None}
    with pytest.raises(ValidationError, match="uri"):
        types.validate("Doc", {"checksum": "abc"})


def test_enum_accepts_only_its_values():
    types = registry(P={"region": {"type": "enum", "values": ["emea", "apac"]}})
    assert types.validate("P", {"region": "apac"}) == {"region": "apac"}
    with pytest.raises(ValidationError):
        types.validate("P", {"region": "mars"})


def test_nested_and_list_of_declared_type():
    types = registry(
        Part={"uri": "string", "rows": {"type": "integer", "ge": 0}},
        Summary={"main": "Part", "parts": {"type": "list", "items": "Part"}},
    )
    part = {"uri": "u", "rows": 1}
    assert types.validate("Summary", {"main": part, "parts": [part, part]}) == {"main": part, "parts": [part, part]}
    with pytest.raises(ValidationError, match="parts.1.rows"):
        types.validate("Summary", {"main": part, "parts": [part, {"uri": "u", "rows": -1}]})


def test_unknown_keys_are_refused_at_every_level():
    types = registry(Part={"uri": "string"}, Summary={"parts": {"type": "list", "items": "Part"}})
    with pytest.raises(ValidationError, match="extra"):
        types.validate("Part", {"uri": "u", "password": "x"})
    with pytest.raises(ValidationError, match="extra"):
        types.validate("Summary", {"parts": [{"uri": "u", "rows": 3}]})


def test_fields_may_be_named_like_pydantic_attributes():
    types = registry(Meta={"json": "string", "schema": "integer", "model_config": "boolean"})
    value = {"json": "{}", "schema": 2, "model_config": False}
    assert types.validate("Meta", value) == value
    assert set(types.json_schema("Meta")["properties"]) == {"json", "schema", "model_config"}


def test_json_schema_refuses_extra_keys_and_lists_required_fields():
    types = registry(
        Part={"uri": "string"},
        Doc={"uri": {"type": "string", "max_length": 10}, "pages": "integer",
             "checksum": {"type": "string", "optional": True}, "parts": {"type": "list", "items": "Part"}},
    )
    schema = types.json_schema("Doc")
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["uri", "pages", "parts"]
    assert (schema["properties"]["uri"]["type"], schema["properties"]["uri"]["maxLength"]) == ("string", 10)
    assert schema["$defs"]["Part"]["additionalProperties"] is False
