"""Limits on running instances: a task's `max_running` (at most that many of its instances, over all
runs of the workflow, offered or running at once), and a team's `functions.NAME.max_running` (the same
for every instance of the function, in any of the team's workflows). An offer with no free slot leaves
the instance `queued` (flow45.store.rules.offer asks `no_slot`, through the unit). Queued instances are
offered as slots free, the most urgent, then the longest waiting, first (flow45.store.sweep.offer_queued):
by the thread whose commit freed one, right after it (`take_freed`, flow45.store.sweep.hand_on), else by
the scheduler's sweep.

Each count is taken under a transaction-level lock per limited task or function where the database has
them, so that two writers cannot both take the last slot. Only tried, never waited for: a writer holds its
runs' locks, and waiting here for one that wants them would deadlock. A writer that does not get it queues
the instance, and the next sweep offers it."""

from __future__ import annotations

import threading
from typing import Any, Iterable

from peewee import fn

from flow45 import states as S
from flow45.db import dialect
from flow45.models import Run, TaskInstance

TAKING_SLOTS = tuple(sorted(S.TAKING_SLOTS))
_freed = threading.local()  # (workflow, team, function, task) of limited instances whose slots this thread freed


def limited(spec: Any, task: str, function: str | None) -> bool:
    """Whether instances of the task count against a limit (`spec`: their run's VersionSpec)."""
    return spec.task(task).max_running is not None or (function is not None and bool(spec.functions)
                                                       and spec.function_limit(function) is not None)


def no_slot(unit: Any, instance: Any) -> str | None:
    """Why `instance` may not be offered now (a limit's slots are all taken), or None. `unit`: the
    flow45.store.unit.Unit that read it."""
    spec = unit.spec(instance.run_id)
    task_limit = spec.task(instance.task).max_running
    function_limit = spec.function_limit(instance.function) if spec.functions else None
    if task_limit is None and function_limit is None:
        return None
    workflow = unit.run_of(instance).workflow_id
    for limit, said, lock, same, counted in (
        (task_limit, f"max_running {task_limit} for {instance.task}", f"{workflow}/{instance.task}",
         lambda i: i.task == instance.task and unit.run_of(i).workflow_id == workflow,
         lambda leave_out: active(instance.team, instance.function, leave_out, workflow=workflow, task=instance.task)),
        (function_limit, f"functions.{instance.function}.max_running {function_limit}",
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


def waits_for(spec: Any, task: str, function: str | None) -> str:
    """What a queued instance of `task` waits for, as `show` and the dashboard say it."""
    limits = []
    if (most := spec.task(task).max_running) is not None:
        limits.append(f"at most {most} of {task} (max_running)")
    if function is not None and (most := spec.function_limit(function)) is not None:
        limits.append(f"at most {most} of the team's {function} (functions.{function}.max_running)")
    return f"a free slot: {' and '.join(limits)} offered or running at once"


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
