"""What keeps a ready instance waiting `queued` instead of offered: limits on running instances, a task's
`max_running` (at most that many of its instances, over all runs of the workflow, offered or running at
once) and a team's `functions.NAME.max_running` (the same for every instance of the function, in any of
the team's workflows); and a task's `depends_on_past` (its instance of the workflow's run before, in
place, must have succeeded, been skipped or cancelled first). flow45.store.rules.offer asks `why_queued`, through the
unit. Queued instances are offered as they may go, the most urgent, then the longest waiting, first
(flow45.store.sweep.offer_queued): by the thread whose commit let them, right after it (`take_freed`,
flow45.store.sweep.hand_on: a worker's message, an operator's change), else by the scheduler's sweep.

Each count is taken under a transaction-level lock per limited task or function where the database has
them, so that two writers cannot both take the last slot. Only tried, never waited for: a writer holds its
runs' locks, and waiting here for one that wants them would deadlock. A writer that does not get it queues
the instance, and the next sweep offers it."""

from __future__ import annotations

import math
import threading
from typing import Any, Iterable

from peewee import Tuple, fn

from flow45 import states as S
from flow45.db import dialect
from flow45.models import Run, TaskInstance, place_of, run_place
from flow45.store.specs import recent_limits, version_spec

TAKING_SLOTS = tuple(sorted(S.TAKING_SLOTS))
_freed = threading.local()  # (workflow, team, function, task) of limited instances whose slots this thread freed


def queues(spec: Any, workflow_id: int, task: str, function: str | None, current: Any = None) -> bool:
    """Whether instances of the task may wait queued (`spec`: their run's VersionSpec): it limits the task
    or its function, or has it depend on the past; or the workflow's current version limits them (a limit
    a deploy adds holds for earlier runs too): `current`, or as flow45.store.specs.recent_limits read it."""
    if spec.limits(task, function) or spec.task(task).depends_on_past:
        return True
    return current.limits(task, function) if current is not None else recent_limits.limit(workflow_id, task, function)


def task_limit(spec: Any, current: Any, task: str) -> int | None:
    """The task's `max_running` in force for an instance of a run of `spec`'s version: that of `current`,
    its workflow's current version, where that has the task; else its own version's. A run keeps its
    version's tasks, but a limit spares what the workers call: a deploy that changes one changes it for
    every run at once, as a pool's size does in Airflow; one added, too (`queues`)."""
    return (current if task in current.workflow.tasks else spec).task(task).max_running


def function_limit(spec: Any, current: Any, function: str | None) -> int | None:
    """The team's `max_running` of the function in force, as `task_limit` finds it: `current`'s where a task
    of it does the function."""
    return (current if current.does(function) else spec).function_limit(function)


def why_queued(unit: Any, instance: Any) -> str | None:
    """Why `instance` may not be offered now (its past run's instance is not done, or a limit's slots
    are all taken), or None. `unit`: the flow45.store.unit.Unit that read it."""
    spec = unit.spec(instance.run_id)
    workflow = unit.run_of(instance).workflow_id
    read_here = unit.current_spec(workflow) if unit.limits_changed_here else None
    if not queues(spec, workflow, instance.task, instance.function, read_here):
        return None
    if spec.task(instance.task).depends_on_past and (past := _past_not_done(unit, instance, workflow)) is not None:
        return past
    current = unit.current_spec(workflow)
    most_of_task = task_limit(spec, current, instance.task)
    most_of_function = function_limit(spec, current, instance.function)
    for limit, said, lock, same, counted in (
        (most_of_task, f"max_running {most_of_task} for {instance.task}", f"{workflow}/{instance.task}",
         lambda i: i.task == instance.task and unit.run_of(i).workflow_id == workflow,
         lambda leave_out: active(instance.team, instance.function, leave_out, workflow=workflow, task=instance.task)),
        (most_of_function, f"functions.{instance.function}.max_running {most_of_function}",
         f"{instance.team}.{instance.function}",
         lambda i: i.team == instance.team and i.function == instance.function,
         lambda leave_out: active(instance.team, instance.function, leave_out)),
    ):
        if limit is None:
            continue
        if not dialect().try_lock_slots(lock):
            return f"{said}: another change is taking its slots"
        # The instances read here are counted as they are in memory (changed, maybe, and not stored yet).
        here = [i for i in unit.instances.values() if same(i)]
        taken = sum(1 for i in here if i.state in TAKING_SLOTS and i.id != instance.id) + counted([i.id for i in here])
        if taken >= limit:
            return f"{said}: {taken} offered or running"
    return None


