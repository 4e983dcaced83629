"""Undo: an instance and everything downstream of it that has started go back, superseded, never deleted."""

from __future__ import annotations

import datetime as dt

from flow45 import states as S
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import IllegalTransition
from flow45.models import Attempt, Outbox
from flow45.names import undo_key
from flow45.store import rules
from flow45.store.connected import cancel_connected as cancel_connected_runs, connected_runs
from flow45.store.outbox import announce
from flow45.store.specs import VersionSpec
from flow45.store.unit import Row, Unit, record_event
from flow45.views import AffectedInstance, UndoPlan


def _affected(instance: Row, run: Row, run_instances: dict[str, Row], spec: VersionSpec, hold: bool):
    """X, then every transitive downstream instance of the run that has left pending."""
    target = S.HELD if hold else S.WAITING if instance.timer is not None else S.AVAILABLE  # a timer is re-armed
    if not hold and (run.status == S.QUEUED or not rules.upstream_done(instance, run_instances, spec)):
        target = S.PENDING  # X was held or skipped before its upstream was done: it waits like the rest
    chosen = [(instance, target)]
    downstream = spec.descendants(instance.task)
    for name in spec.order:
        if name in downstream and run_instances[name].state != S.PENDING:
            chosen.append((run_instances[name], S.PENDING))
    return chosen


def _plan(unit: Unit, instance: Row, hold: bool, reason: str | None, dry_run: bool, cancel_connected: bool = False):
    run = unit.run_of(instance)
    if run.status == S.CANCELLED:
        raise IllegalTransition(f"{rules.describe(instance)}: run {run.id} is cancelled; it cannot be undone")
    if instance.state == S.PENDING:
        raise IllegalTransition(f"{rules.describe(instance)} is pending: it has not started, there is nothing to undo")
    spec, run_instances = unit.spec(run.id), unit.by_run[run.id]
    chosen = _affected(instance, run, run_instances, spec, hold)
    not_done = _not_done_after(run_instances, chosen)
    slot = unit.changes.run_slot(run) if rules.reopens(run, not_done) else None
    run_waits = slot and slot.waits
    if run_waits is not None and chosen[0][1] != S.HELD:
        chosen[0] = (instance, S.PENDING)  # the run waits queued for a slot: X with it
    shown = (chosen if run_waits is not None or run.status == S.QUEUED
             else _offered_again(chosen, not_done, run_instances, spec))
    shown = _held_back(unit, chosen, shown)
    affected = [
        AffectedInstance(
            instance=i.id, task=i.task, state=i.state, becomes=becomes,
            notify=i.state == S.SUCCEEDED and spec.task(i.task).undo == "notify",
        )
        for i, becomes in shown
    ]
    for item, (_, becomes) in zip(affected, chosen):  # as moved: the downstream ones go by pending
        S.check_instance_move(f"task instance {item.instance} ({item.task})", item.state, becomes)
    plan = UndoPlan(instance=instance.id, run=run.id, reason=reason, hold=hold, dry_run=dry_run, affected=affected,
                    connected=connected_runs(run.id), cancel_connected=cancel_connected, run_waits=run_waits)
    return plan, chosen, slot


def _offered_again(chosen: list, not_done: dict[str, str], run_instances: dict[str, Row], spec: VersionSpec) -> list:
    """The affected downstream instances that the undo's settle offers again at once rather than leaving
    pending: an `all_done` or `one_failed` task that a failure elsewhere still lets go (X, undone, is
    upstream of each: only a failure makes one ready, so none is skipped for its trigger rule), or a
    `one_success` task another upstream task of which succeeded. Said `available` (`waiting`, a timer),
    though a `when` may yet skip it. `not_done`: as the undo leaves them."""
    def goes(row) -> bool:
        if not rules.ready(row.task, not_done, spec):
            return False
        upstream = spec.upstream(row.task)  # one_success: offered only after a success, which the undo left
        return row.task not in spec.one_success or any(up not in not_done and run_instances[up].state == S.SUCCEEDED
                                                       for up in upstream)

    return [(row, S.WAITING if row.timer is not None else S.AVAILABLE) if becomes == S.PENDING and goes(row)
            else (row, becomes) for row, becomes in chosen]


def _held_back(unit: Unit, chosen: list, shown: list) -> list:
    """What `rules.offer` holds back `queued` (no free slot of a max_running, or depends_on_past) of what
    the plan says is offered, asked as the undo goes: the downstream instances pending first (their slots
    free), then X offered, then what the settle offers, in order, each taking a slot the next may want.
    The rows are set so for the asking only, and put back."""
    rows = [row for row, _ in chosen]
    states = [row.state for row in rows]
    try:
        for row in rows[1:]:
            row.state = S.PENDING
        held = []
        for row, becomes in shown:
            if becomes == S.AVAILABLE and not row.human and unit.changes.why_queued(row) is not None:
                becomes = S.QUEUED
            row.state = becomes
            held.append((row, becomes))
        return held
    finally:
        for row, state in zip(rows, states):
            row.state = state


