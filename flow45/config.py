"""The teams' YAML configuration: pydantic models of every key, and reading the files (checks: config_check).

`load_config(path)` reads a file or a folder and returns one `TeamConfig` per team, or raises
`ConfigError` listing every problem with its file and dotted path.
"""

from __future__ import annotations

import difflib
import json
import os
import re
import typing
from dataclasses import dataclass, field
from pathlib import Path
from types import UnionType
from typing import Annotated, Any, Literal, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, model_validator

from flow45.conditions import WHEN_PATH, When
from flow45.config_connect import EXPORT_DESCRIPTION, ConnectSpec, Export
from flow45.config_human import USER, OverdueSpec, check_task_keys
from flow45.durations import parse_duration
from flow45.errors import ConfigError
from flow45.names import NAME
from flow45.yamlload import YamlProblem, read_text, read_yaml

TYPE_NAME = r"^[A-Z][A-Za-z0-9_]{0,62}$"
FIELD_NAME = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
SCALAR_TYPES = ("string", "integer", "number", "boolean", "datetime", "date")
BUILTIN_TYPES = SCALAR_TYPES + ("list", "enum")
SECRET_NAME = re.compile(r"pass(word|wd)?$|secret|token|api_?key|private_?key|credential", re.I)

Duration = Annotated[float, BeforeValidator(parse_duration)]

# Airflow's trigger rules that have another name here, or a nearest one: a DAG moved over names them.
AIRFLOW_RULES = {
    "none_failed": "write all_success, which goes after skipped upstream tasks too (a skip passes null)",
    "always": "all_done is the nearest (offered once every upstream task has ended, failed too)",
}


def _airflow_rule(value: Any) -> Any:
    if isinstance(value, str) and value in AIRFLOW_RULES:
        raise ValueError(f"'{value}' (Airflow's) is not a trigger rule here: {AIRFLOW_RULES[value]}")
    return value


TriggerRule = Annotated[Literal["all_success", "all_done", "one_failed", "none_failed_min_one_success", "one_success",
                                 "all_skipped", "all_failed", "none_skipped"], BeforeValidator(_airflow_rule)]


class _Strict(BaseModel):
    # Strict: `retries: true` or `priority: "5"` is refused, not read as 1 and 5. A boolean alone
    # still takes YAML's yes and no (strict=False on those fields).
    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False, strict=True, defer_build=True)


CONSTRAINTS = ("max_length", "min_length", "ge", "le", "gt", "lt", "pattern")
CONSTRAINTS_OF = {
    "string": ("max_length", "min_length", "pattern"),
    "list": ("max_length", "min_length"),
    "integer": ("ge", "le", "gt", "lt"),
    "number": ("ge", "le", "gt", "lt"),
}


class FieldSpec(_Strict):
    """One field of a declared type. Written as a type name or as a mapping."""

    type: str = Field(description="string, integer, number, boolean, datetime, date, list, enum or a declared type")
    optional: bool = Field(False, strict=False, description="the field may be missing or null")
    default: Any = Field(
        None, description="the value a missing field takes, a value of its type (Airflow's Param default): a "
                          "scheduled run's params, a trigger that leaves it out, an output without it")
    description: str | None = None
    max_length: int | None = Field(None, ge=0, description="strings and lists")
    min_length: int | None = Field(None, ge=0, description="strings and lists")
    ge: float | None = Field(None, description="numbers: greater than or equal")
    le: float | None = Field(None, description="numbers: less than or equal")
    gt: float | None = None
    lt: float | None = None
    pattern: str | None = Field(None, description="strings: a regular expression the value must match")
    items: FieldSpec | None = Field(None, description="lists: the type of each item")
    values: list[str] | None = Field(None, description="enums: the allowed values")

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, value: object) -> object:
        return {"type": value} if isinstance(value, str) else value

    def constraints(self) -> dict[str, Any]:
        """The constraints given that apply to this type (a misplaced one is refused at deploy, and
        ignored in a version stored before that check)."""
        applicable = CONSTRAINTS_OF.get(self.type, ())
        return {key: getattr(self, key) for key in applicable if getattr(self, key) is not None}

    def misplaced_constraints(self) -> list[str]:
        applicable = CONSTRAINTS_OF.get(self.type, ())
        return [key for key in CONSTRAINTS if getattr(self, key) is not None and key not in applicable]

    @model_validator(mode="after")
    def _coherent(self) -> FieldSpec:
        if self.type == "list" and self.items is None:
            raise ValueError("a list needs `items`, the type of each item")
        if self.type != "list" and self.items is not None:
            raise ValueError("`items` is only for type list")
        if self.type == "enum" and not self.values:
            raise ValueError("an enum needs `values`, a non-empty list")
        if self.type != "enum" and self.values is not None:
            raise ValueError("`values` is only for type enum")
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as exc:
                raise ValueError(f"pattern is not a valid regular expression: {exc}") from exc
        return self


