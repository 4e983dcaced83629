"""Pausing a workflow: its schedule makes no runs, and triggers meanwhile wait as `queued` or are
refused (the operator chooses). Runs already going go on. Resuming lets the queued runs take the
free slots, and the scheduler's next tick applies the schedule's catch-up policy to the ticks
missed while paused (its cursor stood still)."""

from __future__ import annotations

import datetime as dt

from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import Flow45Error, IllegalTransition
from flow45.store.deploy import find_workflow
from flow45.store.newrun import QUEUE, REFUSE
from flow45.store.rules import said
from flow45.store.unit import Unit, lock_workflow, record_event


def pause(team: str, workflow: str, *, actor: str, triggers: str = QUEUE, reason: str | None = None,
          now: dt.datetime | None = None) -> None:
    if triggers not in (QUEUE, REFUSE):
        raise Flow45Error(f"triggers while paused: expected queue or refuse, got {triggers!r}")
    at = to_utc(now)
    with atomic():
        row = lock_workflow(find_workflow(team, workflow).id)
        if row.paused_at is not None and row.paused_triggers == triggers:
            raise IllegalTransition(f"workflow {team}/{workflow} is paused already (triggers {row.paused_triggers})")
        row.paused_at, row.paused_triggers = row.paused_at or at, triggers
        row.save(only=[type(row).paused_at, type(row).paused_triggers])
        record_event(at, team, "pause", actor,
                     detail={"workflow": workflow, "triggers": triggers, "reason": said(reason)})


def resume(team: str, workflow: str, *, actor: str, now: dt.datetime | None = None) -> None:
    at = to_utc(now)
    with atomic():
        row = lock_workflow(find_workflow(team, workflow).id)
        if row.paused_at is None:
            raise IllegalTransition(f"workflow {team}/{workflow} is not paused")
        row.paused_at, row.paused_triggers = None, None
        row.save(only=[type(row).paused_at, type(row).paused_triggers])
        record_event(at, team, "resume", actor, detail={"workflow": workflow})
        unit = Unit(at)
        unit.start_queued(row.id, actor, awaited_here=True)  # what began to wait while paused, too
        unit.flush()