PAST_DONE = S.DONE | {S.CANCELLED}  # what the run before's instance must be for depends_on_past


def _run_before(workflow: int, task: str, place: Any, run_id: Any, *columns: str) -> Any:
    """The query of `columns` of the task's instance in the workflow's run before the run at (`place`,
    `run_id`) (values, or an outer query's columns): the one before it in place (flow45.models.run_place)
    that has the task. The workflow is given, never taken from an outer row, so that the planner walks the
    workflow's runs in place rather than every run back to it."""
    past, past_run = TaskInstance.alias("past"), Run.alias("past_run")
    return (past.select(*(getattr(past, column) for column in columns)).join(past_run, on=(past_run.id == past.run))
            .where((past_run.workflow == workflow) & (run_place(past_run) <= place)  # SQLite's range of the index
                   & (Tuple(run_place(past_run), past_run.id) < Tuple(place, run_id)) & (past.task == task))
            .order_by(run_place(past_run).desc(), past_run.id.desc()).limit(1))


def _past_not_done(unit: Any, instance: Any, workflow: int) -> str | None:
    """Why the task's instance in the workflow's run before this one keeps this one waiting, or None
    (done, skipped or cancelled; or no run before)."""
    run = unit.run_of(instance)
    found = _run_before(workflow, instance.task, place_of(run), run.id, "id", "run", "state").tuples().first()
    if found is None:
        return None
    past_id, past_run, state = found
    state = getattr(unit.instances.get(past_id), "state", state)  # as changed here, if read here
    if state in PAST_DONE:
        return None
    if state in S.HELD_UP and _is_queued(past_run):
        # A run queued for a slot this running one now waits for: it starts past the limit once this
        # commits (flow45.store.unit.Unit.start_queued), else neither could ever go on (held too: a
        # release would leave it pending in a run that never starts).
        unit.changes.freed_slots.setdefault(workflow, AWAITED_BY)
        unit.changes.awaited.add(workflow)
    return f"depends_on_past: {instance.task} of run {past_run} is {state}"


AWAITED_BY = "flow45"  # the actor of a start past max_active_runs: no one asked for it, the rules did


def awaited_queued(workflow: int) -> list[tuple[int, str]]:
    """The workflow's queued runs that an instance of a running run waits for (depends_on_past), each
    with why, in place."""
    found: dict[int, str] = {}
    for task, waiting, its_place in _queued_for_past(workflow):
        before = _run_before(workflow, task, its_place, waiting, "run").scalar()
        if before is not None and before not in found and _is_queued(before):
            found[before] = f"run {waiting} waits for it (depends_on_past: {task})"
    return sorted(found.items(), key=lambda item: _place_of(item[0]))


def _queued_for_past(workflow: int) -> Iterable[tuple[str, int, Any]]:
    """(task, run, its place) of each instance of a running run of the workflow queued for depends_on_past."""
    queued = (TaskInstance.select(TaskInstance.task, Run.id, Run.version, Run.logical_time, Run.created_at)
              .join(Run, on=(Run.id == TaskInstance.run))
              .where((Run.workflow == workflow) & (Run.status == S.RUNNING) & (TaskInstance.state == S.QUEUED))
              .namedtuples())
    for row in queued:
        if version_spec(row.version).task(row.task).depends_on_past:
            yield row.task, row.id, place_of(row)