class TypeSpec(_Strict):
    """A named struct; becomes a pydantic model."""

    description: str | None = None
    fields: dict[Annotated[str, Field(pattern=FIELD_NAME)], FieldSpec]


TIME_OF_DAY = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"


# What only a worker's task has: a timer must leave each at its default.
WORKER_KEYS = ("output", "human", "retries", "lease", "timeout", "start_within", "retry_delay", "max_retry_delay",
               "retry_jitter", "undo", "max_running", "depends_on_past", "optional")


class TaskSpec(_Strict):
    """One task of a workflow: which function does it, what it gets and what it gives. A task is done
    by a worker (`function`, `output`) or is a timer (`wait` or `wait_until`), never both."""

    function: str | None = Field(None, pattern=NAME, description="the name workers subscribe to")
    output: str | None = Field(None, description="the declared type of the outcome (not for timers)")
    description: str | None = None
    inputs: dict[Annotated[str, Field(pattern=FIELD_NAME)], str] = Field(
        default_factory=dict, description="parameter name -> upstream task whose output it gets"
    )
    after: list[str] = Field(default_factory=list, description="upstream tasks that order without data")
    retries: int = Field(0, ge=0, le=100)
    retry_delay: Duration | None = Field(None, description="before the first retry; default from settings")
    retry_backoff: float = Field(1.0, ge=1.0, le=10.0, description="multiplies the delay at each retry")
    max_retry_delay: Duration | None = None
    retry_jitter: float = Field(0.0, ge=0.0, le=1.0, description=(
        "a fraction of each retry's delay taken off at random (0.5: anywhere from half the delay to all of "
        "it), so that instances failing together do not all come back at the same moment"))
    lease: Duration | None = Field(None, description="how long a claim holds without progress")
    timeout: Duration | None = Field(
        None, gt=0, description="how long an attempt may run from its claim, progress or not (Airflow's "
                                "execution_timeout, Temporal's start-to-close); past it the attempt fails as timed "
                                "out, counted against retries. A parked attempt's deadline is within it too")
    start_within: Duration | None = Field(
        None, gt=0, description="how long its offer may wait for a worker's claim (Temporal's schedule-to-start, "
                                "Conductor's pollTimeoutSeconds): past it the instance fails, not retried, saying "
                                "no worker claimed it, so that a run whose workers are gone fails and tells instead "
                                "of waiting unseen. Not for human tasks (their deadline is `due`) nor timers")
    priority: int = Field(0, ge=0, le=9)
    depends_on_past: bool = Field(
        False,
        description="offered only once the task's instance in the workflow's run before (the one before it by "
                    "logical time, a run without one by when it was made) has succeeded, been skipped or been "
                    "cancelled, as Airflow's depends_on_past: for loads that must go in order. It waits as `queued` "
                    "meanwhile")
    max_running: int | None = Field(
        None, ge=1, le=100_000,
        description="at most this many instances of the task, over all runs of the workflow, offered or running "
                    "at once (Airflow's max_active_tis_per_dag, Conductor's concurrentExecLimit): a worker task that "
                    "calls something that takes only so much. The rest wait as `queued`, the most urgent then the "
                    "longest waiting first, and are offered as slots free (by the worker's message, or the operator's "
                    "change, that frees one, at once; else by the scheduler's sweep). A deploy that changes it changes "
                    "it for the runs made before too")
    optional: bool = Field(
        False,
        description="its failure does not fail the run (Conductor's optional task, Airflow's cleanup task left out of "
                    "the run's outcome): once its retries are spent it fails, and is skipped at once, the ledger saying "
                    "so; its downstream tasks get null for it and the run may succeed. Undo offers it again")
    trigger_rule: TriggerRule = Field(
        "all_success",
        description="all_success: offered once every upstream task has succeeded or been skipped. all_done: once "
                    "every upstream task has finished, failed for good too (Airflow's trigger rule, for a cleanup "
                    "or teardown that must run whatever happened); a failed upstream gives it null. one_failed: "
                    "as soon as an upstream task has failed for good, or will never run because of a failure before "
                    "it (a compensation or alert that runs only on failure); skipped once every upstream task has "
                    "succeeded or been skipped. none_failed_min_one_success: as all_success, but skipped when "
                    "every upstream task was skipped (the join after branches that `when` chose between). one_success: as "
                    "soon as one upstream task has succeeded, without waiting for the others (the first of several "
                    "sources, or of several people, to answer); skipped once every upstream task was skipped. "
                    "all_skipped: once every upstream task has succeeded or been skipped, and only if every one "
                    "was skipped (the fallback when `when` took no branch); skipped if one succeeded. all_failed: "
                    "once every upstream task has ended, as all_done waits, and only if every one failed for good "
                    "or never runs because of a failure (an alert when every source failed); skipped if one "
                    "succeeded or was skipped. none_skipped: once every upstream task has ended, as all_done waits, "
                    "and only if none was skipped (a report that must cover every branch, a failed one too); "
                    "skipped if one was")
    human: bool = Field(
        False, strict=False,
        description="done by an operator in the dashboard or with `flow45 submit`; alone, any operator of the team "
                    "may decide it")
    assignees: list[str] = Field(
        default_factory=list,
        description="human tasks: who may decide, operator user names and @group names (groups declared under "
                    "`groups:`); empty: any operator of the team",
    )
    due: Duration | None = Field(None, description="human tasks: how long after it becomes available it is due")
    reminders: list[Duration] = Field(
        default_factory=list,
        description="human tasks: when to remind who may decide, each a duration after the task becomes "
                    "available (not before due), shorter than `due`; each is sent once, as a ledger event",
    )
    overdue: OverdueSpec | None = Field(
        None, description="human tasks with a `due`: fail, skip, {escalate: [users, @groups]} or "
                          "{default: OUTPUT}, applied once when due passes",
    )
    undo: Literal["none", "notify"] = Field("none", description="notify: publish an undo notice")
    when: When | None = Field(
        None, description="conditions on the inputs it would receive (or the run's params), each `INPUT.FIELD: value` "
                          "(`params.FIELD: value`), a list of values it "
                          "may be, or comparisons ({gt, ge, lt, le, ne}); all must hold when the task becomes ready, "
                          "or it is skipped (its downstream gets null for it), the ledger naming the condition "
                          "(flow45.conditions)")
    wait: Duration | None = Field(
        None,
        description=(
            "a timer: succeeds by itself this long after it becomes ready (its upstream done), with no "
            "worker; a cool-down. Unlike Airflow's TimeDeltaSensor, which counts from the end of the data "
            "interval, this counts from when the task is ready; for a time tied to the run's date use wait_until"
        ),
    )
    wait_until: str | None = Field(
        None, pattern=TIME_OF_DAY,
        description=(
            "a timer: succeeds by itself, once ready, at this time of day (HH:MM or HH:MM:SS) on the run's "
            "logical day, in the workflow's schedule timezone (UTC without a schedule); like Airflow's "
            "DateTimeSensor on the logical date. The logical day is the day of the schedule tick that made "
            "the run (not Airflow's data interval start), or the day a run triggered by hand was created. "
            "A time already past when the task is ready lets it succeed at the scheduler's next sweep; "
            "undo arms it again"
        ),
    )

    @model_validator(mode="after")
    def _worker_or_timer(self) -> TaskSpec:
        check_task_keys(self)
        if self.wait is not None and self.wait_until is not None:
            raise ValueError("a timer has either `wait` or `wait_until`, not both")
        if self.is_timer:
            if self.function is not None:
                raise ValueError("a task has either a `function` (a worker does it) or a `wait`/`wait_until` "
                                 "(a timer), never both")
            # Checked by value, not by what was written: a stored version has every key written out.
            extra = [key for key in WORKER_KEYS if getattr(self, key) != type(self).model_fields[key].default]
            if extra:
                raise ValueError(f"a timer ({'wait' if self.wait is not None else 'wait_until'}) has no worker "
                                 f"and no output: remove {', '.join(extra)}")
        elif self.function is None:
            raise ValueError("a task needs a `function` (done by a worker) or a `wait`/`wait_until` (a timer)")
        elif self.output is None:
            raise ValueError("a task with a function needs an `output` type")
        return self

    @property
    def is_timer(self) -> bool:
        return self.wait is not None or self.wait_until is not None

    def upstream(self) -> list[str]:
        return sorted(set(self.inputs.values()) | set(self.after))


