"""Declared types: what a submitted value must look like, and the JSON Schema workers are given."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from flow45.config import TypeSpec
from flow45.errors import UncheckableType
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


@pytest.mark.parametrize("spec, good, bad", [
    ({"type": "integer"}, [2**63 - 1, -(2**63)], [2**63, -(2**63) - 1]),
    ({"type": "integer", "ge": 0}, [0, 2**63 - 1], [-1, 2**63]),
    ({"type": "integer", "le": 1e30, "ge": -1e30}, [2**63 - 1], [2**63, -(2**63) - 1]),  # bounds never widen it
    ({"type": "list", "items": "integer"}, [[2**63 - 1]], [[2**63]]),
])
def test_an_integer_is_64_bit_so_a_worker_in_any_language_can_read_it(spec, good, bad):
    types = registry(T={"v": spec})
    for value in good:
        assert types.validate("T", {"v": value}) == {"v": value}
    for value in bad:
        with pytest.raises(ValidationError, match="v"):
            types.validate("T", {"v": value})
    assert '"maximum": 9223372036854775807' in json.dumps(types.json_schema("T"))


def test_a_lists_items_are_held_to_their_own_constraints():
    types = registry(T={"tags": {"type": "list", "max_length": 2, "items": {"type": "string", "max_length": 3}},
                        "scores": {"type": "list", "items": {"type": "number", "ge": 0, "optional": True}}})
    assert types.validate("T", {"tags": ["abc"], "scores": [0, None]}) == {"tags": ["abc"], "scores": [0, None]}
    with pytest.raises(ValidationError, match="tags.0"):
        types.validate("T", {"tags": ["abcd"], "scores": []})
    with pytest.raises(ValidationError, match="scores.1"):
        types.validate("T", {"tags": [], "scores": [1, -0.5]})
    with pytest.raises(ValidationError, match="tags"):
        types.validate("T", {"tags": ["a", "b", "c"], "scores": []})
    schema = types.json_schema("T")["properties"]
    assert schema["tags"]["items"] == {"maxLength": 3, "type": "string"} and schema["tags"]["maxItems"] == 2


def test_a_constraint_stored_where_it_does_not_apply_is_ignored_not_a_crash():
    """Deploy refuses it now (tests/configs/bad/constraint_of_another_type.yaml); a version stored
    before that check still takes outputs."""
    types = registry(T={"n": {"type": "integer", "pattern": "^x$"}, "s": {"type": "string", "ge": 1}})
    assert types.validate("T", {"n": 5, "s": "any"}) == {"n": 5, "s": "any"}


@pytest.mark.timeout(30)
def test_a_pattern_that_backtracks_in_pythons_re_is_matched_at_once():
    """With `re`, `(a|aa)*$` takes about 1.6^n steps on n a's and a b: the bridge that checks the
    output (every team's) would hang on one worker's submit."""
    types = registry(T={"code": {"type": "string", "pattern": "^(a|aa)*$"}})
    assert types.validate("T", {"code": "a" * 200}) == {"code": "a" * 200}
    with pytest.raises(ValidationError, match="should match pattern"):
        types.validate("T", {"code": "a" * 200 + "b"})


def test_a_pattern_stored_before_deploy_checked_it_refuses_outputs_with_a_reason_not_a_crash():
    """Deploy refuses look-around now (tests/configs/bad/pattern_with_look_around.yaml)."""
    types = registry(T={"code": {"type": "string", "pattern": "^(?!tmp)"}})
    with pytest.raises(UncheckableType, match=r"type T cannot be checked \(look-around.*is not supported\)"):
        types.validate("T", {"code": "x"})


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
