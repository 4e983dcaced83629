"""Reads: what the CLI, the TUI and the bridge show. Nothing here writes."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections import Counter
from typing import Sequence

import peewee as pw

from flow45 import states as S
from flow45.errors import NotFound
from flow45.models import Attempt, Event, Run, TaskInstance, Workflow, WorkflowVersion
from flow45.schedule import window_text
from flow45.store import rules_human, schedule_runs
from flow45.store.ledger_time import in_window
from flow45.store.slots import queued_by, waits_for
from flow45.store.specs import CurrentSpecs, VersionSpec, current_spec, version_spec
from flow45.views import (AttemptView, EventView, InputLink, InstanceBrief, InstanceView, NoteView, OutputUse,
                          RunInstances, RunView, WorkflowView)


def list_workflows(team: str | None = None) -> list[WorkflowView]:
    query = (
        WorkflowVersion.select(WorkflowVersion, Workflow)
        .join(Workflow, on=(WorkflowVersion.workflow == Workflow.id))
        .where((WorkflowVersion.version == Workflow.current_version) & Workflow.retired_at.is_null())
        .order_by(Workflow.team, Workflow.name)
    )
    if team:
        query = query.where(Workflow.team == team)
    rows = list(query)
    running = [(row.workflow.id, row.id) for row in rows if row.workflow.paused_at is None]
    next_runs = schedule_runs.next_ticks(running)
    latest = _latest_runs([row.workflow.id for row in rows])
    views = []
    for row in rows:
        spec = version_spec(row.id)
        schedule = spec.workflow.schedule
        last_run, last_status, last_at = latest.get(row.workflow.id, (None, None, None))
        views.append(
            WorkflowView(
                team=row.workflow.team, name=row.workflow.name, version=row.version,
                description=spec.workflow.description, tasks=len(spec.workflow.tasks),
                schedule=_schedule_text(schedule),
                updated_at=row.workflow.updated_at,
                paused=row.workflow.paused_triggers if row.workflow.paused_at is not None else None,
                next_run=next_runs.get(row.workflow.id),
                schedule_ended=bool(schedule and schedule.end and row.workflow.id in next_runs
                                    and next_runs[row.workflow.id] is None),
                last_run=last_run, last_run_status=last_status, last_run_at=last_at,
            )
        )
    return views


def _latest_runs(workflow_ids: list[int]) -> dict[int, tuple[int, str, dt.datetime]]:
    """workflow id -> (id, status, created_at) of its latest run, however many runs the store keeps. One
    query each, the workflow a constant: over a correlated subquery PostgreSQL took the latest run by id
    and filtered, through every later run of the other workflows for one that had not run for long."""
    latest = {}
    for workflow_id in workflow_ids:
        row = (Run.select(Run.id, Run.status, Run.created_at).where(Run.workflow == workflow_id)
               .order_by(Run.id.desc()).limit(1).tuples().first())
        if row is not None:
            latest[workflow_id] = row
    return latest


def _schedule_text(schedule) -> str | None:
    """`30 2 * * * UTC`, with its window as written: `from 2027-01-01 until 2027-01-31`."""
    if schedule is None:
        return None
    return " ".join(part for part in (schedule.cron, schedule.timezone, window_text(schedule.start, schedule.end))
                    if part)


def _counts(run_ids: list[int]) -> dict[int, dict[str, int]]:
    counts: dict[int, dict[str, int]] = {run_id: {} for run_id in run_ids}
    if run_ids:
        rows = (
            TaskInstance.select(TaskInstance.run, TaskInstance.state, pw.fn.COUNT(TaskInstance.id).alias("n"))
            .where(TaskInstance.run.in_(run_ids)).group_by(TaskInstance.run, TaskInstance.state)
            .order_by(TaskInstance.run, TaskInstance.state).tuples()  # the same JSON every time, on both databases
        )
        for run_id, state, n in rows:
            counts[run_id][state] = n
    return counts


def _minute(value) -> str:
    whole = value.second == 0 and value.microsecond == 0
    return value.strftime("%Y-%m-%d %H:%M" if whole else "%Y-%m-%d %H:%M:%S") + "Z"


def _waiting_timers(run_ids: list[int]) -> dict[int, str]:
    """run -> "publish (timer, due 2026-03-02 06:00Z)" for runs with a waiting timer, a parked
    attempt ("render (callback, deadline ...)") or a human task waiting for a person ("approve (ann,
    due by 2026-03-02 06:00Z)", shown as "due in 2h" by `rules_human.relative_due`): what no worker
    is busy with."""
    found: dict[int, list[str]] = {}
    if run_ids:
        rows = (
            TaskInstance.select(TaskInstance.run, TaskInstance.task, TaskInstance.state, TaskInstance.not_before,
                                TaskInstance.lease_expires_at, TaskInstance.taken_by, TaskInstance.due_at,
                                TaskInstance.overdue_at, Run.version, Run.workflow)
            .join(Run, on=(TaskInstance.run == Run.id))
            .where(TaskInstance.run.in_(run_ids) & ((TaskInstance.state == S.WAITING)
                   | ((TaskInstance.state == S.RUNNING) & TaskInstance.callback_key.is_null(False))
                   | ((TaskInstance.state == S.AVAILABLE) & (TaskInstance.human == True))))  # noqa: E712
            .order_by(TaskInstance.id).tuples()
        )
        current = CurrentSpecs()
        for run_id, task, state, due, deadline, taken_by, due_at, overdue_at, version, workflow in rows:
            if state == S.WAITING:
                text = timer_text(task, due)
            elif state == S.AVAILABLE:
                assignment = rules_human.run_assignments(version_spec(version), current[workflow]).get(task)
                escalated = overdue_at is not None and assignment is not None and bool(assignment.escalated_to)
                text = rules_human.waiting_text(task, taken_by, due_at, assignment, escalated)
            else:
                text = f"{task} (callback, " + (f"deadline {_minute(deadline)})" if deadline else "no deadline)")
            found.setdefault(run_id, []).append(text)
    return {run_id: ", ".join(texts) for run_id, texts in found.items()}


def timer_text(task: str, due) -> str:
    return f"{task} (timer, due {_minute(due)})"


def waiting_for(run, counts: dict[str, int], timers: str | None, in_force: VersionSpec,
                paused: bool = False) -> str | None:
    """What the run waits for, if anything; `in_force`: the version whose limits hold for it; `paused`:
    its workflow is (its queued runs wait for the resume, whatever the slots)."""
    if run.status == S.QUEUED:
        return "its workflow's resume (paused)" if paused else \
            f"a free slot (max_active_runs: {in_force.workflow.max_active_runs})"
    if run.status == S.RUNNING and timers:
        return timers
    if run.status == S.RUNNING and counts.get(S.QUEUED):
        return f"{counts[S.QUEUED]} instance(s) queued ({queued_by(version_spec(run.version_id), in_force)})"
    if run.status == S.RUNNING and counts.get(S.HELD):
        return f"{counts[S.HELD]} held instance(s)"
    if run.status == S.RUNNING and counts.get(S.RETRY_WAIT):
        return f"{counts[S.RETRY_WAIT]} instance(s) waiting to retry"
    return None


def _run_view(run: Run, workflow_name: str, counts: dict[str, int], instances=(), timers: str | None = None) -> RunView:
    return RunView(
        id=run.id, team=run.team, workflow=workflow_name, version=version_spec(run.version_id).number,
        status=run.status, trigger=run.trigger, triggered_by=run.triggered_by, params=run.params,
        logical_time=run.logical_time, created_at=run.created_at, started_at=run.started_at,
        finished_at=run.finished_at, counts=counts, instances=list(instances),
        waiting_for=waiting_for(run, counts, timers, current_spec(run.workflow),  # its limit: the current one's
                                paused=run.workflow.paused_at is not None),
        key=run.key,
    )


def list_runs(
    team: str | None = None, workflow: str | None = None, status: str | None = None,
    limit: int = 50, before: int | None = None, ids: Sequence[int] | None = None,
) -> list[RunView]:
    """Newest first; `before` pages back from a run id; `ids`: only these runs."""
    query = (Run.select(Run, Workflow.id, Workflow.name, Workflow.current_version, Workflow.paused_at).join(Workflow)
             .order_by(Run.id.desc()).limit(limit))
    if team:
        query = query.where(Run.team == team)
    if workflow:
        query = query.where(Workflow.name == workflow)
    if status:
        query = query.where(Run.status == status)
    if before:
        query = query.where(Run.id < before)
    if ids is not None:
        query = query.where(Run.id.in_(list(ids)))
    runs = list(query)
    counts = _counts([r.id for r in runs])
    timers = _waiting_timers([r.id for r in runs if counts[r.id].get(S.WAITING) or counts[r.id].get(S.RUNNING)
                              or counts[r.id].get(S.AVAILABLE)])
    made = _attempts_made([r.id for r in runs])
    return [dataclasses.replace(_run_view(r, r.workflow.name, counts[r.id], timers=timers.get(r.id)),
                                attempts_made=made.get(r.id, 0)) for r in runs]


def run_instances(runs: Sequence[Run], task: str | None = None, state: str | None = None) -> list[RunInstances]:
    """These runs (with their id, status and version), in the order given, each with its instances of
    `task` in `state` (any, for None) in the run's order: one read for them all."""
    if not runs:
        return []
    query = TaskInstance.select(TaskInstance.id, TaskInstance.run, TaskInstance.task, TaskInstance.state).where(
        TaskInstance.run.in_([r.id for r in runs]))
    if task is not None:
        query = query.where(TaskInstance.task == task)
    if state is not None:
        query = query.where(TaskInstance.state == state)
    chosen: dict[int, dict[str, InstanceBrief]] = {}
    for instance, run, name, in_state in query.tuples():
        chosen.setdefault(run, {})[name] = InstanceBrief(instance, name, in_state)
    found = []
    for r in runs:
        by_task = chosen.get(r.id, {})
        found.append(RunInstances(r.id, r.status, [by_task[n] for n in version_spec(r.version_id).in_order(by_task)]))
    return found