class ScheduleSpec(_Strict):
    cron: str
    timezone: str = "UTC"
    catchup: Literal["latest", "all", "none"] = "latest"
    start: str | None = Field(None, description="no run for a tick before this date or time (a date: that day's "
                                                "midnight; without an offset, in the schedule's timezone)")
    end: str | None = Field(None, description="no run for a tick after this date or time (a date: to the end of "
                                              "that day; without an offset, in the schedule's timezone)")


class WorkflowSpec(_Strict):
    description: str | None = None
    schedule: ScheduleSpec | None = None
    max_active_runs: int | None = Field(16, ge=1, description="runs beyond it wait as queued; null: no limit. A "
                                                               "deploy that changes it changes it for earlier runs too")
    params: str | None = Field(None, description="declared type of the run parameters")
    on: ConnectSpec | None = Field(None, description="start a run when another workflow's run reaches a state")
    export: Export = Field(default_factory=list, description=EXPORT_DESCRIPTION)
    sla: Duration | None = Field(
        None, gt=0, description="how long a run may take from being triggered (queued time included); a run still "
                                "unfinished after it gets one `sla_missed` ledger event from the scheduler's sweep")
    timeout: Duration | None = Field(
        None, gt=0, description="how long a run may be running (queued time aside; running again after an undo or "
                                "a retry, from then); one still running then is cancelled by the scheduler's sweep, "
                                "and its slot goes to the next queued run")
    tasks: dict[Annotated[str, Field(pattern=NAME)], TaskSpec] = Field(min_length=1)


