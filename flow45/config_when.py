"""Deploy's checks on a task's `when` (flow45.conditions): each path names one of the task's inputs and
a field of its type, and each value is one that field can hold, so that a typo fails the deploy
instead of skipping the task in every run."""

from __future__ import annotations

import difflib
from typing import Any, Callable

from flow45 import wire
from flow45.config import FieldSpec, TaskSpec, TeamConfig, WorkflowSpec

KINDS = {"boolean": (bool,), "integer": (int, float), "number": (int, float), "string": (str,), "date": (str,),
         "datetime": (str,), "enum": (str,)}
ORDERED = {"integer", "number", "string", "date", "datetime"}


def check_conditions(config: TeamConfig, report: Callable[[str, str, str], None]) -> None:
    for wf_name, wf in config.workflows.items():
        key = f"workflows.{wf_name}"
        for task_name, task in wf.tasks.items():
            for path, expected in (task.when or {}).items():
                if problem := _problem(config, wf, task, path, expected):
                    report(key, f"{key}.tasks.{task_name}.when.{path}", problem)


def _problem(config: TeamConfig, wf: WorkflowSpec, task: TaskSpec, path: str, expected: Any) -> str | None:
    param, *fields = path.split(".")
    if param in task.inputs:
        upstream = wf.tasks.get(task.inputs[param])
        type_name = upstream.output if upstream is not None else None
    elif param == "params":  # the run's
        if wf.params is None:
            return "the workflow takes no params (declare `params:` with a type to test them)"
        type_name = wf.params
    else:
        known = f"one of its inputs ({', '.join(task.inputs)})" if task.inputs else "an input (the task has none)"
        return f"'{param}' is neither {known} nor the run's `params`"
    if type_name not in config.types:
        return None  # said where the input's output type or the params type is written
    spec = None
    for depth, name in enumerate(fields):
        declared = config.types[type_name].fields
        if name not in declared:
            hint = difflib.get_close_matches(name, list(declared), n=1)
            return f"{type_name} has no field '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
        spec = declared[name]
        if depth < len(fields) - 1:
            if spec.type not in config.types:
                return f"{'.'.join([param, *fields[:depth + 1]])} is a {spec.type}: there is no field inside it"
            type_name = spec.type
    return _value_problem(spec, expected)


def _value_problem(spec: FieldSpec, expected: Any) -> str | None:
    kinds = KINDS.get(spec.type)
    if kinds is None:
        if expected is None or isinstance(expected, dict) and set(expected) == {"ne"} and expected["ne"] is None:
            return None
        return f"a {spec.type} is compared only with null (is it there?); name a field inside it"
    if isinstance(expected, dict):
        ordered = [key for key in expected if key != "ne"]
        if ordered and spec.type not in ORDERED:
            return f"a {spec.type} is not ordered: {ordered[0]} does not apply (write a value or a list of values)"
        values = list(expected.values())
    else:
        values = expected if isinstance(expected, list) else [expected]
    for value in values:
        if value is None:
            continue
        if not isinstance(value, kinds) or (bool not in kinds and isinstance(value, bool)):
            return f"a {spec.type} field cannot be {_json(value)}"
        if spec.type == "enum" and spec.values is not None and value not in spec.values:
            return f"{_json(value)} is not one of the enum's values ({', '.join(spec.values)})"
        if spec.type in WRITTEN and not _holds_as(spec.type, value):
            return f"a {spec.type} field cannot be {_json(value)} ({WRITTEN[spec.type]})"
    return None


# How a date or a time is written, for a value that is neither: it would compare with the stored ones as
# text, and "next week" or 2028-3-1 against 2028-03-01 means nothing.
WRITTEN = {"date": "a date is YYYY-MM-DD, such as 2028-02-29",
           "datetime": "a time with its offset, such as 2028-02-29T09:00:00Z or 2028-02-29T10:00:00+01:00"}


def _holds_as(kind: str, value: str) -> bool:
    try:
        (wire.parse_date if kind == "date" else wire.parse_datetime)(value)
    except (ValueError, OverflowError):
        return False
    return True


def _json(value: Any) -> str:
    return wire.dumps(value)
