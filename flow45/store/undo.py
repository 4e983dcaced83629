"""Undo: an instance and everything downstream of it that has started go back, superseded, never deleted."""

from __future__ import annotations

import datetime as dt

from flow45 import states as S
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import IllegalTransition
from flow45.models import Attempt, Outbox, Run, TaskInstance
from flow45.names import undo_key
from flow45.store.core import (
    describe, instances_of, lock_instance, move_instance, move_run, offer, record_event, revoke_live_attempt,
    settle_run, upstream_done,
)
from flow45.store.outbox import announce
from flow45.store.specs import VersionSpec, version_spec
from flow45.views import AffectedInstance, UndoPlan


def _affected(
    instance: TaskInstance, run: Run, run_instances: dict[str, TaskInstance], spec: VersionSpec, hold: bool
):
    """X, then every transitive downstream instance of the run that has left pending."""
    target = S.HELD if hold else S.AVAILABLE
    if not hold and (run.status == S.QUEUED or not upstream_done(instance, run_instances, spec)):
        target = S.PENDING  # X was held or skipped before its upstream was done: it waits like the rest
    chosen = [(instance, target)]
    for name in spec.order:
        if name in spec.descendants(instance.task) and run_instances[name].state != S.PENDING:
            chosen.append((run_instances[name], S.PENDING))
    return chosen


def _plan(instance: TaskInstance, run: Run, hold: bool, reason: str | None, dry_run: bool):
    if run.status == S.CANCELLED:
        raise IllegalTransition(f"{describe(instance)}: run {run.id} is cancelled; it cannot be undone")
    if instance.state == S.PENDING:
        raise IllegalTransition(f"{describe(instance)} is pending: it has not started, there is nothing to undo")
    spec = version_spec(run.version_id)
    run_instances = instances_of(run)
    chosen = _affected(run_instances[instance.task], run, run_instances, spec, hold)
    affected = [
        AffectedInstance(
            instance=i.id, task=i.task, state=i.state, becomes=becomes,
            notify=i.state == S.SUCCEEDED and spec.task(i.task).undo == "notify",
        )
        for i, becomes in chosen
    ]
    for item in affected:
        S.check_instance_move(f"task instance {item.instance} ({item.task})", item.state, item.becomes)
    plan = UndoPlan(instance=instance.id, run=run.id, reason=reason, hold=hold, dry_run=dry_run, affected=affected)
    return plan, chosen, run_instances, spec


def plan_undo(instance_id: int, *, hold: bool = False, team: str | None = None) -> UndoPlan:
    """What `undo` would change, changing nothing."""
    with atomic():
        instance, run = lock_instance(instance_id, team)
        return _plan(instance, run, hold, None, True)[0]


def undo(
    instance_id: int, reason: str, *, actor: str, hold: bool = False, dry_run: bool = False,
    now: dt.datetime | None = None, team: str | None = None,
) -> UndoPlan:
    """Undo X: archive the affected attempts, X back to available (or held), downstream to pending,
    undo notices for `undo: notify` outputs, the run running again; one ledger event names it all."""
    if not reason or not reason.strip():
        raise IllegalTransition("undo needs a reason")
    if dry_run:
        plan = plan_undo(instance_id, hold=hold, team=team)
        return UndoPlan(**{**plan.__dict__, "reason": reason})
    at = to_utc(now)
    with atomic():
        instance, run = lock_instance(instance_id, team)
        plan, chosen, run_instances, spec = _plan(instance, run, hold, reason, False)
        event = record_event(
            at, run.team, "undo", actor, run=run.id, instance=instance.id,
            detail={"reason": reason, "hold": hold, "affected": [a.to_json() for a in plan.affected]},
        )
        archived_outputs = _archive(chosen, event.id, at)
        for item, (row, becomes) in zip(plan.affected, chosen):
            if item.notify:
                _write_undo_notice(row, run, spec, archived_outputs.get(row.id), reason, actor, at)
        if run.status in S.FINISHED_RUN:
            move_run(run, S.RUNNING, kind="undo", actor=actor, at=at, detail={"event": event.id})
        for row, becomes in reversed(chosen):  # downstream first, so X's offer sees them pending
            if becomes == S.PENDING:
                move_instance(
                    row, S.PENDING, kind="undo", actor=actor, at=at, detail={"event": event.id},
                    token=None, lease_expires_at=None, not_before=None, failures=0,
                    worker=None, progress_pct=None, progress_message=None,
                )
        x, x_becomes = chosen[0]
        if x_becomes != S.PENDING:  # a pending X was moved with the downstream ones just above
            x.failures = 0
            offer(x, run, run_instances, kind="undo", actor=actor, at=at, detail={"event": event.id, "reason": reason},
                  target=x_becomes)
        settle_run(run, instances_of(run), actor, at)
        return UndoPlan(**{**plan.__dict__, "event": event.id})


def _archive(chosen, event_id: int, at: dt.datetime) -> dict[int, object]:
    """Mark every attempt of the affected instances superseded; return their current outputs."""
    ids = [row.id for row, _ in chosen]
    outputs = {
        a.instance_id: a.output
        for a in Attempt.select(Attempt.instance, Attempt.output).where(
            Attempt.instance.in_(ids) & (Attempt.status == "succeeded") & (Attempt.archived == False)  # noqa: E712
        )
    }
    for row, _ in chosen:
        revoke_live_attempt(row, "revoked", at, "undone")
    Attempt.update(archived=True, archived_by=event_id).where(
        Attempt.instance.in_(ids) & (Attempt.archived == False)  # noqa: E712
    ).execute()
    return outputs


def _write_undo_notice(row: TaskInstance, run: Run, spec: VersionSpec, output, reason: str, actor: str, at) -> None:
    announce()
    Outbox.create(
        team=run.team, kind="undo", routing_key=undo_key(run.team, row.function), priority=row.priority,
        instance=row.id, created_at=at,
        body={
            "instance": row.id, "run": run.id, "team": run.team, "workflow": spec.workflow_name,
            "version": spec.number, "task": row.task, "function": row.function, "attempt": row.attempt,
            "output": output, "reason": reason, "actor": actor, "params": run.params,
        },
    )