def awaited(workflow: int, place: Any, run_id: int | None) -> str | None:
    """Why the workflow's run at (`place`, `run_id`) must run past its max_active_runs (`run_id` None: a run
    about to be made, after every run of its place): an instance of a running run waits queued for
    depends_on_past on the run before it that has its task, and this run is, or is about to become, that
    run; waiting for a slot, neither could ever go on. None otherwise."""
    mine = (place, math.inf if run_id is None else run_id)
    for task, waiting, its_place in _queued_for_past(workflow):
        if not mine < (its_place, waiting):
            continue
        before = _run_before(workflow, task, its_place, waiting, "run").scalar()
        if run_id is not None:
            waits_for_it = before == run_id
        else:  # about to come between that run and its run before
            waits_for_it = before is None or _place_of(before) <= mine
        if waits_for_it:
            return f"run {waiting} waits for it (depends_on_past: {task})"
    return None


def _is_queued(run_id: int) -> bool:
    """Whether the run waits queued for a slot of its workflow's max_active_runs."""
    return Run.select(Run.status).where(Run.id == run_id).scalar() == S.QUEUED


def _place_of(run_id: int) -> tuple:
    return place_of(Run.select(Run.logical_time, Run.created_at).where(Run.id == run_id).get()), run_id


def past_done(workflow: int, task: str, run: Any) -> Any:
    """A condition on the instances of `task` of `run` (Run, joined), runs of `workflow`: the task's
    instance in the workflow's run before is done, skipped or cancelled, or there is none; as
    `_past_not_done` asks it of one instance, for a query of many."""
    before = _run_before(workflow, task, run_place(run), run.id, "state")
    return fn.COALESCE(before, S.SUCCEEDED).in_(sorted(PAST_DONE))


def note_freed(groups: Iterable[tuple[int, str, str, str]]) -> None:
    """Slots of these tasks were freed by a transaction of this thread (flow45.store.unit)."""
    if not hasattr(_freed, "groups"):
        _freed.groups = set()
    _freed.groups.update(groups)


def take_freed() -> set[tuple[int, str, str, str]]:
    """The tasks whose slots this thread freed since it last asked: their queued instances may go now
    (flow45.store.sweep.hand_on)."""
    groups = getattr(_freed, "groups", set())
    _freed.groups = set()
    return groups


def queued_by(spec: Any, current: Any) -> str:
    """What may keep a version's instances queued, as a run's `waiting_for` names it (`current`: its
    workflow's current version, whose limits hold too)."""
    tasks = spec.workflow.tasks
    kinds = [kind for kind, found in (
        ("max_running", any(t.max_running is not None or (current.workflow.tasks.get(name) or t).max_running is not None
                            for name, t in tasks.items())),
        ("functions' max_running", any(t.function in spec.functions or t.function in current.functions
                                       for t in tasks.values())),
        ("depends_on_past", any(t.depends_on_past for t in tasks.values()))) if found]
    return ", ".join(kinds)


def waits_for(spec: Any, current: Any, task: str, function: str | None) -> str:
    """What a queued instance of `task` waits for, as `show` and the dashboard say it (`current`: its
    workflow's current version, whose limits are in force)."""
    past = ("its instance in the run before to succeed (depends_on_past)" if spec.task(task).depends_on_past
            else "")
    limits = []
    if (most := task_limit(spec, current, task)) is not None:
        limits.append(f"at most {most} of {task} (max_running)")
    if (most := function_limit(spec, current, function)) is not None:
        limits.append(f"at most {most} of the team's {function} (functions.{function}.max_running)")
    slot = f"a free slot: {' and '.join(limits)} offered or running at once" if limits else ""
    return " and ".join(part for part in (past, slot) if part)


def active(team: str, function: str, leave_out: list[int] = (), *, workflow: int | None = None,
           task: str | None = None) -> int:
    """The team's instances of the function (of the workflow's task, if given) offered or running, as
    stored (found by the (state, team, function) index)."""
    query = (TaskInstance.select(fn.COUNT(TaskInstance.id))
             .where(TaskInstance.state.in_(TAKING_SLOTS) & (TaskInstance.team == team)
                    & (TaskInstance.function == function)))
    if task is not None:
        query = query.join(Run, on=(Run.id == TaskInstance.run)).where(
            (TaskInstance.task == task) & (Run.workflow == workflow))
    if leave_out:
        query = query.where(TaskInstance.id.not_in(list(leave_out)))
    return query.scalar() or 0