def _attempt_view(a: Attempt, undone: frozenset = frozenset()) -> AttemptView:
    """`undone`: the (instance, number) of the upstream attempts in its lineage that an undo superseded."""
    lineage = [InputLink(param, link["task"], link["instance"], link["attempt"],
                         (link["instance"], link["attempt"]) in undone) for param, link in (a.lineage or {}).items()]
    return AttemptView(
        number=a.number, status=a.status, worker=a.worker, claimed_at=a.claimed_at, finished_at=a.finished_at,
        output=a.output, error=a.error, archived=a.archived, comment=a.comment, lineage=lineage, log_url=a.log_url,
        log_tail=a.log_tail, checkpoint=a.checkpoint,
    )


def _undone_upstream(attempts) -> frozenset:
    """Of the upstream attempts these attempts were built on, the (instance, number) of those archived
    by an undo: one read."""
    wanted = {(link["instance"], link["attempt"]) for a in attempts for link in (a.lineage or {}).values()
              if link["attempt"] is not None}
    if not wanted:
        return frozenset()
    rows = (Attempt.select(Attempt.instance, Attempt.number)
            .where(Attempt.instance.in_(sorted({i for i, _ in wanted})) & (Attempt.archived == True))  # noqa: E712
            .tuples())
    return frozenset(row for row in rows if row in wanted)


