"""Deployed workflow versions, parsed once: they are immutable, so a cache by id is always right."""

from __future__ import annotations

import functools
import math
import threading
import time
from dataclasses import dataclass, field

from flow45.config import FunctionSpec, TypeSpec, WorkflowSpec
from flow45.db import generation
from flow45.models import Workflow, WorkflowVersion
from flow45.types import TypeRegistry


@dataclass
class VersionSpec:
    id: int
    team: str
    workflow_name: str
    number: int
    workflow: WorkflowSpec
    types: TypeRegistry
    downstream: dict[str, list[str]]
    order: list[str]  # by dependency level, then as declared
    groups: dict[str, list[str]] = field(default_factory=dict)  # the @groups its human tasks name, as deployed
    functions: dict[str, FunctionSpec] = field(default_factory=dict)  # the team's settings of its functions
    _after_failure_of: dict[str, set[str]] = field(default_factory=dict, repr=False, compare=False)

    def function_limit(self, function: str) -> int | None:
        """The team's `max_running` of a function its tasks do, as deployed with this version."""
        found = self.functions.get(function)
        return None if found is None else found.max_running

    def limits(self, task: str, function: str | None) -> bool:
        """Whether this version has a `max_running` of the task (if it has the task) or of the function."""
        return task in self.limited_tasks or function in self.functions

    @functools.cached_property
    def limited_tasks(self) -> frozenset[str]:
        return frozenset(name for name, task in self.workflow.tasks.items() if task.max_running is not None)

    def does(self, function: str) -> bool:
        """Whether a task of this version does the function (so that it carries the team's setting of it)."""
        return function in self._functions_done

    @functools.cached_property
    def _functions_done(self) -> frozenset[str]:
        return frozenset(task.function for task in self.workflow.tasks.values())

    def task(self, name: str):
        return self.workflow.tasks[name]

    def upstream(self, name: str) -> list[str]:
        return self._upstream[name]

    @functools.cached_property
    def _upstream(self) -> dict[str, list[str]]:
        """Worked out once: a fan-in's thousands of upstream tasks are asked for on every settle."""
        return {name: task.upstream() for name, task in self.workflow.tasks.items()}

    @functools.cached_property
    def _rank(self) -> dict[str, int]:
        return {name: n for n, name in enumerate(self.order)}

    @property
    def wide(self) -> bool:
        """Its runs are read in part: see WIDE."""
        return len(self.workflow.tasks) > WIDE

    @functools.cached_property
    def timer_tasks(self) -> list[str]:
        """Read for every run a unit locks: a walk of 5,000 tasks each time cost a wide run's claim 0.6 ms."""
        return [name for name, task in self.workflow.tasks.items()
                if task.wait is not None or task.wait_until is not None]

    @functools.cached_property
    def after_failure(self) -> frozenset[str]:
        """The tasks a failure for good of an upstream task lets go (`trigger_rule: all_done`, `one_failed`,
        `all_failed` or `none_skipped`)."""
        return frozenset(name for name, task in self.workflow.tasks.items()
                         if task.trigger_rule in ("all_done", "one_failed", "all_failed", "none_skipped"))

    @functools.cached_property
    def on_failure(self) -> frozenset[str]:
        """The tasks that run only after a failure upstream, and are skipped without one (`one_failed`)."""
        return frozenset(name for name, task in self.workflow.tasks.items() if task.trigger_rule == "one_failed")

    @functools.cached_property
    def all_failed(self) -> frozenset[str]:
        """The tasks that run only when every upstream task failed, and are skipped otherwise (`all_failed`)."""
        return frozenset(name for name, task in self.workflow.tasks.items() if task.trigger_rule == "all_failed")

    @functools.cached_property
    def one_success(self) -> frozenset[str]:
        """The tasks that go once one upstream task has succeeded (`one_success`)."""
        return frozenset(name for name, task in self.workflow.tasks.items() if task.trigger_rule == "one_success")

    def after_failure_of(self, name: str) -> set[str]:
        """The tasks a failure lets go (`after_failure`) downstream of `name`, however far: a failure of it may
        let them go."""
        if not self.after_failure:
            return set()
        found = self._after_failure_of.get(name)
        if found is None:
            found = self._after_failure_of[name] = self.descendants(name) & self.after_failure
        return found

    @functools.cached_property
    def human_tasks(self) -> list[str]:
        return [name for name, task in self.workflow.tasks.items() if task.human]

    def in_order(self, names) -> list[str]:
        """These tasks in `order`."""
        return sorted(names, key=self._rank.__getitem__)

    def roots(self) -> list[str]:
        return [name for name in self.workflow.tasks if not self.upstream(name)]

    def descendants(self, name: str) -> set[str]:
        seen: set[str] = set()
        frontier = list(self.downstream[name])
        while frontier:
            nxt = frontier.pop()
            if nxt not in seen:
                seen.add(nxt)
                frontier.extend(self.downstream[nxt])
        return seen


