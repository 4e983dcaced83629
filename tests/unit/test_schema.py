"""`flow45 schema` is one standard JSON Schema document (draft 2020-12), checked with the independent
`jsonschema` package: every `$ref` resolves, only standard keywords, and it takes what Flow45 sends
and refuses what Flow45 refuses, for enums, nested types, lists of types and optional fields."""

from __future__ import annotations

import textwrap

import pytest
from jsonschema import Draft202012Validator

from flow45 import store
from flow45.config import load_config
from flow45.db import connect
from flow45.migrate import ensure_schema
from flow45.schema import DRAFT, full_schema, schema_for
from flow45.settings import Settings, use_settings

FORMATS = Draft202012Validator.FORMAT_CHECKER

# Every keyword of the 2020-12 vocabularies (core, applicator, unevaluated, validation, meta-data,
# format, content).
STANDARD = {
    "$schema", "$id", "$ref", "$defs", "$anchor", "$dynamicRef", "$dynamicAnchor", "$vocabulary", "$comment",
    "allOf", "anyOf", "oneOf", "not", "if", "then", "else", "dependentSchemas", "prefixItems", "items",
    "contains", "properties", "patternProperties", "additionalProperties", "propertyNames",
    "unevaluatedItems", "unevaluatedProperties", "type", "const", "enum", "multipleOf", "maximum",
    "exclusiveMaximum", "minimum", "exclusiveMinimum", "maxLength", "minLength", "pattern", "maxItems",
    "minItems", "uniqueItems", "maxContains", "minContains", "maxProperties", "minProperties", "required",
    "dependentRequired", "title", "description", "default", "deprecated", "readOnly", "writeOnly",
    "examples", "format", "contentEncoding", "contentMediaType", "contentSchema",
}
NAMED = {"properties", "patternProperties", "$defs", "dependentSchemas"}

TEAMS = {
    "left.yaml": """
        team: left
        types:
          Part:
            fields:
              side: {type: enum, values: [left, right]}
              at: {type: datetime, optional: true}
          Doc:
            fields:
              uri: {type: string, max_length: 20}
              parts: {type: list, items: Part}
              main: {type: Part, optional: true}
              day: date
        workflows:
          wf:
            tasks:
              make: {function: make_doc, output: Doc}
              use: {function: use_doc, output: Part, inputs: {doc: make, again: make}}
    """,
    "right.yaml": """
        team: right
        types:
          Doc:
            fields: {pages: {type: integer, ge: 1}, side: {type: enum, values: [up, down]}}
        workflows:
          wf:
            tasks:
              make: {function: make_doc, output: Doc}
    """,
}


@pytest.fixture(scope="module")
def document(tmp_path_factory):
    folder = tmp_path_factory.mktemp("schema")
    for name, text in TEAMS.items():
        (folder / name).write_text(textwrap.dedent(text))
    url = f"sqlite:///{folder / 'store.db'}"
    use_settings(Settings(database_url=url))
    db = connect(url, create=True)
    ensure_schema()
    store.deploy(load_config(folder), actor="tester")
    yield full_schema()
    db.close()


def validator(document: dict, name: str) -> Draft202012Validator:
    return Draft202012Validator(schema_for(document, name), format_checker=FORMATS)


def walk(schema, path="#"):
    """Every (path, keyword, value) at a keyword position."""
    if isinstance(schema, list):
        for index, item in enumerate(schema):
            yield from walk(item, f"{path}/{index}")
    elif isinstance(schema, dict):
        for key, value in schema.items():
            yield path, key, value
            if key in NAMED and isinstance(value, dict):
                for name, item in value.items():
                    yield from walk(item, f"{path}/{key}/{name}")
            elif key not in ("enum", "const", "default", "examples") and isinstance(value, (dict, list)):
                yield from walk(value, f"{path}/{key}")


def test_it_is_a_valid_draft_2020_12_schema(document):
    assert document["$schema"] == DRAFT == "https://json-schema.org/draft/2020-12/schema"
    Draft202012Validator.check_schema(document)


def test_every_ref_resolves_at_the_root_and_no_defs_hide_below_it(document):
    refs = [(path, value) for path, key, value in walk(document) if key == "$ref"]
    assert len(refs) > 50
    for path, ref in refs:
        assert ref.startswith("#/$defs/") and ref.removeprefix("#/$defs/") in document["$defs"], (path, ref)
    assert [path for path, key, _ in walk(document) if key == "$defs"] == ["#"]


