"""The run as it was: its state rebuilt from the ledger at an event or a time.

`replay` is pure: it folds a run's ledger events, oldest first, over the state a run starts in
(every instance pending, attempt 0) and gives the run's status and each instance's state, attempt,
worker and progress as they were after the last event. It relies only on what the rules write to
the ledger (`flow45.store.rules`): every move names its from and to state and its actor, an offer
(a move to available or waiting, or an undo to held) starts a fresh attempt, a claim names the
attempt and its worker, a success ends at 100%. Progress reports are not in the ledger, so the
progress of a running attempt is unknown (None) in a replay.

`run_as_of` reads a run's events up to the point asked for, replays them, and returns the run as
a `RunView` (its `as_of` and `as_of_at` say where it stands), so everything that shows a run can
show it as it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from types import SimpleNamespace
from typing import Iterable

from flow45 import states as S
from flow45.clock import parse_utc
from flow45.errors import NotFound
from flow45.models import Event, Run, WorkflowVersion
from flow45.store.queries import get_run, timer_text, waiting_for
from flow45.store.slots import waits_for
from flow45.store.specs import VersionSpec, version_spec
from flow45.views import EventView, RunView


@dataclasses.dataclass
class InstanceAt:
    """One instance as the ledger says it was."""

    state: str = S.PENDING
    attempt: int = 0
    worker: str | None = None
    progress_pct: float | None = None
    progress_known: bool = True  # False while a claimed attempt runs: its progress reports are not in the ledger
    due: dt.datetime | None = None  # a waiting timer's due time
    changed_at: dt.datetime | None = None  # the time of its last move
    offered_at: dt.datetime | None = None  # the current attempt's offer, claim and end
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    error: str | None = None  # the current attempt's error, if it failed
    taken_by: str | None = None  # an available human task: who had taken it
    parked: bool = False  # running, parked under a callback key


@dataclasses.dataclass
class RunAt:
    """A run as the ledger says it was after event `event` (None: before its first event)."""

    status: str | None = None
    started_at: dt.datetime | None = None
    finished_at: dt.datetime | None = None
    event: int | None = None
    at: dt.datetime | None = None
    instances: dict[int, InstanceAt] = dataclasses.field(default_factory=dict)


def _is_offer(e: EventView) -> bool:
    """A move that made a fresh attempt (`rules.offer`): to available or waiting, or an undo to held."""
    return e.to_state in (S.AVAILABLE, S.WAITING) or (e.kind == "undo" and e.to_state == S.HELD)


def _parse_time(text) -> dt.datetime | None:
    if not isinstance(text, str):
        return None
    try:
        return parse_utc(text)
    except ValueError:
        return None


def replay(instance_ids: Iterable[int], events: Iterable[EventView]) -> RunAt:
    """The run after `events` (its own, oldest first), starting from every instance pending."""
    run = RunAt(instances={i: InstanceAt() for i in instance_ids})
    for e in events:
        run.event, run.at = e.id, e.at
        if e.kind == "reoffer" and e.instance in run.instances:
            run.instances[e.instance].offered_at = e.at  # the same attempt offered again: its wait starts again
        detail = e.detail if isinstance(e.detail, dict) else {}
        if e.kind in ("take", "hand_back") and e.instance in run.instances:  # who has a human task: no move
            run.instances[e.instance].taken_by = detail.get("taken_by") if e.kind == "take" else None
        if e.kind == "park" and e.instance in run.instances:  # until the attempt ends
            run.instances[e.instance].parked = True
        if e.to_state is None:
            continue  # an undo's summary, a re-sent offer, a reminder: no state changes with it
        if e.instance is None:
            run.status = e.to_state
            if e.to_state == S.RUNNING and run.started_at is None:
                run.started_at = e.at
            run.finished_at = e.at if e.to_state in S.FINISHED_RUN else None
            continue
        one = run.instances.setdefault(e.instance, InstanceAt())
        if one.state == S.RUNNING and e.to_state != S.RUNNING:
            one.finished_at = e.at
        one.state, one.changed_at, one.parked = e.to_state, e.at, False
        if e.kind in ("fail", "expire") or (e.kind == "overdue" and e.to_state == S.FAILED):
            one.error = detail.get("error") or detail.get("reason")
        if _is_offer(e):
            one.offered_at, one.started_at, one.finished_at, one.error = e.at, None, None, None
            one.attempt += 1
            one.worker, one.progress_pct, one.progress_known, one.taken_by = None, None, True, None
            one.due = _parse_time(detail.get("due")) if e.to_state == S.WAITING else None
        elif e.to_state == S.QUEUED or (e.to_state == S.PENDING and ("queued" in detail or "taken_back" in detail)):
            # Waiting for a slot or its run before, or for its run's start (a run queued again,
            # flow45.store.rules.reopen), or for what follows a failure an operator set right
            # (flow45.store.rules.unfail): no attempt offered.
            one.offered_at, one.worker, one.progress_pct, one.progress_known = None, None, None, True
            if e.kind == "undo":  # its attempts archived: it starts afresh
                one.started_at = one.finished_at = one.error = None
        elif e.kind == "undo" and e.to_state == S.PENDING:  # undone: it starts afresh
            one.worker, one.progress_pct, one.progress_known, one.due = None, None, True, None
            one.started_at = one.finished_at = one.error = None
        elif e.kind == "claim":
            one.worker, one.started_at = e.actor, e.at
            if isinstance(detail.get("attempt"), int):
                one.attempt = detail["attempt"]
            one.progress_known, one.progress_pct = False, None
        elif e.kind == "set_output":  # an operator made the attempt and finished it at once
            one.worker, one.started_at, one.finished_at = e.actor, e.at, e.at
            if isinstance(detail.get("attempt"), int):
                one.attempt = detail["attempt"]
        elif e.kind == "timer" or (e.kind == "overdue" and e.to_state in (S.SUCCEEDED, S.FAILED)):
            one.worker = e.actor  # the scheduler did it: a timer fired, an overdue human task was decided
            one.started_at = one.finished_at = e.at
        if e.to_state == S.SUCCEEDED:  # however it got there (submit, callback, timer, default output)
            one.progress_pct, one.progress_known = 100.0, True
        if e.to_state != S.WAITING:
            one.due = None
    return run


# ---- reading ---------------------------------------------------------------------------------

def run_events(run_id: int, *, upto: int | None = None, until: dt.datetime | None = None) -> Iterable[EventView]:
    """A run's events oldest first, up to event id `upto` or time `until` (inclusive), streamed."""
    query = Event.select().where(Event.run == run_id).order_by(Event.id)
    if upto is not None:
        query = query.where(Event.id <= upto)
    if until is not None:
        query = query.where(Event.at <= until)
    for e in query.iterator():
        yield EventView(id=e.id, at=e.at, team=e.team, run=e.run, instance=e.instance, kind=e.kind,
                        from_state=e.from_state, to_state=e.to_state, actor=e.actor, detail=e.detail)


