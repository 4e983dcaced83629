"""The checks a team's configuration needs beyond its YAML shape: references, cycles, schedules, signatures."""

from __future__ import annotations

import datetime as dt
import difflib
from typing import Callable

from flow45.config import (
    BUILTIN_TYPES,
    CONSTRAINTS_OF,
    SECRET_NAME,
    FieldSpec,
    ScheduleSpec,
    Signature,
    TeamConfig,
    WorkflowSpec,
    cycle_text,
    find_cycle,
    referenced_types,
    task_signature,
)
from flow45.config_human import check_human_tasks
from flow45.config_when import check_conditions
from flow45.durations import MAX_DURATION, OVER_MAX_DURATION, format_duration
from flow45.schedule import cron_problem, window_bound, zone_problem
from flow45.settings import Settings, current_settings
from flow45.outputs import find_secret
from flow45.types import TypeRegistry, pattern_problem
from flow45.wire import INT64_MAX

# What a task's trigger rule waits for its upstream tasks to do, for the refusal of one without any.
_AWAITED = {"all_done": "finish", "one_failed": "fail", "none_failed_min_one_success": "succeed",
            "one_success": "succeed", "all_skipped": "be skipped",
            "all_failed": "fail", "none_skipped": "finish"}


def check_team(config: TeamConfig) -> list[str]:
    """Problems a valid YAML shape can still have: references, cycles, schedules, signatures."""
    problems: list[str] = []

    def report(key: str, path: str, message: str) -> None:
        problems.append(f"{config.origins[key]}: {path}: {message}")

    known_types = set(config.types)
    settings = current_settings()  # what the bridge can send decides what deploys

    def check_field(key: str, path: str, spec: FieldSpec) -> None:
        while True:
            if path.endswith(".items") and spec.default is not None:
                report(key, f"{path}.default", "a list's items take no default; give the list field one")
            for constraint in spec.misplaced_constraints():
                report(key, f"{path}.{constraint}", f"does not apply to {spec.type}" + _applicable(spec.type))
            for constraint in ("max_length", "min_length"):  # pydantic cannot build a check of a larger one
                if (length := getattr(spec, constraint)) is not None and length > INT64_MAX:
                    report(key, f"{path}.{constraint}", f"{length} is over the largest length, {INT64_MAX}")
            if spec.pattern is not None and (problem := pattern_problem(spec.pattern)):
                report(key, f"{path}.pattern", f"{problem} (patterns are matched in linear time, without "
                                               "look-around or backreferences)")
            if spec.items is None:
                break
            spec, path = spec.items, path + ".items"  # the unknown name is reported once, where it is written
        for name in referenced_types(spec):
            if name not in known_types:
                report(key, path, f"unknown type '{name}'" + _suggest(name, [*known_types, *BUILTIN_TYPES]))

    for type_name, type_spec in config.types.items():
        key = f"types.{type_name}"
        for field_name, spec in type_spec.fields.items():
            path = f"{key}.fields.{field_name}"
            check_field(key, path, spec)
            if SECRET_NAME.search(field_name):
                report(key, path, "looks like a secret; outputs carry operational metadata, never secrets")
    type_cycle = find_cycle(
        {name: [t for f in spec.fields.values() for t in referenced_types(f)] for name, spec in config.types.items()}
    )
    if type_cycle:
        problems.append(
            f"{config.origins['types.' + type_cycle[0]]}: types.{type_cycle[0]}: "
            f"types refer to each other in a cycle: {cycle_text(type_cycle)}"
        )
    types_whole = not type_cycle and not problems  # every type known: models of them can be built
    if types_whole:  # each default can be checked against its field's type
        _check_defaults(config, report)

    for wf_name, wf in config.workflows.items():
        key = f"workflows.{wf_name}"
        if wf.params and wf.params not in known_types:
            report(key, f"{key}.params", f"unknown type '{wf.params}'" + _suggest(wf.params, known_types))
        if wf.schedule:
            _check_schedule(wf.schedule, lambda p, m: report(key, f"{key}.schedule.{p}", m))
        for path, seconds in _durations(key, wf):
            if seconds > MAX_DURATION:
                report(key, path, f"{format_duration(seconds)} is {OVER_MAX_DURATION}")
        if len(wf.tasks) > (cap := settings.max_workflow_tasks):  # each trigger would hold its writer that long
            report(key, f"{key}.tasks", f"{len(wf.tasks)} tasks, over max_workflow_tasks ({cap}): a run makes all its "
                   "instances in one transaction (split it into workflows that start one another with `on`)")
        for task_name, task in wf.tasks.items():
            path = f"{key}.tasks.{task_name}"
            if (worst := _largest_offer(task, settings)) > settings.max_message_bytes:
                report(key, f"{path}.inputs", f"{len(task.inputs)} inputs of up to {settings.output_max_bytes} bytes "
                       f"each make an offer of up to {worst} bytes, over max_message_bytes "
                       f"({settings.max_message_bytes}): it could not be sent to a worker (fewer inputs, or a "
                       "smaller output_max_bytes)")
            if task.lease is not None and task.lease <= 0:  # a claim would expire as it is granted
                report(key, f"{path}.lease", "a lease must be longer than 0s")
            if task.output is not None and task.output not in known_types:
                report(key, f"{path}.output", f"unknown type '{task.output}'" + _suggest(task.output, known_types))
            for param, upstream in task.inputs.items():
                _check_upstream(wf, task_name, upstream, lambda m: report(key, f"{path}.inputs.{param}", m))
                if upstream in wf.tasks and wf.tasks[upstream].is_timer:
                    report(key, f"{path}.inputs.{param}",
                           f"'{upstream}' is a timer and has no output; list it in `after` instead")
            for i, upstream in enumerate(task.after):
                _check_upstream(wf, task_name, upstream, lambda m: report(key, f"{path}.after.{i}", m))
            if task.trigger_rule != "all_success" and not task.upstream():
                report(key, f"{path}.trigger_rule", f"{task.trigger_rule} waits for the upstream tasks to "
                       f"{_AWAITED[task.trigger_rule]}, and this task has none: name them in `inputs` or `after`")
        cycle = find_cycle({name: [u for u in t.upstream() if u in wf.tasks] for name, t in wf.tasks.items()})
        if cycle:
            report(key, f"{key}.tasks", "dependencies form a cycle: " + cycle_text(cycle[::-1]))

    _check_functions(config, report)
    check_human_tasks(config, report, types_whole)
    check_conditions(config, report)
    problems.extend(_signature_problems(config))
    return problems


