"""Handlers' signatures, typed inputs, outputs as JSON, and a team's types as models (no servers)."""

import datetime
import textwrap
from typing import Optional

import pytest
from pydantic import BaseModel, ValidationError

from bridge.sdk import LocalTransport, PermanentError, Worker, load_types
from bridge.sdk.binding import Binding, dump_output
from flow45.errors import NotFound
from tests.conftest import EXAMPLES


class Doc(BaseModel):
    uri: str
    pages: int


def test_inputs_are_validated_into_their_annotations():
    def handler(task, document: Doc, maybe: Optional[Doc] = None, raw: dict = None, untyped=None):
        pass

    binding = Binding.of("f", handler)
    args = binding.arguments({"document": {"uri": "u", "pages": 2}, "maybe": None, "raw": {"a": 1},
                              "untyped": {"b": 2}, "extra": 1})
    assert args == {"document": Doc(uri="u", pages=2), "maybe": None, "raw": {"a": 1}, "untyped": {"b": 2}}


def test_a_skipped_upstream_stays_none_whatever_the_annotation():
    def handler(task, document: Doc):
        pass

    assert Binding.of("f", handler).arguments({"document": None}) == {"document": None}


def test_var_keyword_handlers_get_every_input():
    def handler(task, **inputs):
        pass

    assert Binding.of("f", handler).arguments({"a": 1, "b": None}) == {"a": 1, "b": None}


def test_missing_or_wrong_inputs_are_permanent_errors():
    def handler(task, document: Doc):
        pass

    binding = Binding.of("render", handler)
    with pytest.raises(PermanentError, match="needs input document, but the task passes sales"):
        binding.arguments({"sales": {}})
    with pytest.raises(PermanentError, match="input 'document' does not match.*pages"):
        binding.arguments({"document": {"uri": "u"}})


def test_a_handler_must_take_the_task_first():
    with pytest.raises(TypeError, match="first parameter must take the task"):
        Binding.of("f", lambda: None)
    with pytest.raises(TypeError, match="first parameter must take the task"):
        Binding.of("f", lambda *, task: None)


def test_an_unresolvable_annotation_is_refused_at_registration():
    namespace = {}
    exec(textwrap.dedent("""
        from __future__ import annotations
        def handler(task, document: NoSuchType):
            pass
    """), namespace)
    with pytest.raises(TypeError, match="annotation cannot be resolved.*NoSuchType"):
        Binding.of("f", namespace["handler"])


def test_outputs_dump_by_alias_as_json():
    types = load_types(EXAMPLES, "reports")
    assert dump_output(types.Document(uri="u", pages=1)) == {"uri": "u", "pages": 1, "checksum": None}
    assert dump_output({"when": __import__("datetime").date(2026, 3, 1), "doc": Doc(uri="u", pages=1)}) == {
        "when": "2026-03-01", "doc": {"uri": "u", "pages": 1}
    }


def test_load_types_names_fields_as_declared(tmp_path):
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""
        team: odd
        types:
          Weird:
            fields:
              json: string
              class: integer
              model_config: boolean
              plain: {type: list, items: Inner}
          Inner:
            fields: {x: {type: enum, values: [a, b]}, y: {type: number, optional: true}}
        workflows:
          w:
            tasks:
              t: {function: f, output: Weird}
              u: {function: g, output: Inner, inputs: {weird: t}}
    """))
    types = load_types(path, "odd")
    model = types.Weird
    value = model.model_validate({"json": "j", "class": 1, "model_config": True, "plain": [{"x": "a"}]})
    assert value.plain[0].x.value == "a" and value.plain[0].y is None
    assert value.f0 == "j" and value.f1 == 1 and value.f2 is True  # names Python or pydantic reserve
    assert dump_output(value) == {"json": "j", "class": 1, "model_config": True, "plain": [{"x": "a", "y": None}]}
    assert types.Inner(x="b", y=2).y == 2.0  # built by declared name
    assert sorted(types) == ["Inner", "Weird"] and "Inner" in types
    inputs, output = types.signature("g")
    assert inputs == {"weird": types.Weird} and output is types.Inner
    with pytest.raises(AttributeError, match="declares no type 'Nope'"):
        types.Nope
    with pytest.raises(NotFound):
        types.signature("nope")
    with pytest.raises(NotFound, match="no configuration for team 'other'"):
        load_types(path, "other")


def test_the_sdk_models_follow_the_wire_format(tmp_path):
    """The SDK's models are built like the core's: nothing coerced, finite numbers, datetimes in UTC."""
    path = tmp_path / "t.yaml"
    path.write_text(textwrap.dedent("""
        team: wire
        types:
          Stamp:
            fields: {at: datetime, day: date, n: integer, ratio: number, ok: boolean}
        workflows:
          w:
            tasks:
              t: {function: f, output: Stamp}
    """))
    Stamp = load_types(path, "wire").Stamp
    good = {"at": "2026-03-01T14:05:00+02:00", "day": "2026-03-01", "n": 3, "ratio": 0.5, "ok": True}
    assert dump_output(Stamp.model_validate(good))["at"] == "2026-03-01T12:05:00Z"
    at = datetime.datetime(2026, 3, 1, 12, 5, tzinfo=datetime.timezone.utc)
    assert dump_output(Stamp(**{**good, "at": at}))["at"] == "2026-03-01T12:05:00Z"
    for change, words in [
        ({"n": "3"}, "valid integer"), ({"ratio": "0.5"}, "valid number"), ({"ratio": float("inf")}, "finite number"),
        ({"ok": "yes"}, "valid boolean"), ({"at": at.replace(tzinfo=None)}, "needs a time zone"),
        ({"at": "2026-03-01T12:05:00"}, "has no offset"), ({"day": "2026-03-01T00:00:00Z"}, "YYYY-MM-DD"),
    ]:
        with pytest.raises(ValidationError, match=words):
            Stamp(**{**good, **change})


def test_registration_rules():
    worker = Worker(LocalTransport("acme", "w"))  # never started

    @worker.handler("f")
    def first(task):
        pass

    with pytest.raises(ValueError, match="already has a handler"):
        worker.handler("f")(first)
    with pytest.raises(RuntimeError, match="no handlers"):
        Worker(LocalTransport("acme", "w")).start()
    with pytest.raises(TypeError, match="first parameter"):
        worker.handler("g")(lambda: None)

    async def coroutine(task):
        pass

    with pytest.raises(TypeError, match="is async"):
        worker.handler("h")(coroutine)
    with pytest.raises(RuntimeError, match="not started"):
        worker.join(0.1)