def test_only_standard_keywords(document):
    assert {key for _, key, _ in walk(document)} <= STANDARD


def test_types_of_two_teams_with_the_same_name_stay_apart(document):
    defs = document["$defs"]
    assert defs["left.make_doc.output"] == {"$ref": "#/$defs/left.Doc"}
    assert defs["right.make_doc.output"] == {"$ref": "#/$defs/right.Doc"}
    assert "parts" in defs["left.Doc"]["properties"] and "pages" in defs["right.Doc"]["properties"]


GOOD_DOC = {"uri": "s3://d", "parts": [{"side": "left", "at": "2026-03-01T12:00:00Z"}, {"side": "right", "at": None}],
            "main": None, "day": "2026-03-01"}


@pytest.mark.parametrize("change, ok", [
    ({}, True),
    ({"parts": []}, True),
    ({"parts": [{"side": "up", "at": None}]}, False),  # not one of the enum's values
    ({"parts": [{"side": "left"}]}, False),  # optional fields are passed on as null, never missing
    ({"main": {"side": "left", "at": "2026-03-01T12:00:00"}}, False),  # no offset
    ({"main": {"side": "left", "at": "2026-03-01T12:00:00.1234567Z"}}, False),  # beyond microseconds
    ({"main": {"side": "left", "at": "2026-03-01T12:00:00.123456+02:00"}}, True),
    ({"day": "2026-03-01T00:00:00Z"}, False),  # a date is only a date
    ({"uri": "x" * 21}, False),
    ({"extra": 1}, False),
])
def test_function_inputs_take_what_flow45_sends_and_refuse_the_rest(document, change, ok):
    inputs = {"doc": {**GOOD_DOC, **change}, "again": None}  # a skipped upstream passes null
    errors = list(validator(document, "left.use_doc.inputs").iter_errors(inputs))
    assert (errors == []) is ok, [e.message for e in errors]


def test_inputs_name_every_parameter(document):
    assert not validator(document, "left.use_doc.inputs").is_valid({"doc": GOOD_DOC})


def test_worker_messages_are_told_apart_without_a_discriminator(document):
    check = validator(document, "WorkerMessage")
    assert check.is_valid({"type": "skip", "instance": 1, "token": "t", "reason": "nothing to do"})
    assert not check.is_valid({"type": "skip", "instance": 1, "reason": "no token"})
    assert not check.is_valid({"type": "claim", "instance": "1", "token": "t", "worker": "w"})
    assert validator(document, "OperatorMessage").is_valid({"type": "skip", "instance": 1, "reason": "by hand"})


def test_replies_have_a_schema_per_request(document):
    claim = validator(document, "ClaimReply")
    granted = {"ok": True, "result": {"instance": 1, "state": "running", "attempt": 1, "token": "t",
                                      "lease_expires_at": "2026-03-01T12:05:00Z", "inputs": {}, "params": {},
                                      "duplicate": False}}
    assert claim.is_valid(granted)
    assert claim.is_valid({"ok": False, "code": "stale", "error": "taken"})
    assert not claim.is_valid({"ok": True, "result": {"instance": 1}})
    assert not claim.is_valid({"ok": False, "code": "stale"})
    assert validator(document, "CancelReply").is_valid({"ok": True, "result": {"run": 3, "status": "cancelled"}})
    assert validator(document, "StatusReply").is_valid({"ok": True, "result": {"runs": []}})


def test_the_format_checker_checks_datetimes():
    # jsonschema checks `date-time` only with rfc3339-validator installed; without it every string passes.
    assert not FORMATS.conforms("2026-03-01T12:00:00", "date-time")
    assert FORMATS.conforms("2026-03-01T12:00:00Z", "date-time")


def test_a_second_schema_read_writes_no_message_schema_again_and_gets_its_own_copy(document, monkeypatch):
    """A bridge answers every team's `schema` read: the messages' schemas are written once a process
    (a fifth of a second of pydantic each time), and a reader changing its document changes no other."""
    import pydantic

    written = []
    json_schema = pydantic.TypeAdapter.json_schema
    monkeypatch.setattr(pydantic.TypeAdapter, "json_schema", lambda self, *a, **k: written.append(1) or json_schema(self, *a, **k))
    first = full_schema()
    first["$defs"]["Offer"]["properties"].clear()
    second = full_schema()
    assert written == []
    assert second == document and second["$defs"]["Offer"]["properties"]