# Keys added since versions were first stored, left out of the document while they hold their default:
# a version deployed before them keeps its content hash.
OPTIONAL_KEYS = (("on", None), ("export", []), ("sla", None), ("timeout", None))
OPTIONAL_SCHEDULE_KEYS = (("start", None), ("end", None))
OPTIONAL_TASK_KEYS = (("timeout", None), ("retry_jitter", 0.0), ("when", None), ("start_within", None),
                      ("max_running", None), ("depends_on_past", False), ("optional", False),
                      ("trigger_rule", "all_success"))


def _drop_defaults(part: dict, keys: tuple) -> None:
    for key, default in keys:
        if key in part and part[key] == default:
            del part[key]


def spec_document(workflow: WorkflowSpec, types: dict[str, TypeSpec], groups: dict[str, list[str]] | None = None,
                  functions: dict[str, FunctionSpec] | None = None) -> dict:
    """What a version stores: the workflow, the types it uses, the members of the @groups its human
    tasks name (so a run keeps who may decide as deployed) and the team's settings of the functions its
    tasks do, in canonical JSON form."""
    dumped = workflow.model_dump(mode="json")
    _drop_defaults(dumped, OPTIONAL_KEYS)
    if dumped.get("schedule"):
        _drop_defaults(dumped["schedule"], OPTIONAL_SCHEDULE_KEYS)
    for task in dumped["tasks"].values():
        _drop_defaults(task, OPTIONAL_TASK_KEYS)
    document = {
        "workflow": dumped,
        "types": {name: spec.model_dump(mode="json", exclude_none=True) for name, spec in types.items()},
    }
    if groups:  # only when used: the content hash of a workflow without any stays as it was
        document["groups"] = {name: list(members) for name, members in sorted(groups.items())}
    if functions:  # the same
        document["functions"] = {name: spec.model_dump(mode="json") for name, spec in sorted(functions.items())}
    return document


def parse_version(row: WorkflowVersion) -> VersionSpec:
    return spec_from_document(row.id, row.workflow.team, row.workflow.name, row.version, row.spec)


def spec_from_document(version_id: int, team: str, name: str, number: int, document: dict) -> VersionSpec:
    """A version from what it stores (`spec_document`), wherever that was read: here or over the broker."""
    workflow = WorkflowSpec.model_validate(document["workflow"])
    types = {type_name: TypeSpec.model_validate(spec) for type_name, spec in document["types"].items()}
    downstream: dict[str, list[str]] = {task_name: [] for task_name in workflow.tasks}
    for task_name, task in workflow.tasks.items():
        for up in task.upstream():
            downstream[up].append(task_name)
    functions = {fn: FunctionSpec.model_validate(spec) for fn, spec in (document.get("functions") or {}).items()}
    return VersionSpec(
        version_id, team, name, number, workflow, TypeRegistry(types), downstream, levels_order(workflow),
        dict(document.get("groups") or {}), functions,
    )


def dependency_levels(workflow: WorkflowSpec) -> dict[str, int]:
    """Task -> its level: 0 for roots, else one more than its deepest upstream. Without recursion: a
    chain of thousands of tasks is as deep."""
    levels: dict[str, int] = {}
    for start in workflow.tasks:
        path = [start]
        while path:
            name = path[-1]
            if name in levels:
                path.pop()
                continue
            upstream = workflow.tasks[name].upstream()
            waiting = [up for up in upstream if up not in levels]
            if waiting:
                path.extend(waiting)
            else:
                levels[name] = 1 + max((levels[up] for up in upstream), default=-1)
                path.pop()
    return levels


