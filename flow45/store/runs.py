"""Runs: trigger (with max_active_runs queueing) and cancel. Queued runs start when a slot frees, in
the transaction that frees it (`Unit.flush`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from pydantic import ValidationError

from flow45 import states as S
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import InvalidParams
from flow45.models import Run, TaskInstance, WorkflowVersion
from flow45.store import rules
from flow45.store.deploy import find_workflow
from flow45.store.specs import VersionSpec, version_spec
from flow45.store.unit import Unit, lock_workflow, record_event
from flow45.types import describe_errors


def validate_params(spec: VersionSpec, params: Any) -> dict:
    name = f"{spec.team}/{spec.workflow_name}"
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise InvalidParams(f"params for {name} must be a JSON object, got {type(params).__name__}")
    if spec.workflow.params is None:
        if params:
            raise InvalidParams(f"{name} declares no params; got {', '.join(sorted(params))}")
        return {}
    try:
        return spec.types.validate(spec.workflow.params, params)
    except ValidationError as exc:
        raise InvalidParams(f"params for {name} ({spec.workflow.params}): {describe_errors(exc, 'params')}") from exc


def trigger(
    team: str, workflow: str, params: Any = None, *, actor: str, now: dt.datetime | None = None,
    trigger_kind: str = "manual", logical_time: dt.datetime | None = None,
) -> int:
    """Create a run of the workflow's current version; it waits as `queued` when no slot is free."""
    at = to_utc(now)
    with atomic():
        row = lock_workflow(find_workflow(team, workflow).id)
        version = WorkflowVersion.get((WorkflowVersion.workflow == row) & (WorkflowVersion.version == row.current_version))
        spec = version_spec(version.id)
        clean_params = validate_params(spec, params)
        status = S.RUNNING if _has_slot(row.id, spec) else S.QUEUED
        run = Run.create(
            team=team, workflow=row, version=version, status=status, params=clean_params,
            logical_time=to_utc(logical_time) if logical_time else None, trigger=trigger_kind,
            triggered_by=actor, created_at=at, started_at=at if status == S.RUNNING else None, updated_at=at,
        )
        TaskInstance.insert_many(
            [
                {
                    "run": run.id, "team": team, "task": name, "function": task.function or "", "state": S.PENDING,
                    "priority": task.priority, "human": task.human, "updated_at": at,
                }
                for name, task in spec.workflow.tasks.items()
            ]
        ).execute()
        record_event(
            at, team, "trigger", actor, run=run.id, to_state=status,
            detail={"workflow": workflow, "version": spec.number, "trigger": trigger_kind},
        )
        if status == S.RUNNING:
            unit = Unit(at)
            unit.lock_runs([run.id])
            unit.settle(run.id, actor)
            unit.flush()
        return run.id


def _has_slot(workflow_id: int, spec: VersionSpec) -> bool:
    limit = spec.workflow.max_active_runs
    if limit is None:
        return True
    active = Run.select().where((Run.workflow == workflow_id) & (Run.status == S.RUNNING)).count()
    return active < limit


def cancel_run(
    run_id: int, *, actor: str, reason: str | None = None, now: dt.datetime | None = None, team: str | None = None
) -> None:
    """Cancel every unfinished instance; running attempts lose their token. The slot a running run
    held goes to the oldest queued run."""
    with atomic():
        unit = Unit(to_utc(now))
        unit.lock_runs([run_id])
        run = unit.run(run_id, team)
        S.check_run_move(f"run {run.id}", run.status, S.CANCELLED)
        for instance in unit.by_run[run.id].values():
            if instance.state in S.FINISHED_INSTANCE:
                continue
            rules.end_attempt(unit.changes, instance, "revoked", error="run cancelled")
            rules.move(unit.changes, instance, S.CANCELLED, "cancel", actor, token=None, lease_expires_at=None)
        rules.move_run(unit.changes, run, S.CANCELLED, "cancel", actor, {"reason": reason})
        unit.flush()
