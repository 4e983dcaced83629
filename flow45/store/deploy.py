"""Deploy: a team's validated configuration becomes workflow versions, immutable and content-hashed."""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json

from peewee import fn

from flow45.clock import to_utc
from flow45.config_human import GROUP_PREFIX, groups_used, names_named
from flow45.config import Signature, TeamConfig, task_signature, types_used_by
from flow45.db import atomic, wrote_versions
from flow45.errors import ConfigError, NotFound
from flow45.models import Run, ScheduleCursor, TaskInstance, Team, Workflow, WorkflowVersion
from flow45.settings import current_settings
from flow45.store.connections import check_connections, keep_connection
from flow45.store.reused_sql import first_row
from flow45.store.rules_human import never_decides
from flow45.store.sweep import offer_queued
from flow45.store.unit import Unit, lock_workflow, record_event
from flow45.store.specs import parse_version, recent_limits, spec_document
from flow45.store.spec_diff import spec_changes
from flow45.views import DeployedWorkflow, DeployReport


def content_hash(document: dict) -> str:
    return hashlib.sha256(json.dumps(document, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def deployed_signatures(team: str, excluding: set[str]) -> dict[str, tuple[Signature, str]]:
    """function -> (signature, where) over the current versions of the team's other workflows."""
    found: dict[str, tuple[Signature, str]] = {}
    query = (
        WorkflowVersion.select(WorkflowVersion, Workflow)
        .join(Workflow, on=(WorkflowVersion.workflow == Workflow.id))
        .where((Workflow.team == team) & (WorkflowVersion.version == Workflow.current_version))
    )
    for row in query:
        if row.workflow.name in excluding:
            continue
        spec = parse_version(row)
        for task_name, task in spec.workflow.tasks.items():
            if task.function is None:  # a timer
                continue
            where = f"deployed workflow {row.workflow.name} v{row.version}, task {task_name}"
            found.setdefault(task.function, (task_signature(spec.workflow, task), where))
    return found


def _signature_conflicts(config: TeamConfig) -> list[str]:
    deployed = deployed_signatures(config.team, excluding=set(config.workflows))
    problems = []
    for function, (sig, path) in config.signatures().items():
        if function in deployed and deployed[function][0] != sig:
            other, where = deployed[function]
            origin = config.origins[".".join(path.split(".")[:2])]
            problems.append(
                f"{origin}: {path}: function '{function}' is {sig.describe()} here but "
                f"{other.describe()} in {where}"
            )
    return problems


def _deciders_who_never_can(config: TeamConfig) -> list[str]:
    """Human tasks' assignees, escalations and groups that name a broker user who could never decide
    them (another team's, or a worker's): the task would wait for someone who cannot come."""
    named = [(f"groups.{group}", f"groups.{group}.{i}", user)
             for group, members in config.groups.items() for i, user in enumerate(members)]
    for workflow_name, workflow in config.workflows.items():
        for task_name, task in workflow.tasks.items():
            named += [(f"workflows.{workflow_name}", f"workflows.{workflow_name}.tasks.{task_name}.{where}", user)
                      for where, user in names_named(task) if not user.startswith(GROUP_PREFIX)]
    return [f"{config.origins.get(key, '(config)')}: {path}: {why}; they could never decide its tasks"
            for key, path, user in named if (why := never_decides(config.team, user)) is not None]


class _Undone(Exception):
    """Rolls a dry run's transaction back, carrying what it would have done."""

    def __init__(self, report: DeployReport):
        super().__init__("dry run")
        self.report = report


def deploy(teams: list[TeamConfig], actor: str, now: dt.datetime | None = None, *, prune: bool = False,
           dry_run: bool = False) -> DeployReport:
    """Store each changed workflow as a new version; unchanged ones create nothing. A team's deployed
    workflows that the config leaves out are reported as missing, or retired with `prune`. A dry run
    does all of it in a transaction it rolls back: the same report, the same refusals, nothing kept."""
    at = to_utc(now)
    try:
        report = _deploy(teams, actor, at, prune, dry_run)
    except _Undone as undone:
        return undone.report
    recent_limits.forget()  # a limit added holds for earlier runs at once
    return _offer_queued(teams, report, at)


def _start_queued_runs(workflow_ids: list[int], actor: str, at: dt.datetime) -> list[int]:
    """Queued runs of the workflows given new versions take the slots a raised max_active_runs made: the
    current version's limit holds for every run (flow45.store.unit.Unit.start_queued). How many runs
    of each workflow started."""
    unit = Unit(at)  # reads the limits this transaction's new versions set (Unit.limits_changed_here)
    started = []
    for workflow_id in workflow_ids:
        lock_workflow(workflow_id)
        started.append(unit.start_queued(workflow_id, actor))
    unit.flush()
    return started


def _offer_queued(teams: list[TeamConfig], report: DeployReport, at: dt.datetime) -> DeployReport:
    """The functions of the workflows given new versions: their limits in force may have changed for
    every run (flow45.store.slots.task_limit), so their queued instances are offered where a raised
    max_running made room, as after a worker's message that frees a slot (flow45.store.sweep.hand_on),
    at most as many as a sweep offers at once. The report says how many of each workflow's."""
    configs = {config.team: config for config in teams}
    tasks = {(None, item.team, task.function, name) for item in report.workflows if item.change == "updated"
             for name, task in configs[item.team].workflows[item.workflow].tasks.items() if task.function}
    offered = offer_queued(at, tasks=tasks) if tasks else []
    if not offered:
        return report
    counted = dict(((team, name), n) for team, name, n in (
        TaskInstance.select(TaskInstance.team, Workflow.name, fn.COUNT(TaskInstance.id))
        .join(Run, on=(Run.id == TaskInstance.run)).join(Workflow, on=(Workflow.id == Run.workflow))
        .where(TaskInstance.id.in_(offered)).group_by(TaskInstance.team, Workflow.name).tuples()))
    return dataclasses.replace(report, workflows=[
        dataclasses.replace(item, offered_instances=counted.get((item.team, item.workflow), 0))
        for item in report.workflows])


def _deploy(teams: list[TeamConfig], actor: str, at: dt.datetime, prune: bool, dry_run: bool) -> DeployReport:
    settings = current_settings()
    results: list[DeployedWorkflow] = []
    updated: dict[int, int] = {}  # the workflows given a new version (-> their place in results): queued runs may start
    with atomic():
        problems: list[str] = []
        for config in teams:
            if not settings.team_allowed(config.team):
                first_file = min(config.origins.values(), default="(config)")
                problems.append(
                    f"{first_file}: team: '{config.team}' is not a team of this installation "
                    f"(known: {', '.join(sorted(settings.teams))})"
                )
            problems += _signature_conflicts(config) + _deciders_who_never_can(config)
        problems += check_connections(teams)
        if problems:
            raise ConfigError(problems)
        for config in teams:
            Team.get_or_create(name=config.team, defaults={"created_at": at})
            for name, workflow in sorted(config.workflows.items()):
                groups = {name: config.groups[name] for name in groups_used(workflow)}
                functions = {task.function: config.functions[task.function] for task in workflow.tasks.values()
                             if task.function in config.functions}
                document = spec_document(workflow, types_used_by(workflow, config.types), groups, functions)
                results.append(_store_version(config.team, name, document, actor, at))
                row = find_workflow(config.team, name)
                keep_connection(row, workflow)
                if results[-1].change == "updated":
                    updated[row.id] = len(results) - 1
            results += _left_out(config, actor, at, prune)
        for place, started in zip(updated.values(), _start_queued_runs(list(updated), actor, at)):
            results[place] = dataclasses.replace(results[place], started_runs=started)
        if dry_run:  # the queued instances a raised max_running would let go, offered here and rolled back
            raise _Undone(_offer_queued(teams, DeployReport(results, dry_run=True), at))
    return DeployReport(results)


def _left_out(config: TeamConfig, actor: str, at: dt.datetime, prune: bool) -> list[DeployedWorkflow]:
    found = []
    query = Workflow.select().where((Workflow.team == config.team) & Workflow.retired_at.is_null()).order_by(Workflow.name)
    for workflow in query:
        if workflow.name in config.workflows:
            continue
        if prune:
            Workflow.update(retired_at=at, updated_at=at).where(Workflow.id == workflow.id).execute()
            record_event(at, config.team, "retire", actor, detail={"workflow": workflow.name,
                                                                   "version": workflow.current_version})
        found.append(DeployedWorkflow(config.team, workflow.name, workflow.current_version,
                                      "retired" if prune else "missing"))
    return found


def _schedule_afresh(workflow_id: int, at: dt.datetime) -> None:
    """A workflow deployed again after its retirement starts its schedule at this deploy, as a new one
    does: the ticks it missed while retired are passed over (`flow45 backfill` makes them), never a
    flood of catch-up runs for the months it was away."""
    moved = (ScheduleCursor.update(last_tick=at, updated_at=at)
             .where((ScheduleCursor.workflow == workflow_id) & (ScheduleCursor.last_tick < at)).execute())
    if not moved and not ScheduleCursor.select().where(ScheduleCursor.workflow == workflow_id).exists():
        ScheduleCursor.create(workflow=workflow_id, last_tick=at, updated_at=at)


def _store_version(team: str, name: str, document: dict, actor: str, at: dt.datetime) -> DeployedWorkflow:
    digest = content_hash(document)
    workflow = Workflow.get_or_none((Workflow.team == team) & (Workflow.name == name))
    if workflow is not None:
        current = WorkflowVersion.get(
            (WorkflowVersion.workflow == workflow) & (WorkflowVersion.version == workflow.current_version)
        )
        if workflow.retired_at is not None:  # in the config again: back in listings and schedules
            Workflow.update(retired_at=None, updated_at=at).where(Workflow.id == workflow.id).execute()
            record_event(at, team, "restore", actor, detail={"workflow": name})
            _schedule_afresh(workflow.id, at)
            if current.content_hash == digest:
                return DeployedWorkflow(team, name, current.version, "restored")
        if current.content_hash == digest:
            return DeployedWorkflow(team, name, current.version, "unchanged")
        number, change, changes = workflow.current_version + 1, "updated", spec_changes(current.spec, document)
    else:
        workflow = Workflow.create(team=team, name=name, current_version=0, created_at=at, updated_at=at)
        number, change, changes = 1, "created", []
    wrote_versions()
    WorkflowVersion.create(
        workflow=workflow, version=number, content_hash=digest, spec=document, deployed_by=actor, created_at=at
    )
    workflow.current_version, workflow.updated_at = number, at
    workflow.save()
    detail = {"workflow": name, "version": number, "hash": digest[:12], **({"changes": changes} if changes else {})}
    record_event(at, team, "deploy", actor, detail=detail)
    return DeployedWorkflow(team, name, number, change, changes)


def find_workflow(team: str, name: str) -> Workflow:
    workflow = first_row("find_workflow", Workflow,
                         lambda t, n: Workflow.select().where((Workflow.team == t) & (Workflow.name == n)), team, name)
    if workflow is None:
        raise NotFound(f"workflow {team}/{name} is not deployed")
    return workflow
