"""The write primitives every verb uses, always inside one `atomic()` transaction:
locking, the one function that moves an instance or a run, the ledger and the outbox."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from flow45 import states as S
from flow45.db import dialect
from flow45.errors import NotFound
from flow45.models import Attempt, Event, Outbox, Run, TaskInstance, Workflow
from flow45.names import offer_key
from flow45.settings import current_settings
from flow45.store.specs import VersionSpec, version_spec


def new_token() -> str:
    return secrets.token_urlsafe(18)


def _for_update(query):
    return dialect().for_update(query)


def lock_run(run_id: int, team: str | None = None) -> Run:
    run = _for_update(Run.select().where(Run.id == run_id)).first()
    if run is None or (team is not None and run.team != team):
        raise NotFound(f"run {run_id} not found" + (f" for team {team}" if team else ""))
    return run


def lock_instance(instance_id: int, team: str | None = None) -> tuple[TaskInstance, Run]:
    """The instance and its run, locked run first (the order every writer takes)."""
    found = TaskInstance.select(TaskInstance.run, TaskInstance.team).where(TaskInstance.id == instance_id).first()
    if found is None or (team is not None and found.team != team):
        raise NotFound(f"task instance {instance_id} not found" + (f" for team {team}" if team else ""))
    run = lock_run(found.run_id)
    instance = _for_update(TaskInstance.select().where(TaskInstance.id == instance_id)).get()
    return instance, run


def lock_workflow(workflow_id: int) -> Workflow:
    return _for_update(Workflow.select().where(Workflow.id == workflow_id)).get()


def describe(instance: TaskInstance) -> str:
    return f"task instance {instance.id} ({instance.task} of run {instance.run_id})"


def record_event(
    at: dt.datetime, team: str, kind: str, actor: str, *, run: int | None = None, instance: int | None = None,
    from_state: str | None = None, to_state: str | None = None, detail: Any = None,
) -> Event:
    return Event.create(
        at=at, team=team, run=run, instance=instance, kind=kind, from_state=from_state,
        to_state=to_state, actor=actor, detail=detail,
    )


def move_instance(
    instance: TaskInstance, target: str, *, kind: str, actor: str, at: dt.datetime,
    detail: Any = None, **changes: Any,
) -> None:
    """The one way an instance changes state: checked against the table, saved, and logged."""
    S.check_instance_move(describe(instance), instance.state, target)
    previous = instance.state
    instance.state = target
    instance.updated_at = at
    for name, value in changes.items():
        setattr(instance, name, value)
    instance.save()
    record_event(
        at, instance.team, kind, actor, run=instance.run_id, instance=instance.id,
        from_state=previous, to_state=target, detail=detail,
    )


def move_run(run: Run, target: str, *, kind: str, actor: str, at: dt.datetime, detail: Any = None) -> None:
    S.check_run_move(f"run {run.id}", run.status, target)
    previous = run.status
    run.status = target
    run.updated_at = at
    if target == S.RUNNING and run.started_at is None:
        run.started_at = at
    run.finished_at = at if target in S.FINISHED_RUN else None
    run.save()
    record_event(at, run.team, kind, actor, run=run.id, from_state=previous, to_state=target, detail=detail)


def instances_of(run: Run) -> dict[str, TaskInstance]:
    return {i.task: i for i in _for_update(TaskInstance.select().where(TaskInstance.run == run.id))}


def revoke_live_attempt(instance: TaskInstance, status: str, at: dt.datetime, error: str | None = None) -> None:
    """The running attempt, if any, ends; its token stops counting."""
    if instance.state == S.RUNNING and instance.token:
        Attempt.update(status=status, finished_at=at, error=error).where(
            (Attempt.instance == instance.id) & (Attempt.token == instance.token) & (Attempt.status == "running")
        ).execute()


def current_outputs(instance_ids: list[int]) -> dict[int, Any]:
    """instance id -> output of its current succeeded attempt."""
    if not instance_ids:
        return {}
    rows = Attempt.select(Attempt.instance, Attempt.output).where(
        Attempt.instance.in_(instance_ids) & (Attempt.status == "succeeded") & (Attempt.archived == False)  # noqa: E712
    )
    return {row.instance_id: row.output for row in rows}


def offer_body(instance: TaskInstance, run: Run, spec: VersionSpec, inputs: dict) -> dict:
    task = spec.task(instance.task)
    return {
        "instance": instance.id, "run": run.id, "team": run.team, "workflow": spec.workflow_name,
        "version": spec.number, "task": instance.task, "function": instance.function,
        "attempt": instance.attempt, "token": instance.token, "inputs": inputs, "params": run.params,
        "lease_seconds": lease_seconds(task), "human": task.human, "priority": task.priority,
    }


def lease_seconds(task) -> float:
    return task.lease if task.lease is not None else current_settings().default_lease


def inputs_for(instance: TaskInstance, run_instances: dict[str, TaskInstance], spec: VersionSpec) -> dict:
    task = spec.task(instance.task)
    by_task = {name: run_instances[name] for name in task.inputs.values()}
    outputs = current_outputs([i.id for i in by_task.values() if i.state == S.SUCCEEDED])
    return {param: outputs.get(by_task[up].id) for param, up in task.inputs.items()}


def offer(
    instance: TaskInstance, run: Run, run_instances: dict[str, TaskInstance], *, kind: str, actor: str,
    at: dt.datetime, detail: Any = None, target: str = S.AVAILABLE,
) -> None:
    """Make the instance available under a fresh attempt and token, and write its offer."""
    spec = version_spec(run.version_id)
    move_instance(
        instance, target, kind=kind, actor=actor, at=at, detail=detail,
        attempt=instance.attempt + 1, token=new_token(), lease_expires_at=None, not_before=None,
        offered_at=at, worker=None, progress_pct=None, progress_message=None,
    )
    if target == S.AVAILABLE and not instance.human:  # operators do human tasks: no worker is offered them
        write_offer(instance, run, spec, inputs_for(instance, run_instances, spec), at)


def write_offer(instance: TaskInstance, run: Run, spec: VersionSpec, inputs: dict, at: dt.datetime) -> None:
    from flow45.store.outbox import announce

    Outbox.create(
        team=run.team, kind="offer", routing_key=offer_key(run.team, instance.function),
        priority=instance.priority, body=offer_body(instance, run, spec, inputs),
        instance=instance.id, created_at=at,
    )
    announce()


def upstream_done(instance: TaskInstance, run_instances: dict[str, TaskInstance], spec: VersionSpec) -> bool:
    return all(run_instances[up].state in S.DONE for up in spec.upstream(instance.task))


def release_ready(run: Run, run_instances: dict[str, TaskInstance], actor: str, at: dt.datetime) -> None:
    """Offer every pending instance whose upstream instances are all done."""
    if run.status == S.QUEUED or run.status == S.CANCELLED:
        return
    spec = version_spec(run.version_id)
    for name in spec.order:  # stable and readable in the ledger
        instance = run_instances[name]
        if instance.state == S.PENDING and upstream_done(instance, run_instances, spec):
            offer(instance, run, run_instances, kind="ready", actor=actor, at=at)


def settle_run(run: Run, run_instances: dict[str, TaskInstance], actor: str, at: dt.datetime) -> None:
    """Release what became ready, then bring the run's status in line with its instances."""
    release_ready(run, run_instances, actor, at)
    target = S.run_status_from([i.state for i in run_instances.values()], run.status)
    if target != run.status:
        move_run(run, target, kind="run", actor=actor, at=at)
        if target in S.FINISHED_RUN:
            from flow45.store.runs import start_queued_runs

            start_queued_runs(run.workflow_id, actor, at)