def _instance_view(i: TaskInstance, upstream: list[str], attempts=(), current: Attempt | None = None,
                   undone: frozenset = frozenset()) -> InstanceView:
    """`current`: the instance's current attempt, if it has been claimed (found in `attempts` if not given);
    `undone`: see `_attempt_view`."""
    if current is None:
        current = next((a for a in attempts if a.number == i.attempt and not a.archived), None)
    return InstanceView(
        offered_at=i.offered_at, started_at=current.claimed_at if current else None,
        finished_at=current.finished_at if current else None, error=current.error if current else None,
        log_url=current.log_url if current else None, log_tail=current.log_tail if current else None,
        id=i.id, run=i.run_id, team=i.team, task=i.task, function=i.function, state=i.state, attempt=i.attempt,
        human=i.human, priority=i.priority, worker=i.worker, progress_pct=i.progress_pct,
        progress_message=i.progress_message, lease_expires_at=i.lease_expires_at, not_before=i.not_before,
        upstream=upstream, updated_at=i.updated_at, attempts=[_attempt_view(a, undone) for a in attempts],
        parked=i.callback_key is not None, timeout_at=i.timeout_at if i.state == S.RUNNING else None,
        taken_by=i.taken_by if i.state == S.AVAILABLE else None,
        due_at=i.due_at if i.state == S.AVAILABLE else None,
        overdue_at=i.overdue_at if i.state == S.AVAILABLE else None,
    )