def run_as_of(run_id: int, *, event: int | None = None, at: dt.datetime | None = None,
              team: str | None = None) -> RunView:
    """The run as it was after ledger event `event`, or at time `at` (naive UTC): one of the two."""
    if (event is None) == (at is None):
        raise ValueError("run_as_of needs an event id or a time, not both")
    now = get_run(run_id, team=team)  # NotFound for a missing run or another team's, in the usual words
    if event is not None:
        mark = Event.select(Event.id, Event.at).where(Event.id == event)
        if team:
            mark = mark.where(Event.team == team)
        found = mark.first()
        if found is None:
            raise NotFound(f"ledger event {event} not found" + (f" for team {team}" if team else ""))
        state = replay([i.id for i in now.instances], run_events(run_id, upto=event))
        where, as_of_at = f"at ledger event {event}", found.at
    else:
        state = replay([i.id for i in now.instances], run_events(run_id, until=at))
        where, as_of_at = f"at {at:%Y-%m-%d %H:%M:%S} UTC", at
    if state.status is None:
        raise NotFound(f"run {run_id} had not been triggered {where} (it was triggered {now.created_at:%Y-%m-%d %H:%M:%S} UTC)")
    return as_view(now, state, event if event is not None else state.event, as_of_at)


def _in_force(run: Run, at: dt.datetime) -> VersionSpec:
    """The version whose limits held for the run at `at`: its workflow's newest deployed by then (a
    deploy's limits hold for every run, flow45.store.slots), or its own."""
    newest = (WorkflowVersion.select(WorkflowVersion.id)
              .where((WorkflowVersion.workflow == run.workflow_id) & (WorkflowVersion.created_at <= at))
              .order_by(WorkflowVersion.version.desc()).first())
    return version_spec(newest.id if newest is not None else run.version_id)


def as_view(now: RunView, state: RunAt, as_of: int | None, as_of_at: dt.datetime | None) -> RunView:
    """`now` (the run as it is) with the replayed state in place of the current one."""
    run = Run.get_by_id(now.id)
    spec = version_spec(run.version_id)
    then = _in_force(run, as_of_at) if as_of_at is not None else spec
    instances = []
    for view in now.instances:
        was = state.instances.get(view.id, InstanceAt())
        same_attempt = was.attempt == view.attempt  # its log is the current attempt's
        instances.append(dataclasses.replace(
            view, state=was.state, attempt=was.attempt, worker=was.worker,
            progress_pct=was.progress_pct if was.progress_known else None, progress_message=None,
            lease_expires_at=None, not_before=was.due, updated_at=was.changed_at or now.created_at, attempts=[],
            offered_at=was.offered_at, started_at=was.started_at, finished_at=was.finished_at, error=was.error,
            timeout_at=None, skip_reason=None, parked=was.state == S.RUNNING and was.parked,
            taken_by=was.taken_by if was.state == S.AVAILABLE else None, due_at=None,
            log_url=view.log_url if same_attempt else None, log_tail=view.log_tail if same_attempt else None,
            queued_for=waits_for(spec, then, view.task, view.function) if was.state == S.QUEUED else None,
        ))
    counts = dict(Counter(i.state for i in instances))
    timers = ", ".join(timer_text(i.task, i.not_before) for i in instances if i.state == S.WAITING and i.not_before)
    shape = SimpleNamespace(status=state.status, version_id=run.version_id)
    return dataclasses.replace(
        now, status=state.status, started_at=state.started_at, finished_at=state.finished_at, counts=counts,
        waiting_for=waiting_for(shape, counts, timers or None, then), instances=instances, as_of=as_of, as_of_at=as_of_at,
        attempts_made=sum(i.attempt for i in instances),
        notes=[note for note in now.notes if as_of is not None and note.event <= as_of],  # none written after it
        current_version=None,  # the workflow's version now says nothing of then
        **({} if state.status == S.CANCELLED else {"cancelled_by": None, "cancel_reason": None}),  # a cancel is final
    )