class FunctionSpec(_Strict):
    """A team's setting for one of its functions, whichever workflows' tasks it does."""

    max_running: int = Field(
        ge=1, le=100_000,
        description="at most this many of the team's instances of the function, over all its workflows and runs, "
                    "offered or running at once (Airflow's pools, Conductor's concurrentExecLimit): the rest wait "
                    "as `queued`, as for a task's own `max_running`. A deploy that changes it changes it for the runs made "
                    "before too")


class TeamFile(_Strict):
    team: str = Field(pattern=NAME)
    groups: dict[Annotated[str, Field(pattern=NAME)], list[Annotated[str, Field(pattern=USER)]]] = Field(
        default_factory=dict, description="named groups of operator users, named @NAME in human tasks' assignees; "
                                          "a deploy that changes the members changes them for earlier runs too"
    )
    types: dict[Annotated[str, Field(pattern=TYPE_NAME)], TypeSpec] = Field(default_factory=dict)
    workflows: dict[Annotated[str, Field(pattern=NAME)], WorkflowSpec] = Field(default_factory=dict)
    functions: dict[Annotated[str, Field(pattern=NAME)], FunctionSpec] = Field(
        default_factory=dict, description="settings of the team's worker functions, by name, for every workflow "
                                          "whose tasks they do")


