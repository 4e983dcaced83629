"""A handler's signature: which inputs it takes, validated into its annotations; its return value as JSON."""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any, Callable

from pydantic import BaseModel, TypeAdapter, ValidationError
from pydantic_core import to_jsonable_python

from bridge.sdk.errors import PermanentError
from flow45.types import describe_errors

_KEYWORD = (inspect.Parameter.POSITIONAL_OR_KEYWORD, inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class Binding:
    """How to call one handler: `fn(task, **inputs)`."""

    function: str
    fn: Callable[..., Any]
    adapters: dict[str, TypeAdapter | None]  # parameter -> validator of its annotation (None: as is)
    required: frozenset[str]
    var_keyword: bool

    @classmethod
    def of(cls, function: str, fn: Callable[..., Any]) -> Binding:
        if inspect.iscoroutinefunction(fn):
            raise TypeError(f"handler {_name(fn)} for {function!r} is async; handlers are plain functions run in threads")
        signature = _signature(fn)
        params = list(signature.parameters.values())
        if not params or params[0].kind not in (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD):
            raise TypeError(f"handler {_name(fn)} for {function!r}: its first parameter must take the task")
        adapters: dict[str, TypeAdapter | None] = {}
        required = set()
        for param in params[1:]:
            if param.kind in _KEYWORD:
                adapters[param.name] = _adapter(param.annotation)
                if param.default is inspect.Parameter.empty:
                    required.add(param.name)
            elif param.kind is inspect.Parameter.POSITIONAL_ONLY:
                raise TypeError(f"handler {_name(fn)} for {function!r}: inputs are passed by keyword, "
                                f"parameter {param.name!r} is positional-only")
        var_keyword = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params)
        return cls(function, fn, adapters, frozenset(required), var_keyword)

    def arguments(self, inputs: dict[str, Any]) -> dict[str, Any]:
        """The keyword arguments for these inputs; PermanentError if they cannot fit the handler."""
        missing = sorted(self.required - inputs.keys())
        if missing:
            raise PermanentError(
                f"handler {_name(self.fn)} for {self.function!r} needs input {', '.join(missing)}, "
                f"but the task passes {', '.join(sorted(inputs)) or 'no inputs'}"
            )
        arguments: dict[str, Any] = {}
        for name, value in inputs.items():
            if name not in self.adapters:
                if self.var_keyword:
                    arguments[name] = value
                continue  # an input the handler does not ask for
            adapter = self.adapters[name]
            if value is None or adapter is None:
                arguments[name] = value  # a skipped upstream passes None
                continue
            try:
                arguments[name] = adapter.validate_python(value)
            except ValidationError as exc:
                raise PermanentError(f"input {name!r} does not match the handler's annotation: {describe_errors(exc)}") from exc
        return arguments


def dump_output(value: Any) -> Any:
    """The JSON form of a handler's return value: a pydantic model by alias, or a plain structure."""
    if isinstance(value, BaseModel):
        return value.model_dump(by_alias=True, mode="json")
    return to_jsonable_python(value, by_alias=True)


def _signature(fn: Callable[..., Any]) -> inspect.Signature:
    """The signature with annotations resolved, also against the names the function closes over."""
    try:
        nonlocals = inspect.getclosurevars(fn).nonlocals
    except (TypeError, ValueError):
        nonlocals = {}
    try:
        return inspect.signature(fn, eval_str=True, locals=nonlocals)
    except (NameError, AttributeError, SyntaxError) as exc:
        raise TypeError(
            f"handler {_name(fn)}: an annotation cannot be resolved ({exc}); define the types it names "
            "at module level (or without `from __future__ import annotations`)"
        ) from exc


def _adapter(annotation: Any) -> TypeAdapter | None:
    if annotation is inspect.Parameter.empty or annotation is Any or isinstance(annotation, str):
        return None
    try:
        return TypeAdapter(annotation)
    except Exception:  # noqa: BLE001 - not a type pydantic understands: pass the value as is
        return None


def _name(fn: Callable[..., Any]) -> str:
    return getattr(fn, "__qualname__", repr(fn))
