"""Declared types become pydantic models (unknown keys refused) and JSON Schema."""

from __future__ import annotations

import datetime as dt
from enum import Enum
from typing import Annotated, Any, Optional

from pydantic import (
    AllowInfNan, BaseModel, BeforeValidator, ConfigDict, Field, Strict, TypeAdapter, ValidationError, WithJsonSchema,
    create_model,
)
from pydantic_core import SchemaError, SchemaValidator, core_schema

from flow45.config import FieldSpec, TypeSpec, referenced_types
from flow45.errors import UncheckableType
from flow45.wire import DATE_PATTERN, DATETIME_PATTERN, INT64_MAX, INT64_MIN, parse_date, parse_datetime

# JSON values are taken as they are, never coerced: "7" is not an integer, true is not a number,
# "yes" is not a boolean; numbers are finite; datetimes carry an offset and are kept in UTC.
_SCALARS: dict[str, Any] = {
    "string": Annotated[str, Strict()],
    "integer": Annotated[int, Strict()],
    "number": Annotated[float, Strict(), AllowInfNan(False)],
    "boolean": Annotated[bool, Strict()],
    "datetime": Annotated[dt.datetime, BeforeValidator(parse_datetime),
                          WithJsonSchema({"type": "string", "format": "date-time", "pattern": DATETIME_PATTERN})],
    "date": Annotated[dt.date, BeforeValidator(parse_date),
                      WithJsonSchema({"type": "string", "format": "date", "pattern": DATE_PATTERN})],
}


def pattern_problem(pattern: str) -> str | None:
    """Why values cannot be checked against `pattern`, or None. They are checked by pydantic's regex
    engine, which runs in time linear in the value: a team's pattern cannot make the bridge that every
    team shares backtrack for minutes. That engine has no look-around and no backreferences."""
    try:
        SchemaValidator(core_schema.str_schema(pattern=pattern))
    except SchemaError as exc:
        return _engine_reason(exc)
    return None


def _engine_reason(exc: SchemaError) -> str:
    """The regex engine's own words, from the last line of pydantic-core's nested error."""
    return str(exc).strip().splitlines()[-1].removeprefix("error: ")


class _Declared(BaseModel):
    # Field names live behind aliases so a declared field may be called `json` or `schema`.
    model_config = ConfigDict(
        extra="forbid", strict=False, protected_namespaces=(), populate_by_name=False,
        json_schema_serialization_defaults_required=True,  # the stored form has every field, null if omitted
    )


class TypeRegistry:
    """The pydantic models of one set of declared types (a team's, or one workflow version's)."""

    base: type[BaseModel] = _Declared

    @staticmethod
    def attribute(field_name: str, index: int) -> str:
        """The Python attribute of a declared field; the JSON name is always its alias."""
        return f"f{index}"

    def __init__(self, types: dict[str, TypeSpec]):
        self._specs = types
        self._models: dict[str, type[BaseModel]] = {}

    @property
    def specs(self) -> dict[str, TypeSpec]:
        return self._specs

    def model(self, name: str) -> type[BaseModel]:
        if name not in self._models:
            try:
                self._models[name] = self._build(name)
            except SchemaError as exc:  # a pattern deployed before deploy checked it (pattern_problem)
                raise UncheckableType(f"type {name} cannot be checked ({_engine_reason(exc)}): deploy a version "
                                      "without that pattern") from None
        return self._models[name]

    def _build(self, name: str) -> type[BaseModel]:
        spec = self._specs[name]
        fields: dict[str, Any] = {}
        for index, (field_name, field_spec) in enumerate(spec.fields.items()):
            default = None if field_spec.optional else ...
            given = field_spec.default is not None  # checked against the field's type at deploy (default_problem)
            fields[self.attribute(field_name, index)] = (
                self._annotation(field_spec),
                Field(field_spec.default if given else default, alias=field_name, description=field_spec.description,
                      validate_default=given),
            )
        model = create_model(name, __base__=self.base, **fields)
        model.__doc__ = spec.description or f"The declared type {name}."
        return model

    def _annotation(self, spec: FieldSpec) -> Any:
        """The field's type with its constraints, a list's items with theirs."""
        annotation = self._bare(spec)
        constraints = spec.constraints()
        if spec.type == "integer":  # within 64 bits, whatever the field's own bounds
            constraints["ge"] = max(constraints.get("ge", INT64_MIN), INT64_MIN)
            constraints["le"] = min(constraints.get("le", INT64_MAX), INT64_MAX)
        if constraints:
            annotation = Annotated[annotation, Field(**constraints)]
        return Optional[annotation] if spec.optional else annotation

    def _bare(self, spec: FieldSpec) -> Any:
        if spec.type in _SCALARS:
            return _SCALARS[spec.type]
        if spec.type == "list":
            return list[self._annotation(spec.items)]
        if spec.type == "enum":
            return Enum(f"Enum_{'_'.join(spec.values)}"[:60], {v: v for v in spec.values}, type=str)
        return self.model(spec.type)

    def default_problem(self, type_name: str, field_name: str) -> str | None:
        """Why the field's `default` is not a value of its type, or None."""
        spec = self._specs[type_name].fields[field_name]
        try:
            TypeAdapter(self._annotation(spec)).validate_python(spec.default)
        except ValidationError as exc:
            return describe_errors(exc).replace("(top): ", "")  # the path given is the default's own
        return None

    def validate(self, name: str, data: object) -> dict:
        """The JSON form of `data` as type `name`; raises pydantic's ValidationError."""
        return self.model(name).model_validate(data).model_dump(mode="json", by_alias=True, exclude_none=False)

    def json_schema(self, name: str) -> dict:
        return self.model(name).model_json_schema(by_alias=True)


def describe_errors(error: ValidationError, root: str = "") -> str:
    """pydantic's errors as one line each: `path: what is wrong`."""
    lines = []
    for item in error.errors():
        path = ".".join(str(p) for p in (root, *item["loc"]) if p != "")
        message = item["msg"]
        if item["type"] == "extra_forbidden":
            message = "unknown field"
        lines.append(f"{path or '(top)'}: {message}")
    return "; ".join(lines)


def all_referenced(types: dict[str, TypeSpec]) -> set[str]:
    return {t for spec in types.values() for f in spec.fields.values() for t in referenced_types(f)}
