"""Who decides a human task, by when, and what happens when nobody does: the config keys of a
`human: true` task (`assignees`, `due`, `reminders`, `overdue`) and of the team's `groups`, and the
checks made before deploy. The lifecycle rules that use them are in `flow45.store.rules_human`."""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

GROUP_PREFIX = "@"
USER_NAME = r"^[A-Za-z0-9][A-Za-z0-9_.@+-]{0,127}$"  # a broker user name
USER = "^@?" + USER_NAME[1:]  # a broker user name, or @group


class OverdueSpec(BaseModel):
    """What happens when a human task's `due` passes and nobody has decided.

    Written as `fail`, `skip`, `{escalate: [users or @groups]}` or `{default: OUTPUT}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    action: Literal["escalate", "fail", "skip", "default"] = Field(
        description="escalate: the `to` users and groups may decide too; fail or skip the task; "
                    "default: submit `output` for it"
    )
    to: list[str] = Field(default_factory=list, description="escalate: users and @groups who may decide too")
    output: dict[str, Any] | None = Field(None, description="default: the output submitted, of the task's output type")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        if isinstance(value, str):
            if value not in ("fail", "skip", "escalate", "default"):
                raise ValueError(f"{value!r} is not an overdue outcome: write fail, skip, "
                                 "{escalate: [users, @groups]} or {default: OUTPUT}")
            return {"action": value}
        if isinstance(value, dict) and len(value) == 1:
            [(key, arg)] = value.items()
            if key == "escalate":
                return {"action": "escalate", "to": arg}
            if key == "default":
                return {"action": "default", "output": arg}
        return value

    @model_validator(mode="after")
    def _coherent(self) -> OverdueSpec:
        if self.action == "escalate" and not self.to:
            raise ValueError("escalate needs the users or @groups to escalate to")
        if self.action != "escalate" and self.to:
            raise ValueError("`to` is only for escalate")
        if self.action == "default" and self.output is None:
            raise ValueError("default needs the output to submit")
        if self.action != "default" and self.output is not None:
            raise ValueError("`output` is only for default")
        for name in self.to:
            _check_name(name)
        return self


def _check_name(name: str) -> None:
    if not re.match(USER, name):
        raise ValueError(f"{name!r} is not a user name or an @group")


HUMAN_KEYS = ("assignees", "due", "reminders", "overdue")


def check_task_keys(task) -> None:
    """Assignment keys are for human tasks only, and a worker's `timeout` is not for them; `overdue`
    needs `due`; reminders come before it."""
    written = [key for key in HUMAN_KEYS if getattr(task, key) not in (None, [])]
    if written and not task.human:
        raise ValueError(f"{', '.join(written)}: only for a human task (human: true)")
    if task.human and task.timeout is not None:
        raise ValueError("timeout: a human task has no worker's attempt to time out; its deadline is `due`, "
                         "with `overdue: fail` to fail it then")
    if task.human and task.depends_on_past:
        raise ValueError("depends_on_past: a human task is offered to people when it is ready; order their "
                         "decisions with `after` in one run, or connect the workflows with `on`")
    if task.human and task.optional:
        raise ValueError("optional: a human task fails only when overdue; say what then with `overdue: skip`")
    if task.human and task.max_running is not None:
        raise ValueError("max_running: a human task waits for a person, not a worker's slot; who may decide it is "
                         "`assignees`")
    if task.human and task.start_within is not None:
        raise ValueError("start_within: a human task waits for a person, not a worker; its deadline is `due`, "
                         "with `overdue: fail` to fail it then")
    for name in task.assignees:
        _check_name(name)
    if task.overdue is not None and task.due is None:
        raise ValueError("overdue needs a `due` (a duration from when the task becomes available)")
    if task.due is not None and task.due <= 0:
        raise ValueError("due must be longer than 0s")
    for reminder in task.reminders:
        if reminder <= 0:
            raise ValueError("a reminder must be longer than 0s after the task becomes available")
        if task.due is not None and reminder >= task.due:
            raise ValueError("reminders count from when the task becomes available and must come before `due`")


def names_used(task) -> list[str]:
    return [name for _, name in names_named(task)]


def names_named(task) -> list[tuple[str, str]]:
    """The users and @groups a human task names, each with where: `assignees.0`, `overdue.to.1`."""
    return [*((f"assignees.{i}", name) for i, name in enumerate(task.assignees)),
            *((f"overdue.to.{i}", name) for i, name in enumerate(task.overdue.to if task.overdue else []))]


def groups_used(workflow) -> list[str]:
    """The @groups a workflow's human tasks name, sorted, without the @."""
    return sorted({name[1:] for task in workflow.tasks.values() for name in names_used(task)
                   if name.startswith(GROUP_PREFIX)})


def check_human_tasks(config, report, types_whole: bool) -> None:
    """Unknown @groups, and a `default` output that is not of the task's output type (checked once the
    types are whole: an unknown type or a cycle among them is reported where it is written).
    `report(key, path, message)` records a problem of the workflow `key`."""
    from pydantic import ValidationError

    from flow45.errors import UncheckableType
    from flow45.outputs import find_secret
    from flow45.types import TypeRegistry, describe_errors

    for group, members in config.groups.items():
        for i, member in enumerate(members):
            if member.startswith(GROUP_PREFIX):
                problems_key = f"groups.{group}"
                report(problems_key, f"{problems_key}.{i}", f"'{member}': a group lists user names, not other groups")
    registry = None
    for wf_name, wf in config.workflows.items():
        key = f"workflows.{wf_name}"
        for task_name, task in wf.tasks.items():
            path = f"{key}.tasks.{task_name}"
            for where, name in names_named(task):
                if name.startswith(GROUP_PREFIX) and name[1:] not in config.groups:
                    known = ", ".join(sorted(config.groups)) or "none declared"
                    report(key, f"{path}.{where}",
                           f"unknown group '{name}' (groups are declared under `groups:` at the top; known: {known})")
            gives_default = task.overdue is not None and task.overdue.action == "default"
            if gives_default and types_whole and task.output in config.types:
                registry = registry or TypeRegistry(config.types)
                try:
                    registry.validate(task.output, task.overdue.output)
                except UncheckableType:
                    pass  # its pattern is reported where it is written
                except ValidationError as exc:
                    report(key, f"{path}.overdue.default",
                           f"not a valid {task.output}: {describe_errors(exc, 'default')}")
                if secret := find_secret(task.overdue.output, "default"):  # as a submitted output would be
                    report(key, f"{path}.overdue.default", f"refused, {secret}; outputs never carry secrets")