@dataclass(frozen=True)
class Signature:
    """What a function takes and gives; fixed per team."""

    inputs: tuple[tuple[str, str], ...]
    output: str

    def describe(self) -> str:
        params = ", ".join(f"{name}: {type_}" for name, type_ in self.inputs)
        return f"({params}) -> {self.output}"

    def to_json(self) -> dict:
        return {"inputs": dict(self.inputs), "output": self.output}

    @classmethod
    def from_json(cls, data: dict) -> Signature:
        return cls(tuple(sorted(data["inputs"].items())), data["output"])


@dataclass
class TeamConfig:
    """A team's merged configuration, with the file each type and workflow came from."""

    team: str
    types: dict[str, TypeSpec] = field(default_factory=dict)
    workflows: dict[str, WorkflowSpec] = field(default_factory=dict)
    groups: dict[str, list[str]] = field(default_factory=dict)
    functions: dict[str, FunctionSpec] = field(default_factory=dict)
    origins: dict[str, str] = field(default_factory=dict)

    def signatures(self) -> dict[str, tuple[Signature, str]]:
        """function -> (signature, path of the first task using it)."""
        found: dict[str, tuple[Signature, str]] = {}
        for wf_name, wf in self.workflows.items():
            for task_name, task in wf.tasks.items():
                if task.function is None:
                    continue
                found.setdefault(
                    task.function,
                    (task_signature(wf, task), f"workflows.{wf_name}.tasks.{task_name}"),
                )
        return found


def task_signature(workflow: WorkflowSpec, task: TaskSpec) -> Signature:
    params = tuple(sorted(
        (param, workflow.tasks[up].output) for param, up in task.inputs.items()
        if up in workflow.tasks and workflow.tasks[up].output is not None
    ))
    return Signature(params, task.output)


def referenced_types(spec: FieldSpec) -> list[str]:
    if spec.type == "list":
        return referenced_types(spec.items)
    return [] if spec.type in BUILTIN_TYPES else [spec.type]


def types_used_by(workflow: WorkflowSpec, types: dict[str, TypeSpec]) -> dict[str, TypeSpec]:
    """The declared types a workflow needs, transitively, sorted by name."""
    wanted = [t.output for t in workflow.tasks.values() if t.output] + ([workflow.params] if workflow.params else [])
    used: dict[str, TypeSpec] = {}
    while wanted:
        name = wanted.pop()
        if name in used or name not in types:
            continue
        used[name] = types[name]
        for spec in types[name].fields.values():
            wanted.extend(referenced_types(spec))
    return dict(sorted(used.items()))


def find_cycle(edges: dict[str, list[str]]) -> list[str] | None:
    """A cycle in `node -> [next nodes]`, as a path whose last node repeats the first. Depth first
    without recursion: a chain of thousands of tasks is as deep."""
    state: dict[str, int] = {}  # 1: on the path now, 2: done
    for start in sorted(edges):
        if start in state:
            continue
        path, nexts = [start], [iter(edges.get(start, []))]
        state[start] = 1
        while path:
            nxt = next(nexts[-1], None)
            if nxt is None:
                state[path.pop()] = 2
                nexts.pop()
            elif state.get(nxt) == 1:
                return path[path.index(nxt):] + [nxt]
            elif nxt not in state:
                state[nxt] = 1
                path.append(nxt)
                nexts.append(iter(edges.get(nxt, [])))
    return None


def cycle_text(cycle: list[str], shown: int = 5) -> str:
    """`a -> b -> c -> a`; a long cycle shows its first and last `shown` nodes and counts the rest."""
    if len(cycle) <= 2 * shown + 1:
        return " -> ".join(cycle)
    return " -> ".join([*cycle[:shown], f"({len(cycle) - 2 * shown} more)", *cycle[-shown:]])


# ---- reading files -------------------------------------------------------------------------

