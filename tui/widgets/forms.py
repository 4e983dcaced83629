"""A form generated from a declared type: one input per field, its type and constraints shown,
errors under each field. Used for human tasks (the output type) and for run params.

`collect()` reads the inputs (with local errors for text that is not a number or not JSON);
`check()` also validates against the type and maps pydantic's error locations to the fields.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widget import Widget
from textual.widgets import Input, Label, Select, Static

from flow45.config import FieldSpec
from flow45.types import TypeRegistry

MISSING = object()
Errors = dict[tuple[str, ...], str]


def type_hint(spec: FieldSpec, registry: TypeRegistry) -> str:
    """`integer ≥ 1`, `string ≤ 2048 chars, optional`, `one of emea, apac`…"""
    if spec.type == "enum":
        words = ["one of " + ", ".join(spec.values or [])]
    elif spec.type == "list":
        item = spec.items.type if spec.items else "?"
        words = [f"list of {item}, as JSON"]
    elif spec.type in ("date", "datetime"):
        words = [f"{spec.type} (" + ("YYYY-MM-DD" if spec.type == "date" else "YYYY-MM-DDTHH:MM:SSZ, UTC or with +HH:MM") + ")"]
    else:
        words = [spec.type]
    given = spec.constraints()  # only those that apply: what the form's value is checked against
    for key, sign in (("ge", "≥"), ("gt", ">"), ("le", "≤"), ("lt", "<")):
        if (value := given.get(key)) is not None:
            words.append(f"{sign} {int(value) if float(value).is_integer() else value}")
    if (least := given.get("min_length")) is not None:
        words.append(f"≥ {least} long")
    if (most := given.get("max_length")) is not None:
        words.append(f"≤ {most} long")
    if pattern := given.get("pattern"):
        words.append(f"matching {pattern}")
    hint = " ".join(words[:1]) + ("" if len(words) == 1 else ", " + ", ".join(words[1:]))
    return hint + (", optional" if spec.optional else "") + (
        "" if spec.default is None else f", default {json.dumps(spec.default)}")  # left empty, it is taken


def pydantic_errors(error: ValidationError) -> Errors:
    found: Errors = {}
    for item in error.errors():
        message = "required" if item["type"] == "missing" else item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        found.setdefault(tuple(str(part) for part in item["loc"]), message)
    return found


class FieldRow(Vertical):
    """One scalar, enum or list field: its name and hint, the input, and the error under it."""

    DEFAULT_CSS = """
    FieldRow { height: auto; margin-bottom: 1; }
    FieldRow .field-label { color: $text; }
    FieldRow .field-error { color: $error; height: auto; }
    FieldRow .field-error.-empty { display: none; }
    FieldRow Input.-invalid, FieldRow Select.-invalid > SelectCurrent { border: tall $error; }
    """

    def __init__(self, name: str, spec: FieldSpec, registry: TypeRegistry, path: tuple[str, ...]):
        super().__init__(classes="field")
        self.field_name, self.spec, self.path = name, spec, path
        self.hint = type_hint(spec, registry)
        self.input_id = "field-" + "-".join(path)

    def compose(self) -> ComposeResult:
        # Text, not markup: a pattern's [a-z] or a description's [/] would be read as markup.
        yield Label(Text.assemble((self.field_name, "bold"), "  ", (self.hint, "dim")), classes="field-label")
        if self.spec.description:
            yield Label(Text(self.spec.description, "dim"))
        kind = self.spec.type
        if kind == "boolean":
            yield Select([("true", True), ("false", False)], prompt="choose…", id=self.input_id)
        elif kind == "enum":
            yield Select([(Text(v), v) for v in self.spec.values or []], prompt="choose…", id=self.input_id)
        else:
            input_type = {"integer": "integer", "number": "number"}.get(kind, "text")
            placeholder = "[…] as JSON" if kind == "list" else self.hint
            yield Input(placeholder=placeholder, type=input_type, id=self.input_id, select_on_focus=False)
        yield Static("", classes="field-error -empty", markup=False)  # a refusal may quote what was typed

    @property
    def control(self) -> Widget:
        return self.query_one(f"#{self.input_id}")

    def read(self) -> tuple[Any, str | None]:
        """The field's value (MISSING when left empty) and a local error, if any."""
        control = self.control
        if isinstance(control, Select):
            return (MISSING if control.value is Select.NULL else control.value), None
        text = control.value.strip()
        if text == "":
            return MISSING, None
        kind = self.spec.type
        try:
            if kind == "integer":
                return int(text), None
            if kind == "number":
                return float(text), None
            if kind == "list":
                value = json.loads(text)
                return (value, None) if isinstance(value, list) else (MISSING, "expected a JSON list: [...]")
        except ValueError as exc:
            what = {"integer": "a whole number", "number": "a number"}.get(kind, "valid JSON")
            detail = f" ({exc.msg})" if isinstance(exc, json.JSONDecodeError) else ""
            return MISSING, f"expected {what}{detail}"
        return control.value, None

    def set_error(self, message: str | None) -> None:
        error = self.query_one(".field-error", Static)
        error.update(message or "")
        error.set_class(not message, "-empty")
        self.control.set_class(bool(message), "-invalid")


