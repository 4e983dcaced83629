"""The client on the database: the installation's administrators and the embedded default.

It sees every team unless given one (`team=`), in which case it behaves as that team's remote
operator would: another team's id is NotFound in the words a missing id gets, and its lists hold
only that team's rows. The bridge answers remote operators' reads through it, for their team.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any, Sequence

import peewee as pw

from flow45 import wire
from flow45 import store
from flow45.client.base import RUNS_PAGE, Client, RunFilter, ValidatedTeam
from flow45.db import database, dialect
from flow45.errors import NotFound
from flow45.models import Event, Run, TaskInstance, Workflow, WorkflowVersion
from flow45.store.specs import VersionSpec, version_spec
from flow45.views import (
    BackfillPlan,
    DeployReport, EventView, InboxItem, InstanceView, RunInstances, RunView, Triggered, UndoPlan, WorkflowStats,
    WorkflowVersions, WorkflowView,
)


class LocalClient(Client):
    def __init__(self, actor: str, *, team: str | None = None, database_url: str | None = None):
        """`database_url` binds the store (and requires its schema); without it the bound one is used."""
        if database_url is not None:
            from flow45.db import connect
            from flow45.migrate import require_schema

            connect(database_url)  # the same URL again changes nothing
            require_schema()  # an operator's tool never creates a store
        self.actor = actor
        self.team = team

    # ---- the team filter ------------------------------------------------------------------

    def _team(self, asked: str | None) -> str | None:
        """The team to read: the asked one within this client's; None when it asks for another."""
        return asked or self.team

    def _other_team(self, asked: str | None) -> bool:
        return bool(asked and self.team and asked != self.team)

    def _missing_workflow(self, team: str, workflow: str) -> NotFound:
        return NotFound(f"workflow {team}/{workflow} is not deployed")

    # ---- reads -------------------------------------------------------------------------------

    def workflows(self, team: str | None = None) -> list[WorkflowView]:
        if self._other_team(team):
            return []
        return store.list_workflows(self._team(team))

    def runs(self, where: RunFilter = RunFilter(), *, before: int | None = None, limit: int = RUNS_PAGE,
             ids: Sequence[int] | None = None) -> list[RunView]:
        if self._other_team(where.team) or (ids is not None and not ids):
            return []
        team = self._team(where.team)
        if not (where.text.strip() or where.params or where.since or where.until or where.version or where.key):
            return store.list_runs(team, where.workflow, where.status, limit=limit, before=before, ids=ids)
        found = [row.id for row in _chosen_runs(where, team, before, limit, ids, Run.id)]
        return store.list_runs(team, ids=found, limit=len(found)) if found else []

    def run(self, run_id: int, *, attempts: bool = False) -> RunView:
        return store.get_run(run_id, team=self.team, with_attempts=attempts)

    def run_instances(self, where: RunFilter = RunFilter(), *, task: str | None = None, state: str | None = None,
                      before: int | None = None, limit: int = RUNS_PAGE,
                      ids: Sequence[int] | None = None) -> list[RunInstances]:
        if self._other_team(where.team) or (ids is not None and not ids):
            return []
        chosen = _chosen_runs(where, self._team(where.team), before, limit, ids, Run.id, Run.status, Run.version)
        return store.run_instances(list(chosen), task, state)

    def run_as_of(self, run_id: int, *, event: int | None = None, at: dt.datetime | None = None) -> RunView:
        return store.run_as_of(run_id, event=event, at=at, team=self.team)

    def stats(self, team: str, workflow: str, runs: int = 50) -> WorkflowStats:
        if self._other_team(team):
            raise self._missing_workflow(team, workflow)
        from flow45.store.task_stats import workflow_stats

        return workflow_stats(team, workflow, runs)

    def versions(self, team: str, workflow: str, limit: int = 20, since: int | None = None) -> WorkflowVersions:
        if self._other_team(team):
            raise self._missing_workflow(team, workflow)
        from flow45.store.versions import workflow_versions

        return workflow_versions(team, workflow, limit, since)

    def run_row(self, run_id: int) -> RunView | None:
        found = store.list_runs(self.team, ids=[run_id], limit=1)  # not before=run_id + 1: past the largest id
        return found[0] if found else None

    def status_counts(self, where: RunFilter = RunFilter()) -> dict[str, int]:
        if self._other_team(where.team):
            return {}
        query = Run.select(Run.status, pw.fn.COUNT(pw.SQL("*"))).group_by(Run.status)  # *: from the index alone
        if where.workflow or where.text.strip():
            query = query.join(Workflow)
        return {status: n for status, n in _filtered(query, where, self._team(where.team), with_status=False).tuples()}

    def instance(self, instance_id: int) -> InstanceView:
        return store.get_instance(instance_id, team=self.team)

    def instance_ids(self, run_id: int, tasks: list[str]) -> dict[str, int]:
        if not tasks:
            return {}
        query = TaskInstance.select(TaskInstance.id, TaskInstance.task).where(
            (TaskInstance.run == run_id) & TaskInstance.task.in_(tasks)
        )
        if self.team:
            query = query.where(TaskInstance.team == self.team)
        return {row.task: row.id for row in query}

    def events(self, after: int = 0, *, team: str | None = None, run: int | None = None,
               instance: int | None = None, limit: int = 200, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> list[EventView]:
        if self._other_team(team):
            return []
        return store.list_events(after, team=self._team(team), run=run, instance=instance, limit=limit,
                                 since=since, until=until)

    def tail_events(self, *, team: str | None = None, run: int | None = None, instance: int | None = None,
                    n: int = 200, before: int | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[EventView]:
        if self._other_team(team):
            return []
        return store.list_events(team=self._team(team), run=run, instance=instance, limit=n, since=since, until=until,
                                 newest=True, before=before)

    def ledger_writers(self):
        return dialect()

    def latest_event_id(self) -> int:
        query = Event.select(pw.fn.MAX(Event.id))
        if self.team:
            query = query.where(Event.team == self.team)
        return query.scalar() or 0

    def human_inbox(self, team: str | None = None, limit: int = 500, *, show: str = "all") -> list[InboxItem]:
        if self._other_team(team):
            return []
        from flow45.store.inbox import human_inbox

        return human_inbox(self._team(team), self.actor, show, limit=limit)

    def run_spec(self, run_id: int) -> VersionSpec:
        row = Run.get_or_none(Run.id == run_id)
        if row is None or (self.team and row.team != self.team):
            raise NotFound(f"run {run_id} not found" + (f" for team {self.team}" if self.team else ""))
        return version_spec(row.version_id)

    def workflow_spec(self, team: str, workflow: str) -> VersionSpec:
        if self._other_team(team):
            raise self._missing_workflow(team, workflow)
        row = store.find_workflow(team, workflow)
        version = WorkflowVersion.get(
            (WorkflowVersion.workflow == row.id) & (WorkflowVersion.version == row.current_version)
        )
        return version_spec(version.id)

    def schema(self, team: str | None = None) -> dict:
        from flow45.schema import full_schema

        if self._other_team(team):
            team = self.team  # nothing of another team's: its functions are not shown
        return full_schema(self._team(team))

    # ---- actions -------------------------------------------------------------------------------

    def trigger(self, team: str, workflow: str, params: Any = None, logical_time: dt.datetime | None = None,
                priority: int | None = None, key: str | None = None) -> Triggered:
        if self._other_team(team):
            raise self._missing_workflow(team, workflow)
        return store.trigger_run(team, workflow, params, actor=self.actor, logical_time=logical_time, priority=priority,
                                 key=key)

    def pause(self, team: str, workflow: str, triggers: str = "queue", reason: str | None = None) -> None:
        if self._other_team(team):
            raise self._missing_workflow(team, workflow)
        store.pause(team, workflow, actor=self.actor, triggers=triggers, reason=reason)

    def resume(self, team: str, workflow: str) -> None:
        if self._other_team(team):
            raise self._missing_workflow(team, workflow)
        store.resume(team, workflow, actor=self.actor)

    def backfill(self, team: str, workflow: str, start: dt.datetime, end: dt.datetime, *,
                 dry_run: bool = False) -> BackfillPlan:
        if self._other_team(team):
            raise self._missing_workflow(team, workflow)
        return store.backfill(team, workflow, start, end, actor=self.actor, dry_run=dry_run)

    def undo(self, instance_id: int, reason: str, *, hold: bool = False, dry_run: bool = False,
             cancel_connected: bool = False) -> UndoPlan:
        if dry_run and not reason:  # the dashboard shows the affected set before a reason is typed
            return store.plan_undo(instance_id, hold=hold, team=self.team, cancel_connected=cancel_connected)
        return store.undo(instance_id, reason, actor=self.actor, hold=hold, dry_run=dry_run, team=self.team,
                          cancel_connected=cancel_connected)

    def skip(self, instance_id: int, reason: str) -> None:
        store.skip_instance(instance_id, reason, actor=self.actor, team=self.team)

    def retry(self, instance_id: int) -> None:
        store.retry_instance(instance_id, actor=self.actor, team=self.team)

    def hold(self, instance_id: int, reason: str | None = None) -> None:
        store.hold(instance_id, actor=self.actor, reason=reason, team=self.team)

    def release(self, instance_id: int) -> str:
        store.release(instance_id, actor=self.actor, team=self.team)
        return self.instance(instance_id).state

    def cancel(self, run_id: int, reason: str | None = None) -> None:
        store.cancel_run(run_id, actor=self.actor, reason=reason, team=self.team)

    def submit(self, instance_id: int, output: Any, comment: str | None = None) -> str:
        return store.submit_human(instance_id, output, actor=self.actor, comment=comment, team=self.team).state

    def take(self, instance_id: int, reason: str | None = None, for_user: str | None = None) -> str | None:
        return store.take(instance_id, actor=self.actor, reason=reason, team=self.team, for_user=for_user)

    def note(self, run_id: int, text: str, task: str | None = None) -> None:
        store.note_run(run_id, text, actor=self.actor, team=self.team, task=task)

    def hand_back(self, instance_id: int) -> None:
        store.hand_back(instance_id, actor=self.actor, team=self.team)

    def set_output(self, instance_id: int, output: Any, reason: str) -> str:
        return store.set_output(instance_id, output, reason=reason, actor=self.actor, team=self.team).state

    def callback_complete(self, key: str, output: Any) -> tuple[int, str]:
        done = store.complete_callback(key, output, actor=self.actor, team=self.team)
        return done.instance, done.state

    def callback_fail(self, key: str, error: str, retryable: bool = True) -> tuple[int, str]:
        done = store.fail_callback(key, error, actor=self.actor, retryable=retryable, team=self.team)
        return done.instance, done.state

    def deploy(self, path: Path, prune: bool = False, dry_run: bool = False) -> DeployReport:
        from flow45.config import load_config
        from flow45.errors import Flow45Error

        teams = load_config(path)
        others = sorted({t.team for t in teams} - {self.team}) if self.team else []
        if others:
            raise Flow45Error(f"{path} names team {others[0]}; this client deploys only team {self.team}")
        return store.deploy(teams, actor=self.actor, prune=prune, dry_run=dry_run)

    def validate(self, path: Path) -> list[ValidatedTeam]:
        from flow45.config import load_config

        return [
            ValidatedTeam(t.team, sorted(t.workflows), sorted(t.types), len(t.signatures())) for t in load_config(path)
        ]

    def close(self) -> None:
        if not database.is_closed():
            database.close()  # this thread's connection only (peewee keeps one per thread)


def _chosen_runs(where: RunFilter, team: str | None, before: int | None, limit: int, ids: Sequence[int] | None,
                 *columns):
    """The runs `where` chooses for `team` (these columns of them), newest first, at most `limit`, with
    ids below `before` and among `ids` when given."""
    query = Run.select(*columns).join(Workflow).order_by(Run.id.desc()).limit(limit)
    if before:
        query = query.where(Run.id < before)
    if ids is not None:
        query = query.where(Run.id.in_(list(ids)))
    return _filtered(query, where, team)


def _filtered(query, where: RunFilter, team: str | None, with_status: bool = True):
    if team:
        query = query.where(Run.team == team)
    if where.workflow:
        query = query.where(Workflow.name == where.workflow)
    if with_status and where.status:
        query = query.where(Run.status == where.status)
    if where.version is not None:
        numbered = WorkflowVersion.select(WorkflowVersion.id).join(Workflow).where(
            (Workflow.name == where.workflow) & (WorkflowVersion.version == where.version))
        query = query.where(Run.version.in_(numbered))
    if where.key is not None:
        query = query.where(Run.key == where.key)
    if where.since is not None:
        query = query.where(Run.created_at >= where.since)
    if where.until is not None:
        query = query.where(Run.created_at < where.until)
    for key, value in where.params:  # params are stored as compact JSON: the pair appears as written here,
        pair = f"{wire.dumps(key)}:{wire.dumps(value)}".lower()  # then a comma or the end (3 is not 30)
        stored = pw.fn.LOWER(Run.params)
        query = query.where(stored.contains(pair + ",") | stored.contains(pair + "}"))
    text = where.text.strip()
    if text:
        low = text.lower()
        match = (
            Workflow.name.contains(low) | Run.team.contains(low) | Run.triggered_by.contains(text)
            | (Run.status == low) | (Run.trigger == low) | pw.fn.LOWER(Run.params).contains(low)
            | Run.key.contains(text)
        )
        if text.lstrip("#").isdigit():
            match |= Run.id == int(text.lstrip("#"))
        query = query.where(match)
    return query
