"""A task's `max_running`: at most that many of its instances, over all runs of the workflow, offered or
running at once. An offer with no free slot leaves the instance `queued` (flow45.store.rules.offer asks
`no_slot`, through the unit). Queued instances are offered as slots free, the most urgent, then the
longest waiting, first (flow45.store.sweep.offer_queued): by the thread whose commit freed one, right
after it (`take_freed`, flow45.store.sweep.hand_on), else by the scheduler's sweep.

The count is taken under a transaction-level lock per (workflow, task) where the database has them, so
that two writers cannot both take the last slot. Only tried, never waited for: a writer holds its runs'
locks, and waiting here for one that wants them would deadlock. A writer that does not get it queues the
instance, and the next sweep offers it."""

from __future__ import annotations

import threading
from typing import Any, Iterable

from peewee import fn

from flow45 import states as S
from flow45.db import dialect
from flow45.models import Run, TaskInstance

TAKING_SLOTS = tuple(sorted(S.TAKING_SLOTS))
_freed = threading.local()  # (workflow, team, function, task) of limited tasks whose slots this thread freed


def no_slot(unit: Any, instance: Any) -> str | None:
    """Why `instance` may not be offered now (its task's slots are all taken), or None. `unit`: the
    flow45.store.unit.Unit that read it."""
    limit = unit.task(instance).max_running
    if limit is None:
        return None
    workflow = unit.run_of(instance).workflow_id
    said = f"max_running {limit} for {instance.task}"
    if not dialect().try_lock_slots(workflow, instance.task):
        return f"{said}: another change is taking its slots"
    # The instances read here are counted as they are in memory (changed, maybe, and not stored yet).
    here = [i for i in unit.instances.values()
            if i.task == instance.task and unit.run_of(i).workflow_id == workflow]
    taken = sum(1 for i in here if i.state in TAKING_SLOTS and i.id != instance.id)
    taken += active(workflow, instance.team, instance.function, instance.task, [i.id for i in here])
    return f"{said}: {taken} offered or running" if taken >= limit else None


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


def waits_for(spec: Any, task: str) -> str:
    """What a queued instance of `task` waits for, as `show` and the dashboard say it."""
    return f"a free slot: at most {spec.task(task).max_running} of {task} offered or running at once (max_running)"


def active(workflow: int, team: str, function: str, task: str, leave_out: list[int] = ()) -> int:
    """Instances of the workflow's task offered or running, as stored (found by the (state, team,
    function) index)."""
    query = (TaskInstance.select(fn.COUNT(TaskInstance.id)).join(Run, on=(Run.id == TaskInstance.run))
             .where(TaskInstance.state.in_(TAKING_SLOTS) & (TaskInstance.team == team)
                    & (TaskInstance.function == function) & (TaskInstance.task == task) & (Run.workflow == workflow)))
    if leave_out:
        query = query.where(TaskInstance.id.not_in(list(leave_out)))
    return query.scalar() or 0