def _check_functions(config: TeamConfig, report) -> None:
    """A function's settings name a worker function a task of the team does."""
    done_by: dict[str, list] = {}
    for wf in config.workflows.values():
        for task in wf.tasks.values():
            if task.function is not None:
                done_by.setdefault(task.function, []).append(task)
    for name in config.functions:
        key = f"functions.{name}"
        tasks = done_by.get(name)
        if not tasks:
            report(key, key, f"no task of team {config.team} does '{name}'" + _suggest(name, done_by))
        elif all(task.human for task in tasks):
            report(key, key, f"'{name}' is done by people (human tasks): a limit on running instances is for "
                             "workers' functions; who may decide is `assignees`")


def _check_defaults(config: TeamConfig, report: Callable[[str, str, str], None]) -> None:
    registry = TypeRegistry(config.types)
    for type_name, type_spec in config.types.items():
        key = f"types.{type_name}"
        for field_name, spec in type_spec.fields.items():
            if spec.default is None:
                continue
            path = f"{key}.fields.{field_name}.default"
            if problem := registry.default_problem(type_name, field_name):
                report(key, path, f"not a value of the field's type: {problem}")
            elif secret := find_secret(spec.default, "default"):
                report(key, path, f"refused: {secret.removeprefix('default: ')}; a default is written into params and "
                                  "outputs, which never carry secrets")


