"""The dashboard's reads. Most go through `flow45.store`; the few it has no verb for (counts per
status, text search, the human inbox, the newest ledger id) read rows here. Nothing here writes.

Every function is safe to call from the ledger feed's thread: it only reads the database.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import peewee as pw

from flow45 import states as S
from flow45 import store
from flow45.errors import NotFound
from flow45.models import Event, Run, TaskInstance, Workflow, WorkflowVersion
from flow45.store.specs import VersionSpec, version_spec
from flow45.views import EventView, InstanceView, RunView

PAGE = 100  # runs read per page: the runs screen never loads more than it shows


@dataclasses.dataclass(frozen=True)
class RunFilter:
    """What the runs screen shows. Immutable, so the feed's thread can read it while the UI changes it."""

    team: str | None = None
    workflow: str | None = None
    status: str | None = None
    text: str = ""

    def describe(self) -> str:
        parts = [f"{name} {value}" for name, value in
                 (("team", self.team), ("workflow", self.workflow), ("status", self.status)) if value]
        if self.text.strip():
            parts.append(f"text “{self.text.strip()}”")
        return ", ".join(parts) or "all runs"


def _filtered(query, f: RunFilter, with_status: bool = True):
    if f.team:
        query = query.where(Run.team == f.team)
    if f.workflow:
        query = query.where(Workflow.name == f.workflow)
    if with_status and f.status:
        query = query.where(Run.status == f.status)
    text = f.text.strip()
    if text:
        low = text.lower()
        match = (
            Workflow.name.contains(low) | Run.team.contains(low) | Run.triggered_by.contains(text)
            | (Run.status == low) | (Run.trigger == low) | pw.fn.LOWER(Run.params).contains(low)
        )
        if text.lstrip("#").isdigit():
            match |= Run.id == int(text.lstrip("#"))
        query = query.where(match)
    return query


def run_row(run_id: int) -> RunView | None:
    """One run as the runs list shows it (counts, no instances): cheap even for a big run."""
    found = store.list_runs(before=run_id + 1, limit=1)
    return found[0] if found and found[0].id == run_id else None


def page_runs(f: RunFilter, before: int | None = None, limit: int = PAGE) -> list[RunView]:
    """Newest first, `limit` runs older than `before`: keyset pages, whatever the table's size."""
    if not f.text.strip():
        return store.list_runs(f.team, f.workflow, f.status, limit=limit, before=before)
    query = Run.select(Run.id).join(Workflow).order_by(Run.id.desc()).limit(limit)
    if before:
        query = query.where(Run.id < before)
    ids = [row.id for row in _filtered(query, f)]
    return [view for view in map(run_row, ids) if view is not None]


def status_counts(f: RunFilter) -> dict[str, int]:
    """Runs per status under the filter's team, workflow and text (not its status: all are counted)."""
    query = Run.select(Run.status, pw.fn.COUNT(Run.id)).group_by(Run.status)
    if f.workflow or f.text.strip():
        query = query.join(Workflow)
    return {status: n for status, n in _filtered(query, f, with_status=False).tuples()}


def teams_and_workflows() -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for view in store.list_workflows():
        found.setdefault(view.team, []).append(view.name)
    return found


def latest_event_id() -> int:
    return Event.select(pw.fn.MAX(Event.id)).scalar() or 0


def tail_events(*, run: int | None = None, instance: int | None = None, n: int = 200) -> list[EventView]:
    """The newest `n` ledger events of a run or an instance, oldest first."""
    query = Event.select(Event.id).order_by(Event.id.desc()).limit(1).offset(n - 1)
    if run is not None:
        query = query.where(Event.run == run)
    if instance is not None:
        query = query.where(Event.instance == instance)
    boundary = query.scalar()
    return store.list_events((boundary - 1) if boundary else 0, run=run, instance=instance, limit=n)


def run_spec(run_id: int) -> VersionSpec:
    row = Run.get_or_none(Run.id == run_id)
    if row is None:
        raise NotFound(f"run {run_id} not found")
    return version_spec(row.version_id)


def current_spec(team: str, workflow: str) -> VersionSpec:
    row = store.find_workflow(team, workflow)
    version = WorkflowVersion.get(
        (WorkflowVersion.workflow == row.id) & (WorkflowVersion.version == row.current_version)
    )
    return version_spec(version.id)


def human_inbox(team: str | None, limit: int = 500) -> list[tuple[InstanceView, RunView | None]]:
    """Available human tasks (of one team, or all), most urgent first, each with its run."""
    query = (
        TaskInstance.select(TaskInstance.id)
        .where((TaskInstance.human == True) & (TaskInstance.state == S.AVAILABLE))  # noqa: E712
        .order_by(TaskInstance.priority.desc(), TaskInstance.id).limit(limit)
    )
    if team:
        query = query.where(TaskInstance.team == team)
    runs: dict[int, RunView | None] = {}
    found = []
    for row in query:
        try:
            view = store.get_instance(row.id)
        except NotFound:
            continue
        if view.run not in runs:
            runs[view.run] = run_row(view.run)
        found.append((view, runs[view.run]))
    return found


def instance_ids(run_id: int, tasks: list[str]) -> dict[str, int]:
    if not tasks:
        return {}
    rows = TaskInstance.select(TaskInstance.id, TaskInstance.task).where(
        (TaskInstance.run == run_id) & TaskInstance.task.in_(tasks)
    )
    return {row.task: row.id for row in rows}


def current_output(view: InstanceView) -> Any:
    """The output of the instance's current (not archived) succeeded attempt, if any."""
    for attempt in reversed(view.attempts):
        if attempt.status == "succeeded" and not attempt.archived:
            return attempt.output
    return None


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What an instance gets: each parameter's upstream task, its state and its current output."""

    params: Any
    by_param: dict[str, tuple[str, str, Any]]  # param -> (upstream task, its state, its output or None)
    after: dict[str, str]  # ordering-only upstream task -> its state


def instance_inputs(view: InstanceView, spec: VersionSpec, run_params: Any) -> Inputs:
    task = spec.task(view.task)
    ids = instance_ids(view.run, view.upstream)
    upstream = {name: store.get_instance(ids[name]) for name in view.upstream if name in ids}
    by_param = {
        param: (up, upstream[up].state, current_output(upstream[up]))
        for param, up in task.inputs.items() if up in upstream
    }
    after = {name: upstream[name].state for name in task.after if name in upstream}
    return Inputs(run_params, by_param, after)