_KNOWN_KEYS = sorted(
    {name for model in (FieldSpec, TypeSpec, TaskSpec, ScheduleSpec, WorkflowSpec, TeamFile, OverdueSpec, ConnectSpec) for name in model.model_fields}
)


def _dotted(loc: tuple) -> str:
    return ".".join(str(part) for part in loc if not str(part).startswith("function-"))


def _keys_at(loc: tuple) -> list[str]:
    """The keys the model at `loc` (a path into a team file) takes; none if it is not a model."""
    node: Any = TeamFile
    for part in loc:
        if isinstance(node, type) and issubclass(node, BaseModel):
            node = node.model_fields[part].annotation if part in node.model_fields else None
        elif typing.get_origin(node) in (dict, list):
            node = typing.get_args(node)[-1]  # the part is a key or an index
        else:
            return []
        while typing.get_origin(node) in (Union, UnionType, Annotated):  # `X | None`, `Annotated[X, ...]`
            node = next((a for a in typing.get_args(node) if a is not type(None)), None)
    return list(node.model_fields) if isinstance(node, type) and issubclass(node, BaseModel) else []


# What a strict field wanted, for `retries: true` or `priority: "5"`: said with what was written.
_EXPECTED = {"int_type": "a whole number", "float_type": "a number"}


def _explain(error: dict) -> str:
    loc = tuple(p for p in error["loc"] if p not in ("[key]",))
    if error["type"] == "extra_forbidden":
        key = str(loc[-1])
        # A key of this place first; then one known elsewhere (a task's key written on its workflow),
        # only if it is very like it: a one-letter key is not a typo of `le`.
        hint = (difflib.get_close_matches(key, _keys_at(loc[:-1]), n=1)
                or difflib.get_close_matches(key, [k for k in _KNOWN_KEYS if k != key], n=1, cutoff=0.75))
        where = _dotted(loc[:-1]) or "top level"
        return f"{where}: unknown key '{key}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] in ("bool_type", "bool_parsing"):
        message = f"{error.get('input')!r} is not true or false"
    elif error["type"] in _EXPECTED and not isinstance(error.get("input"), (dict, list)):
        message = f"expected {_EXPECTED[error['type']]}, got {json.dumps(error.get('input'), default=str)}"
    elif error["type"] == "string_type" and loc[-2:] in (("schedule", "start"), ("schedule", "end")):
        message = f"{error.get('input')!r} is not a date or a time (such as 2027-01-31 or 2027-01-31T06:00)"
    elif error["type"] == "string_pattern_mismatch":
        bad = error.get("input")
        if error["ctx"]["pattern"] == TIME_OF_DAY:
            message = f"{bad!r} is not a time of day (HH:MM or HH:MM:SS, 24-hour)"
        elif error["ctx"]["pattern"] == WHEN_PATH:
            message = f"{bad!r} is not an input and a field in it (INPUT.FIELD, such as approval.approved)"
        else:
            message = f"{bad!r} is not a valid name ({error['ctx']['pattern']})"
    return f"{_dotted(loc) or 'top level'}: {message}"


def _config_files(path: Path) -> tuple[list[Path], list[str]]:
    """The .yaml and .yml files a path names, and the folders under it that could not be listed.
    Such a folder, or a file that cannot be read (a dangling link), is a problem, never left out: a
    deploy --prune would retire the workflows it holds. Hidden names are left out: a Kubernetes
    ConfigMap's volume holds each file twice, once in its hidden `..data` folder."""
    if not path.is_dir():
        return [path], []
    files: list[Path] = []
    problems: list[str] = []

    def unreadable(exc: OSError) -> None:
        problems.append(f"{exc.filename}: cannot read this folder: {exc.strerror}")

    for folder, subfolders, names in os.walk(path, onerror=unreadable):
        subfolders[:] = [name for name in subfolders if not name.startswith(".")]
        wanted = (name for name in names if name.endswith((".yaml", ".yml")) and not name.startswith("."))
        for file in (Path(folder, name) for name in wanted):
            if file.exists() and not file.is_file():  # a named pipe: reading it would wait for good
                problems.append(f"{file}: not a regular file")
            else:
                files.append(file)
    return sorted(files), problems