class TypeForm(Vertical):
    """The fields of a declared type; a field of another declared type is a nested form."""

    DEFAULT_CSS = """
    TypeForm { height: auto; }
    TypeForm TypeForm { border: round $primary-darken-2; padding: 0 1; margin-bottom: 1; }
    TypeForm > .form-error { color: $error; height: auto; }
    TypeForm > .form-error.-empty { display: none; }
    """

    def __init__(self, registry: TypeRegistry, type_name: str, *, path: tuple[str, ...] = (),
                 optional: bool = False, id: str | None = None):
        super().__init__(id=id)
        self.registry, self.type_name, self.path, self.optional = registry, type_name, path, optional

    def compose(self) -> ComposeResult:
        yield Static("", classes="form-error -empty", markup=False)
        for name, spec in self.registry._specs[self.type_name].fields.items():
            path = self.path + (name,)
            if spec.type in self.registry._specs:
                form = TypeForm(self.registry, spec.type, path=path, optional=spec.optional)
                form.border_title = f"{name}: {spec.type}" + (", optional" if spec.optional else "")
                yield form
            else:
                yield FieldRow(name, spec, self.registry, path)

    def _children(self) -> list[FieldRow | TypeForm]:
        return [child for child in self.children if isinstance(child, (FieldRow, TypeForm))]

    def collect(self) -> tuple[dict | None, Errors]:
        """The data typed so far, and local errors by field path. A nested form left empty is None."""
        data: dict[str, Any] = {}
        errors: Errors = {}
        for child in self._children():
            name = child.path[-1]
            if isinstance(child, TypeForm):
                value, child_errors = child.collect()
                errors.update(child_errors)
                if value is not None:
                    data[name] = value
            else:
                value, error = child.read()
                if error:
                    errors[child.path] = error
                elif value is not MISSING:
                    data[name] = value
        if self.path and not data and not errors:
            return None, errors
        return data, errors

    def set_error(self, message: str | None) -> None:
        error = self.query_one(".form-error", Static)
        error.update(message or "")
        error.set_class(not message, "-empty")

    def show_errors(self, errors: Errors) -> None:
        """Put each error under the deepest field its location names; the rest at the top."""
        targets: list[FieldRow | TypeForm] = [self, *self.query(FieldRow), *self.query(TypeForm)]
        messages: dict[int, list[str]] = {}
        for loc, message in errors.items():  # locations are full paths from the top form
            best = max((t for t in targets if loc[: len(t.path)] == t.path), key=lambda t: len(t.path))
            rest = ".".join(loc[len(best.path):])
            messages.setdefault(id(best), []).append(f"{rest}: {message}" if rest else message)
        for target in targets:
            found = messages.get(id(target))
            target.set_error("; ".join(found) if found else None)

    def check(self) -> tuple[dict | None, bool]:
        """Collect and validate against the type; errors are shown. Returns (data, ok)."""
        data, errors = self.collect()
        if not errors:
            try:
                self.registry.validate(self.type_name, data or {})
            except ValidationError as exc:
                errors = pydantic_errors(exc)
        self.show_errors(errors)
        return data, not errors