def _applicable(type_name: str) -> str:
    applicable = CONSTRAINTS_OF.get(type_name)
    return f" (it takes {', '.join(applicable)})" if applicable else " (it takes no constraints)"


def _suggest(name: str, choices) -> str:
    hint = difflib.get_close_matches(name, sorted(choices), n=1)
    return f" (did you mean '{hint[0]}'?)" if hint else ""


def _check_upstream(wf: WorkflowSpec, task_name: str, upstream: str, report) -> None:
    if upstream == task_name:
        report("a task cannot depend on itself")
    elif upstream not in wf.tasks:
        report(f"unknown upstream task '{upstream}'" + _suggest(upstream, wf.tasks))


def _check_schedule(schedule: ScheduleSpec, report) -> None:
    if (problem := cron_problem(schedule.cron)) is not None:
        report("cron", problem)
    elif not _fires(schedule.cron):
        report("cron", f"'{schedule.cron}' never fires: no month has that day (such as 30 February)")
    if (problem := zone_problem(schedule.timezone)) is not None:
        report("timezone", problem)
        return
    bounds = {}
    for name, text in (("start", schedule.start), ("end", schedule.end)):
        if text is not None:
            try:
                bounds[name] = window_bound(text, schedule.timezone, end=name == "end")
            except ValueError as exc:
                report(name, str(exc))
    if len(bounds) == 2 and bounds["end"] < bounds["start"]:
        report("end", f"'{schedule.end}' is before the start, '{schedule.start}': the schedule would make no run")


OFFER_ENVELOPE = 4096  # bytes of an offer besides its inputs and params: ids, names, token, times


def _largest_offer(task, settings: Settings) -> int:
    """The most bytes a task's offer (or claim answer) can take: every input an output at the cap."""
    return len(task.inputs) * settings.output_max_bytes + settings.params_max_bytes + OFFER_ENVELOPE


def _durations(key: str, wf: WorkflowSpec) -> list[tuple[str, float]]:
    """(path, seconds) of the workflow's durations that are set. Checked here, not where they are
    parsed: a version stored before the check must still load."""
    named = [(f"{key}.sla", wf.sla), (f"{key}.timeout", wf.timeout)]
    for task_name, task in wf.tasks.items():
        path = f"{key}.tasks.{task_name}"
        named += [(f"{path}.{name}", getattr(task, name))
                  for name in ("retry_delay", "max_retry_delay", "lease", "timeout", "start_within", "due", "wait")]
        named += [(f"{path}.reminders.{i}", r) for i, r in enumerate(task.reminders)]
    return [(path, seconds) for path, seconds in named if seconds is not None]


def _fires(cron: str) -> bool:
    """Whether the cron names a date that exists; looked for from a leap year's start, so that
    29 February counts (croniter gives up after searching some years ahead)."""
    from croniter import CroniterBadDateError, croniter  # here: most commands check no config

    try:
        croniter(cron, dt.datetime(2000, 1, 1)).get_next(dt.datetime)
    except CroniterBadDateError:
        return False
    return True


def _signature_problems(config: TeamConfig) -> list[str]:
    problems: list[str] = []
    first: dict[str, tuple[Signature, str, str]] = {}
    for wf_name, wf in config.workflows.items():
        for task_name, task in wf.tasks.items():
            if task.function is None:
                continue
            sig = task_signature(wf, task)
            path = f"workflows.{wf_name}.tasks.{task_name}"
            if task.function not in first:
                first[task.function] = (sig, path, config.origins[f"workflows.{wf_name}"])
                continue
            other, other_path, other_file = first[task.function]
            if other != sig:
                problems.append(
                    f"{config.origins[f'workflows.{wf_name}']}: {path}: function '{task.function}' is "
                    f"{sig.describe()} here but {other.describe()} at {other_path} in {other_file}"
                )
    return problems
