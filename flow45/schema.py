"""`flow45 schema`: one JSON Schema (draft 2020-12) document of every message, every reply and each
function's inputs and output.

Everything is a named schema under the root's `$defs`, and every `$ref` points there
(`#/$defs/NAME`), so the document compiles as it is in any 2020-12 validator; to check one
message, validate against `{...document, "$ref": "#/$defs/Offer"}`. pydantic writes the schemas;
this module gathers their own `$defs` at the root, renames declared types after their team
(`reports.Document`) and drops pydantic's OpenAPI-only `discriminator`.
"""

from __future__ import annotations

import copy
import functools
from typing import Any, Optional

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, create_model

from flow45 import messages as m
from flow45.config import task_signature
from flow45.models import WorkflowVersion
from flow45.store import list_workflows
from flow45.store.deploy import find_workflow
from flow45.store.specs import version_spec
from flow45.views import EventPage, EventView

DRAFT = "https://json-schema.org/draft/2020-12/schema"
MESSAGES: dict[str, Any] = {
    "Offer": m.Offer, "UndoNotice": m.UndoNotice,
    "WorkerMessage": m.WorkerMessage, "CallbackMessage": m.CallbackMessage, "OperatorMessage": m.OperatorMessage,
    "OperatorRead": m.OperatorRead, "Reply": m.Reply, "LedgerEvent": EventView, "EventPage": EventPage,
}
NOT_STANDARD = {"discriminator"}  # OpenAPI's; the oneOf it annotates says the same in standard words
_NAMES = {"properties", "patternProperties", "$defs", "dependentSchemas"}  # their keys are names, not keywords


def _clean(schema: Any, rename: dict[str, str]) -> Any:
    """A copy without non-standard keywords, each `#/$defs/NAME` renamed."""
    if isinstance(schema, list):
        return [_clean(item, rename) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out: dict[str, Any] = {}
    for key, value in schema.items():
        if key in NOT_STANDARD:
            continue
        if key == "$ref" and isinstance(value, str) and value.startswith("#/$defs/"):
            value = "#/$defs/" + rename[value.removeprefix("#/$defs/")]
        elif key in _NAMES and isinstance(value, dict):
            value = {name: _clean(item, rename) for name, item in value.items()}
        elif isinstance(value, (dict, list)):
            value = _clean(value, rename)
        out[key] = value
    return out


class Bundle:
    """Named schemas gathered under one root `$defs`."""

    def __init__(self) -> None:
        self.defs: dict[str, dict] = {}

    def add(self, schema: dict, name: str | None = None, prefix: str = "", suffix: str = "") -> dict[str, str]:
        """Hoist `schema`'s `$defs` (named prefix + their name + suffix) and keep `schema` itself as
        `name`. A name already taken by a different schema gets a number too. Returns the renames."""
        defs = schema.get("$defs", {})
        body = {k: v for k, v in schema.items() if k != "$defs"}
        for attempt in range(1, 100):
            tail = suffix if attempt == 1 else f"{suffix}.{attempt}"
            rename = {def_name: prefix + def_name + tail for def_name in defs}
            placed = {rename[d]: _clean(s, rename) for d, s in defs.items()}
            if name is not None:
                placed[name] = _clean(body, rename)
            if all(self.defs.get(key, value) == value for key, value in placed.items()):
                self.defs.update(placed)
                return rename
            if name is not None and self.defs.get(name, placed[name]) != placed[name]:
                raise ValueError(f"two different schemas named {name}")
        raise ValueError(f"cannot place the definitions of {name or prefix}")


class _Inputs(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=False, json_schema_serialization_defaults_required=True)


def _inputs_model(function: str, inputs: list[tuple[str, type[BaseModel]]]) -> type[BaseModel]:
    """Every parameter present; null when its upstream was skipped."""
    fields = {f"p{i}": (Optional[model], Field(..., alias=param)) for i, (param, model) in enumerate(inputs)}
    model = create_model(f"{function}_inputs", __base__=_Inputs, **fields)
    model.__doc__ = f"The inputs of {function}: parameter -> upstream output, or null if that upstream was skipped."
    return model


def _add_messages(bundle: Bundle) -> None:
    bundle.defs.update(copy.deepcopy(_message_defs()))  # a copy: callers may change what they are given


@functools.cache
def _message_defs() -> dict[str, dict]:
    """The messages' and replies' schemas: the same for the life of the process, and about a fifth of a
    second for pydantic to write, which a bridge would pay for every team's `schema` read."""
    bundle = Bundle()
    for name, kind in MESSAGES.items():
        bundle.add(TypeAdapter(kind).json_schema(), name)
    for request in m.RESULTS:
        bundle.add(TypeAdapter(m.reply_to(request)).json_schema() | {"title": f"Reply to {request.__name__}"},
                   f"{request.__name__}Reply")
    return bundle.defs


def _add_functions(bundle: Bundle, team: str | None) -> None:
    done: set[str] = set()
    for view in list_workflows(team):
        workflow = find_workflow(view.team, view.name)
        row = WorkflowVersion.get((WorkflowVersion.workflow == workflow) & (WorkflowVersion.version == view.version))
        spec = version_spec(row.id)
        for task in spec.workflow.tasks.values():
            key = f"{view.team}.{task.function}"
            if task.function is None or key in done:  # a timer has no function
                continue
            done.add(key)
            signature = task_signature(spec.workflow, task)
            output = spec.types.model(signature.output).model_json_schema(by_alias=True)
            nested = output.pop("$defs", {})
            # The output type itself becomes TEAM.TYPE, beside the types it uses.
            rename = bundle.add({"$defs": {signature.output: output, **nested}}, prefix=f"{view.team}.")
            bundle.defs[f"{key}.output"] = {"$ref": f"#/$defs/{rename[signature.output]}"}
            # Inputs as Flow45 passes them on: normalised, optional fields present (null when omitted).
            inputs = _inputs_model(task.function, [(p, spec.types.model(t)) for p, t in signature.inputs])
            bundle.add(inputs.model_json_schema(by_alias=True, mode="serialization"), f"{key}.inputs",
                       prefix=f"{view.team}.", suffix=".normalised")


def message_schema() -> dict:
    """The document without functions: it needs no store."""
    bundle = Bundle()
    _add_messages(bundle)
    return {"$schema": DRAFT, "$defs": dict(sorted(bundle.defs.items()))}


def full_schema(team: str | None = None) -> dict:
    bundle = Bundle()
    _add_messages(bundle)
    _add_functions(bundle, team)
    return {
        "$schema": DRAFT,
        "title": "Flow45 messages, replies and function signatures",
        "description": (
            "Every schema is under $defs: the messages (Offer, UndoNotice, WorkerMessage, OperatorMessage, "
            "OperatorRead, Reply), the reply to each request (ClaimReply, StatusReply, ...), and for each function "
            "TEAM.FUNCTION.inputs and TEAM.FUNCTION.output. Validate against "
            '{...this document, "$ref": "#/$defs/NAME"}.'
        ),
        "$defs": dict(sorted(bundle.defs.items())),
    }


def schema_for(document: dict, name: str) -> dict:
    """The document with its root pointing at one named schema: what a validator compiles."""
    if name not in document["$defs"]:
        raise KeyError(f"flow45 schema has no $defs/{name}")
    return {**document, "$ref": f"#/$defs/{name}"}
