"""A workflow as a Mermaid flowchart: data edges labelled with their parameter, `after` edges dashed,
a task's `max_running`, `depends_on_past`, `trigger_rule` and `when` under its name."""

from __future__ import annotations

from flow45.conditions import describe
from flow45.config import WorkflowSpec
from flow45.durations import format_duration

_TRIGGER_RULES = {"all_done": "<br/>once upstream ends, failed too", "one_failed": "<br/>only once an upstream fails",
                  "none_failed_min_one_success": "<br/>skipped if every upstream is",
                  "one_success": "<br/>once one upstream succeeds",
                  "all_skipped": "<br/>only if every upstream is skipped",
                  "all_failed": "<br/>only if every upstream fails",
                  "none_skipped": "<br/>once upstream ends, skipped if one is"}


def mermaid(name: str, workflow: WorkflowSpec) -> str:
    lines = ["flowchart LR", f"  %% {name}" + (f": {workflow.description}" if workflow.description else "")]
    for task_name, task in workflow.tasks.items():
        ends = _TRIGGER_RULES.get(task.trigger_rule, "")
        if task.is_timer:
            wait = f"wait {format_duration(task.wait)}" if task.wait is not None else f"until {task.wait_until}"
            lines.append(f'  {task_name}(["{task_name}<br/>timer: {wait}{ends}"])')
            continue
        marks = " (human)" if task.human else " (optional)" if task.optional else ""
        when = "".join(f"<br/>when {path} {describe(expected)}" for path, expected in (task.when or {}).items())
        when = when.replace('"', "#quot;")  # inside a quoted Mermaid label
        limit = f"<br/>at most {task.max_running} at once" if task.max_running is not None else ""
        limit += "<br/>after its run before" if task.depends_on_past else ""
        limit += ends
        lines.append(f'  {task_name}["{task_name}{marks}<br/>{task.function} → {task.output}{limit}{when}"]')
    for task_name, task in workflow.tasks.items():
        for param, upstream in task.inputs.items():
            lines.append(f"  {upstream} -->|{param}| {task_name}")
        for upstream in task.after:
            if upstream not in task.inputs.values():
                lines.append(f"  {upstream} -.-> {task_name}")
    return "\n".join(lines) + "\n"