def _not_done_after(run_instances: dict[str, Row], chosen: list) -> dict[str, str]:
    """The state of each of the run's instances not done once the undo has moved the chosen ones."""
    return {**rules.not_done_of(run_instances), **{row.task: becomes for row, becomes in chosen}}


def plan_undo(instance_id: int, *, hold: bool = False, team: str | None = None,
              cancel_connected: bool = False) -> UndoPlan:
    """What `undo` would change, changing nothing; the runs connected to the run are listed."""
    with atomic():
        unit = Unit(to_utc(None))
        unit.lock_instances([instance_id])
        return _plan(unit, unit.instance(instance_id, team), hold, None, True, cancel_connected)[0]


def undo(
    instance_id: int, reason: str, *, actor: str, hold: bool = False, dry_run: bool = False,
    now: dt.datetime | None = None, team: str | None = None, cancel_connected: bool = False,
) -> UndoPlan:
    """Undo X: archive the affected attempts, X back to available (or held), downstream to pending,
    undo notices for `undo: notify` outputs, the run running again (or queued, with X pending, while its
    workflow's max_active_runs are all running); one ledger event names it all.
    `cancel_connected`: the unfinished runs the run started (connected workflows) are cancelled too."""
    reason = rules.said(reason)
    if reason is None:
        raise IllegalTransition("undo needs a reason")
    if dry_run:
        plan = plan_undo(instance_id, hold=hold, team=team, cancel_connected=cancel_connected)
        return UndoPlan(**{**plan.__dict__, "reason": reason})
    at = to_utc(now)
    with atomic():
        unit = Unit(at)
        unit.lock_instances([instance_id])
        instance = unit.instance(instance_id, team)
        run, ch = unit.run_of(instance), unit.changes
        plan, chosen, slot = _plan(unit, instance, hold, reason, False, cancel_connected)
        detail = {"reason": reason, "hold": hold, "affected": [a.to_json() for a in plan.affected]}
        if plan.connected:
            detail["connected"] = [c.to_json() for c in plan.connected]
            detail["cancel_connected"] = cancel_connected
        event = record_event(at, run.team, "undo", actor, run=run.id, instance=instance.id, detail=detail)
        archived_outputs = _archive(ch, chosen, event.id)
        for item, (row, becomes) in zip(plan.affected, chosen):
            if item.notify:
                _write_undo_notice(row, run, unit.spec(run.id), archived_outputs.get(row.id), reason, actor, at)
        run_instances = unit.by_run[run.id]
        not_done = _not_done_after(run_instances, chosen)
        for row, becomes in reversed(chosen):  # downstream first, so X's offer sees them pending
            if becomes == S.PENDING:
                rules.move(
                    ch, row, S.PENDING, "undo", actor, {"event": event.id}, token=None, lease_expires_at=None,
                    not_before=None, failures=0, worker=None, progress_pct=None, progress_message=None,
                )
        rules.reopen(ch, run, run_instances, not_done, "undo", actor, {"event": event.id}, slot)  # as planned
        x, x_becomes = chosen[0]
        if x_becomes != S.PENDING:  # a pending X was moved with the downstream ones just above
            x.failures = 0
            rules.offer(ch, x, "undo", actor, {"event": event.id, "reason": reason}, target=x_becomes)
        unit.settle(run.id, actor)
        if cancel_connected:
            cancel_connected_runs(unit, plan.connected, actor, f"undo of instance {instance.id}: {reason}")
        unit.flush()
        return UndoPlan(**{**plan.__dict__, "event": event.id})


def _archive(ch: rules.Changes, chosen, event_id: int) -> dict[int, object]:
    """Mark every attempt of the affected instances superseded (a running one revoked, when the
    changes are stored); return their current outputs."""
    ids = [row.id for row, _ in chosen]
    outputs = {
        a.instance_id: a.output
        for a in Attempt.select(Attempt.instance, Attempt.output).where(
            Attempt.instance.in_(ids) & (Attempt.status == "succeeded") & (Attempt.archived == False)  # noqa: E712
        )
    }
    for row, _ in chosen:
        rules.end_attempt(ch, row, "revoked", error="undone")
    Attempt.update(archived=True, archived_by=event_id).where(
        Attempt.instance.in_(ids) & (Attempt.archived == False)  # noqa: E712
    ).execute()
    return outputs


def _write_undo_notice(row: Row, run: Row, spec: VersionSpec, output, reason: str, actor: str, at) -> None:
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