def get_run(run_id: int, team: str | None = None, with_attempts: bool = False) -> RunView:
    run = (Run.select(Run, Workflow.id, Workflow.name, Workflow.current_version, Workflow.paused_at).join(Workflow)
           .where(Run.id == run_id).first())
    if run is None or (team and run.team != team):
        raise NotFound(f"run {run_id} not found" + (f" for team {team}" if team else ""))
    spec = version_spec(run.version_id)
    rows = {i.task: i for i in TaskInstance.select().where(TaskInstance.run == run_id)}
    attempts: dict[int, list[Attempt]] = {}
    if with_attempts:
        for a in Attempt.select().where(Attempt.instance.in_([i.id for i in rows.values()])).order_by(Attempt.id):
            attempts.setdefault(a.instance_id, []).append(a)
    current = {} if with_attempts else _current_attempts(run_id)
    undone = _undone_upstream([a for listed in attempts.values() for a in listed])
    instances = [
        _instance_view(rows[name], spec.upstream(name), attempts.get(rows[name].id, ()), current.get(rows[name].id),
                       undone)
        for name in spec.order
    ]
    why = _skip_reasons([i.id for i in instances if i.state == S.SKIPPED])
    current = current_spec(run.workflow) if any(i.state == S.QUEUED for i in instances) else None
    instances = [dataclasses.replace(i, skip_reason=why[i.id]) if i.id in why
                 else dataclasses.replace(i, queued_for=waits_for(spec, current, i.task, i.function)) if i.state == S.QUEUED
                 else i
                 for i in instances]
    counts = dict(Counter(i.state for i in instances))
    timers = _waiting_timers([run.id] if counts.get(S.WAITING) or counts.get(S.RUNNING) or counts.get(S.AVAILABLE) else [])
    view = _run_view(run, run.workflow.name, counts, instances, timers.get(run.id))
    return dataclasses.replace(view, attempts_made=sum(i.attempt for i in instances), notes=_notes(run.id),
                               current_version=run.workflow.current_version, **_cancelled(run))


def _skip_reasons(instance_ids: list[int]) -> dict[int, str]:
    """Why each of these skipped instances was skipped: its last `skip` event's reason. One read."""
    if not instance_ids:
        return {}
    rows = (Event.select(Event.instance, Event.detail)
            .where(Event.instance.in_(instance_ids) & (Event.kind == "skip")).order_by(Event.id))
    return {e.instance: (e.detail or {}).get("reason") or "" for e in rows}


def _notes(run_id: int) -> list[NoteView]:
    """Operators' notes on the run and its tasks, oldest first (`flow45 note`)."""
    rows = (Event.select(Event.id, Event.at, Event.actor, Event.detail)
            .where((Event.run == run_id) & (Event.kind == "note")).order_by(Event.id))
    return [_note_view(e) for e in rows]


def _note_view(e: Event) -> NoteView:
    return NoteView(at=e.at, actor=e.actor, text=(e.detail or {}).get("text", ""), event=e.id,
                    task=(e.detail or {}).get("task"))