def levels_order(workflow: WorkflowSpec) -> list[str]:
    """Tasks by level, each level in the order declared (the sort is stable)."""
    levels = dependency_levels(workflow)
    return sorted(workflow.tasks, key=levels.__getitem__)


_cache: dict[tuple[int, int], VersionSpec] = {}
# A run of more tasks than this is wide: a change to one of its instances reads that instance (and
# what the rules need), not the whole run, once this process has the version's spec.
WIDE = 64
_wide: set[tuple[int, int]] = set()  # the keys of _cache whose version is wide


def version_spec(version_id: int) -> VersionSpec:
    key = (generation(), version_id)
    found = _cache.get(key)
    if found is None:
        if len(_cache) > 1024:
            _cache.clear()
            _wide.clear()
        found = _cache[key] = parse_version(WorkflowVersion.get_by_id(version_id))
        if found.wide:
            _wide.add(key)
    return found


def wide_versions() -> list[int]:
    """The wide versions this process has read: their runs are read in part (`flow45.store.unit`).
    One it has not read yet is read whole once, with its first run."""
    now = generation()
    return sorted(version for at, version in _wide if at == now)


_current_ids: dict[tuple[int, int, int], int] = {}


def current_spec(workflow) -> VersionSpec:
    """The spec of the version a workflow row names as current; a version's id never changes."""
    key = (generation(), workflow.id, workflow.current_version)
    found = _current_ids.get(key)
    if found is None:
        if len(_current_ids) > 1024:
            _current_ids.clear()
        found = _current_ids[key] = WorkflowVersion.get(
            (WorkflowVersion.workflow == workflow.id) & (WorkflowVersion.version == workflow.current_version)).id
    return version_spec(found)


LIMITS_READ_EVERY = 1.0  # seconds: how soon a limit another process's deploy adds reaches earlier runs


class _RecentLimits:
    """Which tasks and functions each workflow's current version limits (`max_running`), read at most
    LIMITS_READ_EVERY ago, and again at once after a deploy in this process: a limit added where an
    earlier run's version had none reaches that run's instances (flow45.store.slots.queues) without a
    read on every offer of the hot path."""

    def __init__(self, clock=time.monotonic) -> None:
        self.clock = clock  # seconds, for the age of what was read
        self._lock = threading.Lock()
        self._read_at, self._generation = -math.inf, None
        self._limited: dict[int, VersionSpec] = {}  # the current versions that limit anything

    def forget(self) -> None:
        self._read_at = -math.inf

    def limit(self, workflow_id: int, task: str, function: str | None) -> bool:
        if self.clock() - self._read_at > LIMITS_READ_EVERY or self._generation != generation():
            with self._lock:
                self._read()
        found = self._limited.get(workflow_id)
        return found is not None and found.limits(task, function)

    def _read(self) -> None:
        started = self.clock()
        current = (WorkflowVersion.select(WorkflowVersion.workflow, WorkflowVersion.id)
                   .join(Workflow, on=((WorkflowVersion.workflow == Workflow.id)
                                       & (WorkflowVersion.version == Workflow.current_version))).tuples())
        limited = {workflow_id: spec for workflow_id, spec in ((w, version_spec(v)) for w, v in current)
                   if spec.limited_tasks or spec.functions}
        self._limited, self._read_at, self._generation = limited, started, generation()


recent_limits = _RecentLimits()


class CurrentSpecs(dict):
    """workflow id -> the spec of its current version, each read once: for one read of many runs."""

    def __missing__(self, workflow_id: int) -> VersionSpec:
        found = self[workflow_id] = current_spec_of(workflow_id)
        return found


def current_spec_of(workflow_id: int) -> VersionSpec:
    """The spec of the workflow's current version, as stored now (another process may have deployed)."""
    return current_spec(Workflow.select(Workflow.id, Workflow.current_version).where(Workflow.id == workflow_id).get())