def config_texts(path: Path) -> dict[Path, str]:
    """The text of each config file under `path`, for a deploy through the bridge, which takes each
    by its name alone; raises ConfigError naming a file that cannot be read, or two of one name (one
    would replace the other, and a --prune retire what it holds)."""
    path = Path(path)
    files, problems = _config_files(path) if path.exists() else ([], [f"{path}: no such file or folder"])
    if not files and not problems:
        problems.append(f"{path}: no .yaml or .yml files in this folder")
    texts: dict[Path, str] = {}
    named: dict[str, Path] = {}
    for file in files:
        if file.name in named:
            problems.append(f"{file}: has the name of {named[file.name]}, and the bridge takes each file by its "
                            "name alone: rename one")
            continue
        named[file.name] = file
        try:
            texts[file] = read_text(file)
        except YamlProblem as exc:
            problems.append(str(exc))
    if problems:
        raise ConfigError(problems)
    return texts


def parse_files(path: Path) -> tuple[list[tuple[Path, TeamFile]], list[str]]:
    """Each file's parsed content, and the problems of those that could not be parsed."""
    path = Path(path)
    if not path.exists():
        return [], [f"{path}: no such file or folder"]
    files, problems = _config_files(path)
    if not files and not problems:
        return [], [f"{path}: no .yaml or .yml files in this folder"]
    parsed = []
    for file in files:
        try:
            raw = read_yaml(file)
        except YamlProblem as exc:
            problems.append(str(exc))
            continue
        if not isinstance(raw, dict):
            problems.append(f"{file}: expected a mapping with `team:` at the top, found {type(raw).__name__}")
            continue
        try:
            parsed.append((file, TeamFile.model_validate(raw)))
        except ValidationError as exc:
            problems.extend(f"{file}: {_explain(e)}" for e in exc.errors())
            rest = _without_broken_workflows(raw, exc)
            if rest is not None:  # the file's other workflows are still checked, so one pass finds it all
                parsed.append((file, rest))
    return parsed, problems


def _without_broken_workflows(raw: dict, exc: ValidationError) -> TeamFile | None:
    """The file without the workflows its errors are in, if those were its only errors and the rest parses."""
    broken = set()
    for error in exc.errors():
        loc = error["loc"]
        if len(loc) < 3 or loc[0] != "workflows":
            return None  # a type or the file itself: what is left would be checked against the wrong declarations
        broken.add(loc[1])
    workflows = raw.get("workflows")
    if not isinstance(workflows, dict):
        return None
    try:
        return TeamFile.model_validate({**raw, "workflows": {k: v for k, v in workflows.items() if k not in broken}})
    except ValidationError:
        return None


def merge_teams(parsed: list[tuple[Path, TeamFile]]) -> tuple[list[TeamConfig], list[str]]:
    teams: dict[str, TeamConfig] = {}
    problems: list[str] = []
    for file, content in parsed:
        team = teams.setdefault(content.team, TeamConfig(content.team))
        for kind, entries, target in (
            ("types", content.types, team.types),
            ("workflows", content.workflows, team.workflows),
            ("groups", content.groups, team.groups),
            ("functions", content.functions, team.functions),
        ):
            for name, spec in entries.items():
                key = f"{kind}.{name}"
                if key in team.origins:
                    problems.append(f"{file}: {key}: already declared in {team.origins[key]}")
                    continue
                target[name] = spec
                team.origins[key] = str(file)
    return list(teams.values()), problems


def load_config(path: Path | str) -> list[TeamConfig]:
    """Every team's configuration under `path`, checked; raises ConfigError with every problem."""
    from flow45.config_check import check_team  # it reads this module's models

    parsed, problems = parse_files(Path(path))
    teams, merge_problems = merge_teams(parsed)
    problems += merge_problems
    for team in teams:
        problems += check_team(team)
    if problems:
        raise ConfigError(problems)
    return teams