def _cancelled(run) -> dict[str, str | None]:
    """Who cancelled a cancelled run, and why, from its ledger."""
    if run.status != S.CANCELLED:
        return {}
    event = (Event.select(Event.actor, Event.detail)
             .where((Event.run == run.id) & Event.instance.is_null() & (Event.to_state == S.CANCELLED))
             .order_by(Event.id.desc()).first())
    if event is None:  # its ledger pruned
        return {}
    reason = event.detail.get("reason") if isinstance(event.detail, dict) else None
    return {"cancelled_by": event.actor, "cancel_reason": reason}


def _current_attempts(run_id: int) -> dict[int, Attempt]:
    """instance -> its current attempt (claim and end times, error and log only), for the instances of a run that
    have one."""
    query = (
        Attempt.select(Attempt.instance, Attempt.claimed_at, Attempt.finished_at, Attempt.error, Attempt.log_url,
                       Attempt.log_tail)
        .join(TaskInstance, on=(Attempt.instance == TaskInstance.id))
        .where((TaskInstance.run == run_id) & (Attempt.number == TaskInstance.attempt) & (Attempt.archived == False))  # noqa: E712
    )
    return {a.instance_id: a for a in query}


def _attempts_made(run_ids: list[int]) -> dict[int, int]:
    if not run_ids:
        return {}
    rows = (TaskInstance.select(TaskInstance.run, pw.fn.SUM(TaskInstance.attempt))
            .where(TaskInstance.run.in_(run_ids)).group_by(TaskInstance.run).tuples())
    return {run_id: int(total or 0) for run_id, total in rows}


def get_instance(instance_id: int, team: str | None = None) -> InstanceView:
    view = get_instances([instance_id]).get(instance_id)
    if view is None or (team and view.team != team):
        raise NotFound(f"task instance {instance_id} not found" + (f" for team {team}" if team else ""))
    return view


def get_instances(instance_ids: Sequence[int]) -> dict[int, InstanceView]:
    """id -> the view of each of these instances that exists, as `get_instance` shows it: a few reads
    for all of them, however many."""
    rows = list(TaskInstance.select().where(TaskInstance.id.in_(list(instance_ids))).order_by(TaskInstance.id))
    if not rows:
        return {}
    runs = {run_id: (version_id, workflow_id) for run_id, version_id, workflow_id in
            Run.select(Run.id, Run.version, Run.workflow).where(Run.id.in_(sorted({r.run_id for r in rows}))).tuples()}
    rows = [row for row in rows if row.run_id in runs]  # its run pruned meanwhile
    specs = {row.id: version_spec(runs[row.run_id][0]) for row in rows}
    attempts: dict[int, list[Attempt]] = {}
    for a in Attempt.select().where(Attempt.instance.in_([row.id for row in rows])).order_by(Attempt.id):
        attempts.setdefault(a.instance_id, []).append(a)
    undone = _undone_upstream([a for listed in attempts.values() for a in listed])
    uses = _used_by(rows, specs)
    notes = _instance_notes([row.id for row in rows])
    why = _skip_reasons([row.id for row in rows if row.state == S.SKIPPED])
    current = CurrentSpecs()
    views = {}
    for row in rows:
        spec, used = specs[row.id], uses.get(row.id, {})
        view = _instance_view(row, spec.upstream(row.task), attempts.get(row.id, ()), undone=undone)
        views[row.id] = dataclasses.replace(
            view, attempts=[dataclasses.replace(a, used_by=used.get(a.number, [])) for a in view.attempts],
            notes=notes.get(row.id, []), skip_reason=why.get(row.id) if row.state == S.SKIPPED else None,
            queued_for=waits_for(spec, current[runs[row.run_id][1]], row.task, row.function)
            if row.state == S.QUEUED else None)
    return views


def _instance_notes(instance_ids: list[int]) -> dict[int, list[NoteView]]:
    """instance -> operators' notes on it, oldest first: one read."""
    rows = (Event.select(Event.id, Event.at, Event.actor, Event.detail, Event.instance)
            .where(Event.instance.in_(instance_ids) & (Event.kind == "note")).order_by(Event.id))
    notes: dict[int, list[NoteView]] = {}
    for e in rows:
        notes.setdefault(e.instance, []).append(_note_view(e))
    return notes


