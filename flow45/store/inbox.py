"""The human inbox: the available human tasks a person may need to decide, with what they need to
decide them (the run's params, the upstream outputs the task receives, who has it, when it is due),
overdue ones first. Nothing here writes."""

from __future__ import annotations

import datetime as dt
from typing import Literal

from flow45 import states as S
from flow45.clock import to_utc
from flow45.config_human import GROUP_PREFIX
from flow45.models import Attempt, Run, TaskInstance
from flow45.store import rules_human
from flow45.store.queries import get_instance, list_runs
from flow45.store.specs import CurrentSpecs, version_spec
from flow45.views import InboxItem

Show = Literal["all", "mine", "groups", "overdue"]
SHOWS: tuple[str, ...] = ("all", "mine", "groups", "overdue")
_FAR = dt.datetime.max
SCAN = 5000  # available human tasks a filtered inbox looks through, at most


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
        .limit(limit if show == "all" else max(limit, SCAN))  # a filter looks further than the page it returns
    )
    if team:
        query = query.where(TaskInstance.team == team)
    rows = list(query.tuples())
    runs = {}
    found: list[InboxItem] = []
    current = CurrentSpecs()
    for instance_id, run_id, task, overdue_at, taken_by, due_at, version, workflow in rows:
        spec = version_spec(version)
        assignment = rules_human.run_assignments(spec, current[workflow]).get(task)
        escalated = overdue_at is not None and assignment is not None and bool(assignment.escalated_to)
        overdue = due_at is not None and due_at <= at
        if not _matches(show, user, taken_by, overdue, assignment, escalated):
            continue
        view = get_instance(instance_id)
        if run_id not in runs:
            listed = list_runs(before=run_id + 1, limit=1)
            runs[run_id] = listed[0] if listed and listed[0].id == run_id else None
        item = InboxItem(
            instance=view, run=runs[run_id], inputs=_inputs(run_id, spec.task(task).inputs),
            who=assignment.who(escalated) if assignment else "any operator of the team",
            overdue=overdue, checked_at=at,
        )
        found.append(item)
        if len(found) == limit:
            break
    found.sort(key=lambda i: (not i.overdue, i.instance.due_at or _FAR))  # stable: the query's order otherwise
    return found


def _inputs(run_id: int, inputs: dict[str, str]) -> dict:
    """Parameter -> the output of its upstream task (null unless that task succeeded)."""
    if not inputs:
        return {}
    upstream = {row.task: row for row in TaskInstance.select(TaskInstance.id, TaskInstance.task, TaskInstance.state)
                .where((TaskInstance.run == run_id) & TaskInstance.task.in_(list(inputs.values())))}
    done = [row.id for row in upstream.values() if row.state == S.SUCCEEDED]
    outputs = {a.instance_id: a.output for a in Attempt.select(Attempt.instance, Attempt.output).where(
        Attempt.instance.in_(done) & (Attempt.status == "succeeded") & (Attempt.archived == False))}  # noqa: E712
    return {param: outputs.get(upstream[up].id) if up in upstream else None for param, up in inputs.items()}
