"""Undo: an instance and everything downstream of it that has started go back, superseded, never deleted."""

from __future__ import annotations

import datetime as dt

from flow45 import states as S
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import IllegalTransition
from flow45.models import Attempt, Event, Outbox
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


class _DryRun(Exception):
    """Rolls a dry run's transaction back, carrying what the undo did in it."""

    def __init__(self, plan: UndoPlan) -> None:
        super().__init__("dry run")
        self.plan = plan


def _chosen(unit: Unit, instance: Row, hold: bool):
    """The instances the undo moves, each with where it sends it, and the run's slot if it reopens."""
    run = unit.run_of(instance)
    if run.status == S.CANCELLED:
        raise IllegalTransition(f"{rules.describe(instance)}: run {run.id} is cancelled; it cannot be undone")
    if instance.state == S.PENDING:
        raise IllegalTransition(f"{rules.describe(instance)} is pending: it has not started, there is nothing to undo")
    spec, run_instances = unit.spec(run.id), unit.by_run[run.id]
    chosen = _affected(instance, run, run_instances, spec, hold)
    not_done = _not_done_after(run_instances, chosen)
    slot = unit.changes.run_slot(run) if rules.reopens(run, not_done) else None
    if slot is not None and slot.waits is not None and chosen[0][1] != S.HELD:
        chosen[0] = (instance, S.PENDING)  # the run waits queued for a slot: X with it
    for row, becomes in chosen:  # refused before anything moves
        S.check_instance_move(f"task instance {row.id} ({row.task})", row.state, becomes)
    return chosen, slot


def _not_done_after(run_instances: dict[str, Row], chosen: list) -> dict[str, str]:
    """The state of each of the run's instances not done once the undo has moved the chosen ones."""
    return {**rules.not_done_of(run_instances), **{row.task: becomes for row, becomes in chosen}}


def plan_undo(instance_id: int, *, hold: bool = False, team: str | None = None,
              cancel_connected: bool = False) -> UndoPlan:
    """What `undo` would change, changing nothing: the undo itself, in a transaction rolled back, so
    the plan is what it does (a `when` that skips a task again, a slot taken, the run's settle)."""
    return _undo(instance_id, None, "dry run", hold, True, None, team, cancel_connected)


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
    return _undo(instance_id, reason, actor, hold, dry_run, now, team, cancel_connected)


def _undo(instance_id: int, reason: str | None, actor: str, hold: bool, dry_run: bool, now: dt.datetime | None,
          team: str | None, cancel_connected: bool) -> UndoPlan:
    at = to_utc(now)
    try:
        with atomic():
            unit = Unit(at)
            unit.lock_instances([instance_id], teams=[team])
            instance = unit.instance(instance_id, team)
            run, ch = unit.run_of(instance), unit.changes
            spec, run_instances = unit.spec(run.id), unit.by_run[run.id]
            chosen, slot = _chosen(unit, instance, hold)
            was = [(row, row.state, row.state == S.SUCCEEDED and spec.task(row.task).undo == "notify")
                   for row, _ in chosen]
            connected = connected_runs(run.id, team)
            event = record_event(at, run.team, "undo", actor, run=run.id, instance=instance.id)
            archived_outputs = _archive(ch, chosen, event.id)
            for row, _, notify in was:
                if notify:
                    _write_undo_notice(row, run, spec, archived_outputs.get(row.id), reason, actor, at)
            not_done = _not_done_after(run_instances, chosen)
            for row, becomes in reversed(chosen):  # downstream first, so X's offer sees them pending
                if becomes == S.PENDING:
                    rules.move(
                        ch, row, S.PENDING, "undo", actor, {"event": event.id}, token=None, lease_expires_at=None,
                        not_before=None, failures=0, worker=None, progress_pct=None, progress_message=None,
                    )
            rules.reopen(ch, run, run_instances, not_done, "undo", actor, {"event": event.id}, slot)
            x, x_becomes = chosen[0]
            if x_becomes != S.PENDING:  # a pending X was moved with the downstream ones just above
                x.failures = 0
                rules.offer(ch, x, "undo", actor, {"event": event.id, "reason": reason}, target=x_becomes)
            unit.settle(run.id, actor)
            if cancel_connected:
                cancel_connected_runs(unit, connected, actor, f"undo of instance {instance.id}: {reason}")
            unit.flush()
            affected = [AffectedInstance(instance=row.id, task=row.task, state=state, becomes=row.state, notify=notify)
                        for row, state, notify in was]
            plan = UndoPlan(instance=instance.id, run=run.id, reason=reason, hold=hold, dry_run=dry_run,
                            affected=affected, connected=connected, cancel_connected=cancel_connected,
                            run_waits=slot and slot.waits)
            if dry_run:
                raise _DryRun(plan)
            _describe(event, plan)
            return UndoPlan(**{**plan.__dict__, "event": event.id})
    except _DryRun as done:
        return done.plan


def _describe(event, plan: UndoPlan) -> None:
    """The undo's ledger event names what it did, known once the run has settled."""
    detail = {"reason": plan.reason, "hold": plan.hold, "affected": [a.to_json() for a in plan.affected]}
    if plan.connected:
        detail["connected"] = [c.to_json() for c in plan.connected]
        detail["cancel_connected"] = plan.cancel_connected
    Event.update(detail=detail).where(Event.id == event.id).execute()


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