def _used_by(rows: list[TaskInstance], specs: dict[int, VersionSpec]) -> dict[int, dict[int, list[OutputUse]]]:
    """instance -> attempt number -> the attempts of the instances of its run that take its output
    which received it: one read for all of these instances (`specs`: instance -> its run's spec)."""
    takers = {row.id: {name for name in specs[row.id].order if row.task in specs[row.id].task(name).inputs.values()}
              for row in rows}
    taken = {row.id: row.run_id for row in rows if takers[row.id]}
    if not taken:
        return {}
    query = (Attempt.select(Attempt, TaskInstance.id, TaskInstance.task, TaskInstance.run).join(TaskInstance)
             .where(TaskInstance.run.in_(sorted(set(taken.values())))
                    & TaskInstance.task.in_(sorted(set().union(*takers.values()))) & Attempt.lineage.is_null(False))
             .order_by(Attempt.id))
    uses: dict[int, dict[int, list[OutputUse]]] = {}
    for a in query:
        for param, link in (a.lineage or {}).items():
            used = link["instance"]
            if (link["attempt"] is not None and taken.get(used) == a.instance.run_id
                    and a.instance.task in takers[used]):
                uses.setdefault(used, {}).setdefault(link["attempt"], []).append(
                    OutputUse(a.instance.task, a.instance_id, a.number, param, a.archived))
    return uses


def list_events(
    after: int = 0, *, team: str | None = None, run: int | None = None, instance: int | None = None,
    limit: int = 200, ids: list[int] | None = None, since: dt.datetime | None = None, until: dt.datetime | None = None,
    newest: bool = False, before: int | None = None,
) -> list[EventView]:
    """Ledger events with id > `after`, oldest first: read incrementally by id (`ids`: only those;
    `since`, `until`: only those at or after, and before, these times, naive UTC). `newest`: the
    newest `limit` of them instead (`before`: with a smaller id), still oldest first."""
    # Plain tuples, not models: a page of 500 events is read for every dashboard's live update.
    query = (Event.select(Event.id, Event.at, Event.team, Event.run, Event.instance, Event.kind, Event.from_state,
                          Event.to_state, Event.actor, Event.detail)
             .where(Event.id > after).order_by(Event.id.desc() if newest else Event.id).limit(limit))
    if before is not None:
        query = query.where(Event.id < before)
    if ids is not None:
        query = query.where(Event.id.in_(ids))
    if team:
        query = query.where(Event.team == team)
    if run is not None:
        query = query.where(Event.run == run)
    if instance is not None:
        query = query.where(Event.instance == instance)
    events = list(in_window(query, since, until).tuples())
    if newest:
        events.reverse()
    ids = sorted({e[4] for e in events if e[4] is not None})
    tasks = dict(TaskInstance.select(TaskInstance.id, TaskInstance.task).where(TaskInstance.id.in_(ids)).tuples()) if ids else {}
    return [EventView(*e, task=tasks.get(e[4])) for e in events]


def deployed_functions(team: str | None = None) -> list[tuple[str, str, bool]]:
    """(team, function, has an `undo: notify` task) over every workflow's current version (of `team`)."""
    found: dict[tuple[str, str], bool] = {}
    query = (
        WorkflowVersion.select(WorkflowVersion.id)
        .join(Workflow, on=(WorkflowVersion.workflow == Workflow.id))
        .where(WorkflowVersion.version == Workflow.current_version)
    )
    if team is not None:
        query = query.where(Workflow.team == team)
    for row in query:
        spec = version_spec(row.id)
        for task in spec.workflow.tasks.values():
            if task.function is None:  # a timer
                continue
            key = (spec.team, task.function)
            found[key] = found.get(key, False) or task.undo == "notify"
    return [(team, function, notify) for (team, function), notify in sorted(found.items())]
