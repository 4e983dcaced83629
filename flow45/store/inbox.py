"""The human inbox: the available human tasks a person may need to decide, with what they need to
decide them (the run's params, the upstream outputs the task receives, who has it, when it is due),
overdue ones first. Nothing here writes."""

from __future__ import annotations

import datetime as dt
import itertools
from typing import Literal

from flow45 import states as S
from flow45.clock import to_utc
from flow45.config_human import GROUP_PREFIX
from flow45.models import Attempt, Run, TaskInstance
from flow45.store import rules_human
from flow45.store.queries import get_instances, list_runs
from flow45.store.specs import CurrentSpecs, version_spec
from flow45.views import InboxItem

Show = Literal["all", "mine", "groups", "overdue"]
SHOWS: tuple[str, ...] = ("all", "mine", "groups", "overdue")
_FAR = dt.datetime.max
SCAN = 5000  # available human tasks a filtered inbox reads at a time, until its page is full or none are left
READ_AT_ONCE = 500  # tasks whose items one set of reads builds: it bounds the lists of ids a statement sends


def _matches(show: str, user: str, taken_by: str | None, overdue: bool, assignment, escalated: bool) -> bool:
    """mine: taken by me or naming me; groups: naming a group I am in; overdue: due passed."""
    if show == "overdue":
        return overdue
    names = assignment.names(escalated) if assignment is not None else ()
    if show == "mine":
        return taken_by == user or user in names
    if show == "groups":
        return any(name.startswith(GROUP_PREFIX) and user in assignment.groups.get(name[1:], ()) for name in names)
    return True


def human_inbox(team: str | None, user: str, show: str = "all", *, limit: int = 500,
                now: dt.datetime | None = None) -> list[InboxItem]:
    """Available human tasks (of `team`, or every team), filtered for `user`: overdue first (oldest
    due first), then by due time, then by priority and age."""
    if show not in SHOWS:
        raise ValueError(f"unknown inbox filter {show!r}: use {', '.join(SHOWS)}")
    at = to_utc(now)
    query = (
        TaskInstance.select(TaskInstance.id, TaskInstance.run, TaskInstance.task, TaskInstance.overdue_at,
                            TaskInstance.taken_by, TaskInstance.due_at, Run.version, Run.workflow)
        .join(Run, on=(TaskInstance.run == Run.id))
        .where((TaskInstance.human == True) & (TaskInstance.state == S.AVAILABLE))  # noqa: E712
        .order_by(TaskInstance.due_at.is_null(), TaskInstance.due_at, TaskInstance.priority.desc(), TaskInstance.id)
    )
    if team:
        query = query.where(TaskInstance.team == team)
    chosen: list[tuple] = []
    seen: set[int] = set()  # a task that moved up between two reads comes once
    current = CurrentSpecs()
    read = limit if show == "all" else max(limit, SCAN)  # a filter reads further than the page it returns
    for offset in itertools.count(0, read):
        rows = list(query.limit(read).offset(offset).tuples())
        for instance_id, run_id, task, overdue_at, taken_by, due_at, version, workflow in rows:
            spec = version_spec(version)
            assignment = rules_human.run_assignments(spec, current[workflow]).get(task)
            escalated = overdue_at is not None and assignment is not None and bool(assignment.escalated_to)
            overdue = due_at is not None and due_at <= at
            if instance_id in seen or not _matches(show, user, taken_by, overdue, assignment, escalated):
                continue
            seen.add(instance_id)
            chosen.append((instance_id, run_id, spec.task(task).inputs,
                           assignment.who(escalated) if assignment else "any operator of the team", overdue))
            if len(chosen) == limit:
                break
        if len(chosen) == limit or len(rows) < read:
            break
    found: list[InboxItem] = []
    for start in range(0, len(chosen), READ_AT_ONCE):
        found += _items(chosen[start:start + READ_AT_ONCE], at)
    found.sort(key=lambda i: (not i.overdue, i.instance.due_at or _FAR))  # stable: the query's order otherwise
    return found


def _items(chosen: list[tuple], at: dt.datetime) -> list[InboxItem]:
    """The items of these tasks, read together: their instances, their runs, their upstream outputs."""
    views = get_instances([instance_id for instance_id, *_ in chosen])
    runs = {run.id: run for run in list_runs(ids=sorted({run_id for _, run_id, *_ in chosen}), limit=len(chosen))}
    outputs = _outputs({(run_id, up) for _, run_id, inputs, *_ in chosen for up in inputs.values()})
    return [InboxItem(instance=views[instance_id], run=runs.get(run_id), who=who, overdue=overdue, checked_at=at,
                      inputs={param: outputs.get((run_id, up)) for param, up in inputs.items()})
            for instance_id, run_id, inputs, who, overdue in chosen if instance_id in views]


def _outputs(wanted: set[tuple[int, str]]) -> dict[tuple[int, str], object]:
    """(run, task) -> the output of that task's instance, of those that succeeded: two reads."""
    if not wanted:
        return {}
    upstream = {row_id: (run_id, task) for row_id, run_id, task in
                TaskInstance.select(TaskInstance.id, TaskInstance.run, TaskInstance.task)
                .where(TaskInstance.run.in_(sorted({run_id for run_id, _ in wanted}))
                       & TaskInstance.task.in_(sorted({task for _, task in wanted}))
                       & (TaskInstance.state == S.SUCCEEDED)).tuples()
                if (run_id, task) in wanted}
    if not upstream:
        return {}
    return {upstream[a.instance_id]: a.output for a in Attempt.select(Attempt.instance, Attempt.output).where(
        Attempt.instance.in_(sorted(upstream)) & (Attempt.status == "succeeded") & (Attempt.archived == False))}  # noqa: E712
