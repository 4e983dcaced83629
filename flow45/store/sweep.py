"""Time-driven changes, each a function of `now`: lease expiry, retries, timers, and human tasks' reminders and
overdue outcomes that come due."""

from __future__ import annotations

import datetime as dt
import functools
from typing import Any, Callable, Iterable, NamedTuple

from peewee import Field, Tuple, fn

from flow45 import states as S
from flow45.clock import to_utc
from flow45.clock import iso
from flow45.durations import MAX_DURATION, format_duration
from flow45.db import generation
from flow45.models import Event, Run, TaskInstance, Workflow, WorkflowVersion
from flow45.outputs import check_output
from flow45.settings import current_settings
from flow45.store import callback_rules, rules, rules_human, slots, timers
from flow45.store.due import due_in_turns
from flow45.store.specs import current_spec_of, version_spec
from flow45.store.unit import Row, Unit, alone, each_alone, record_event
from flow45.turns import in_turns

SWEEPER = "flow45-scheduler"


def _due(state: str, due_at: Field, at: dt.datetime, limit: int, *, at_or_before: bool = False) -> list:
    """The instances (id, run, team: what `each_alone` takes) in `state` whose `due_at` is before `at`
    (or at it), the teams in turn, oldest due first."""
    came = due_at <= at if at_or_before else due_at < at
    query = (TaskInstance.select(TaskInstance.id, TaskInstance.run, TaskInstance.team)
             .where((TaskInstance.state == state) & came).order_by(due_at))
    shape = f"due {state} {due_at.name} {'<=' if at_or_before else '<'}"
    return due_in_turns(query, TaskInstance.team, limit, shape=(shape, (state, at)))


def expire_leases(now: dt.datetime | None = None, limit: int = 500, timed_out: list[int] | None = None) -> list[int]:
    """Running attempts whose lease (or, parked, callback deadline; or their task's timeout) passed fail as
    expired (counted against retries). `timed_out` gets those of them that reached their task's timeout."""
    at = to_utc(now)
    due = _due(S.RUNNING, TaskInstance.lease_expires_at, at, limit)

    def expire(unit: Unit, instance: Row) -> bool:
        if instance.state != S.RUNNING or instance.lease_expires_at is None or instance.lease_expires_at >= at:
            return False  # progress renewed it, or it finished, since we looked
        task = unit.task(instance)
        if timed_out is not None and callback_rules.ran_out_of_time(instance):
            timed_out.append(instance.id)
        rules.fail(unit.changes, instance, task, callback_rules.deadline_error(instance, task), True, SWEEPER,
                   expired=True)
        return True

    return each_alone(due, at, expire, SWEEPER)


def fail_unclaimed(now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Offers no worker claimed within their task's `start_within` (their deadline kept in
    lease_expires_at while available) fail, not retried: nobody is there to take them."""
    at = to_utc(now)
    due = _due(S.AVAILABLE, TaskInstance.lease_expires_at, at, limit)

    def fail(unit: Unit, instance: Row) -> bool:
        if instance.state != S.AVAILABLE or instance.lease_expires_at is None or instance.lease_expires_at >= at:
            return False  # claimed, held or undone since we looked
        task = unit.task(instance)
        error = (f"no worker claimed it within {format_duration(task.start_within or 0)} of its offer, by "
                 f"{instance.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC: is a worker for {instance.function} running?")
        rules.fail(unit.changes, instance, task, error, False, SWEEPER, expired=True, unclaimed=True)
        return True

    return each_alone(due, at, fail, SWEEPER)


def release_due_retries(now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """retry_wait instances whose time came are offered again."""
    at = to_utc(now)
    due = _due(S.RETRY_WAIT, TaskInstance.not_before, at, limit, at_or_before=True)

    def offer_again(unit: Unit, instance: Row) -> bool:
        if instance.state != S.RETRY_WAIT:
            return False
        rules.offer(unit.changes, instance, "retry", SWEEPER)
        return True

    return each_alone(due, at, offer_again, SWEEPER)


def fire_due_timers(now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Waiting timers whose due time came succeed by themselves; downstream goes on."""
    at = to_utc(now)
    due = _due(S.WAITING, TaskInstance.not_before, at, limit, at_or_before=True)

    def fire(unit: Unit, instance: Row) -> bool:
        if not timers.is_due(instance, at):
            return False  # held, skipped or undone since we looked
        timers.fire(unit.changes, instance, SWEEPER)
        return True

    return each_alone(due, at, fire, SWEEPER)


def human_alarms(now: dt.datetime | None = None, limit: int = 500) -> tuple[list[int], list[int]]:
    """Available human tasks whose reminder or due time came: reminders are sent (ledger events,
    each once) and the overdue outcome applied (once). Returns (reminded, went overdue)."""
    at = to_utc(now)
    due = _due(S.AVAILABLE, TaskInstance.alarm_at, at, limit, at_or_before=True)
    rang: dict[int, tuple[bool, bool]] = {}  # instance -> (reminded, went overdue), by its last try

    def ring(unit: Unit, instance: Row) -> bool:
        if not rules_human.is_due(instance, at):
            return False  # decided, held or undone since we looked
        spec, task = unit.spec(instance.run_id), unit.task(instance)
        sent, was_overdue = instance.reminders_sent or 0, instance.overdue_at

        def checked(output):
            return check_output(spec.types, task.output, output, current_settings().output_max_bytes, rules.describe(instance))

        rules_human.alarm(unit.changes, instance, checked, SWEEPER)
        went_overdue = was_overdue is None and instance.overdue_at is not None
        rang[instance.id] = ((instance.reminders_sent or 0) > sent, went_overdue)
        return True

    changed = each_alone(due, at, ring, SWEEPER)  # a try rolled back is tried again alone, or not counted
    return [i for i in changed if rang[i][0]], [i for i in changed if rang[i][1]]


def sla_missed(now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Unfinished runs past their workflow's `sla` get one `sla_missed` ledger event each."""
    at = to_utc(now)
    due = due_in_turns(Run.select(Run.id, Run.team, Run.version, Run.created_at, Run.sla_due_at,
                                  Workflow.name.alias("workflow_name"))
                       .join(Workflow).where(Run.status.in_(S.OPEN_RUN) & (Run.sla_due_at <= at))
                       .order_by(Run.sla_due_at).objects(), Run.team, limit, shape=("sla due", (*S.OPEN_RUN, at)))

    def record(run) -> bool:
        # Cleared only here, and only once: a second sweep (or scheduler) finds nothing to clear.
        if not Run.update(sla_due_at=None).where((Run.id == run.id) & Run.sla_due_at.is_null(False)).execute():
            return False
        sla = version_spec(run.version_id).workflow.sla
        record_event(at, run.team, "sla_missed", SWEEPER, run=run.id, detail={
            "workflow": run.workflow_name, "sla": format_duration(sla) if sla else None,
            "triggered": iso(run.created_at), "due": iso(run.sla_due_at)})
        return True

    return [run.id for run in due if alone(f"run {run.id}", functools.partial(record, run), "recording its missed SLA")]


def cancel_timed_out(now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Runs running for longer than their version's `timeout` are cancelled, as an operator's cancel
    would be (running attempts revoked, the slot to the next queued run), the reason saying so. A run
    running again (an undo, a retry) counts from then; its time queued does not count."""
    at = to_utc(now)
    cancelled: list[int] = []
    for workflow_id, by_version in _timeouts().items():
        shortest = dt.timedelta(seconds=min(by_version.values()))
        candidates = (Run.select(Run.id, Run.version, Run.started_at)
                      .where((Run.workflow == workflow_id) & (Run.status == S.RUNNING)
                             & (Run.started_at <= at - shortest))
                      .order_by(Run.started_at).limit(limit - len(cancelled)))
        for run in candidates:
            timeout = by_version.get(run.version_id)
            if timeout is None or (at - (_running_since(run.id) or run.started_at)).total_seconds() < timeout:
                continue  # no timeout in its version, or running again since: no lock taken
            time_out = functools.partial(_time_out, run.id, timeout, at)
            if alone(f"run {run.id}", time_out, "cancelling it for its timeout"):
                cancelled.append(run.id)
        if len(cancelled) >= limit:
            break
    return cancelled


def _time_out(run_id: int, timeout: float, at: dt.datetime) -> bool:
    unit = Unit(at)
    unit.lock_runs([run_id])
    run = unit.run(run_id)
    if run.status != S.RUNNING:
        return False  # finished since we looked
    since = _running_since(run_id) or run.started_at
    if (at - since).total_seconds() < timeout:
        return False  # running again since we looked: it counts from then
    reason = (f"timed out: running for {format_duration((at - since).total_seconds())}, longer than its "
              f"workflow's timeout of {format_duration(timeout)}")
    rules.cancel_run(unit.changes, run, unit.by_run[run.id], SWEEPER, reason, timeout=format_duration(timeout))
    unit.flush()
    return True


def _running_since(run_id: int) -> dt.datetime | None:
    """When the run last became running: its start, or its reopening by an undo or a retry."""
    return (Event.select(fn.MAX(Event.at))
            .where((Event.run == run_id) & Event.instance.is_null() & (Event.to_state == S.RUNNING)).scalar())


_seen_timeouts: dict = {"generation": None, "last_version": 0, "by_workflow": {}}


def _timeouts() -> dict[int, dict[int, float]]:
    """workflow id -> {version id: its timeout (seconds)}, of the versions that have one. Versions never
    change, so each tick reads only those deployed since the last one."""
    seen = _seen_timeouts
    if seen["generation"] != generation():
        seen.update(generation=generation(), last_version=0, by_workflow={})
    for version_id, workflow_id, spec in (WorkflowVersion.select(WorkflowVersion.id, WorkflowVersion.workflow,
                                                                 WorkflowVersion.spec)
                                          .where(WorkflowVersion.id > seen["last_version"])
                                          .order_by(WorkflowVersion.id).tuples()):
        if (timeout := spec["workflow"].get("timeout")) is not None:  # capped as deploy caps durations
            seen["by_workflow"].setdefault(workflow_id, {})[version_id] = min(float(timeout), MAX_DURATION)
        seen["last_version"] = version_id
    return seen["by_workflow"]


def offer_queued(now: dt.datetime | None = None, limit: int = 500, *, tasks: Iterable[tuple] | None = None,
                 written: list | None = None) -> list[int]:
    """Offer queued instances where their limits have free slots, the most urgent, then the longest
    waiting, first; returns those offered. Each function with instances queued is looked at, the teams
    in turn: one task's long queue keeps no other task's, or team's, waiting. `tasks`: only the
    functions of these (workflow, team, function, task); `written`: see `each_alone`."""
    at = to_utc(now)
    waiting = (TaskInstance.select(Run.workflow.alias("workflow_id"), TaskInstance.team, TaskInstance.function,
                                   TaskInstance.task)
               .join(Run, on=(Run.id == TaskInstance.run)).where(TaskInstance.state == S.QUEUED).distinct())
    if tasks is None:
        slots.take_freed()  # every function is looked at: none is left for a hand-on
    else:
        pairs = sorted({(team, function) for _, team, function, _ in tasks})
        if not pairs:
            return []
        waiting = waiting.where(Tuple(TaskInstance.team, TaskInstance.function).in_(pairs))
    by_function: dict[tuple[str, str], list[_Task]] = {}
    for row in waiting.tuples():
        group = _Task(*row)
        by_function.setdefault((group.team, group.function), []).append(group)
    offered: list[int] = []
    for (team, function), groups in in_turns(list(by_function.items()), lambda item: item[0][0]):
        if len(offered) >= limit:
            break
        offered += _offer_function(team, function, groups, at, limit - len(offered), written)
    return offered


def _offer_function(team: str, function: str, groups: list[_Task], at: dt.datetime, most: int,
                    written: list | None) -> list[int]:
    """The function's queued instances that have a slot of their task and of the function, in turn."""
    candidates, in_force = [], {}  # in_force: version -> its workflow's current version, whose limits hold
    for group in groups:
        queued = (TaskInstance.select(TaskInstance.id, TaskInstance.run.alias("run_id"), TaskInstance.priority,
                                      TaskInstance.updated_at, Run.version.alias("version_id"))
                  .join(Run, on=(Run.id == TaskInstance.run))
                  .where((TaskInstance.state == S.QUEUED) & (TaskInstance.team == team)
                         & (TaskInstance.function == function) & (TaskInstance.task == group.task)
                         & (Run.workflow == group.workflow_id)))
        versions = [v for (v,) in queued.select(Run.version).distinct().tuples()]
        if past := [v for v in versions if version_spec(v).task(group.task).depends_on_past]:
            # Only those whose run before is done: any of them, not the earliest only (an operator may
            # have skipped one in the middle of a queue that waits for a failed night).
            queued = queued.where(Run.version.not_in(past) | slots.past_done(group.workflow_id, group.task, Run))
        rows = list(queued.order_by(TaskInstance.priority.desc(), TaskInstance.updated_at, TaskInstance.id)
                    .limit(most).namedtuples())
        if not rows:
            continue
        current = current_spec_of(group.workflow_id)  # its limits are in force (flow45.store.slots.task_limit)
        in_force.update((row.version_id, current) for row in rows)
        of_task = slots.task_limit(version_spec(rows[0].version_id), current, group.task)
        free = len(rows) if of_task is None else of_task - slots.active(team, function, workflow=group.workflow_id,
                                                                        task=group.task)
        candidates += rows[:max(free, 0)]
    candidates.sort(key=lambda row: (-row.priority, row.updated_at, row.id))
    if candidates:
        first = candidates[0].version_id
        if (of_function := slots.function_limit(version_spec(first), in_force[first], function)) is not None:
            candidates = candidates[:max(of_function - slots.active(team, function), 0)]
    # Counted again under the locks as each is offered.
    return each_alone(candidates[:most], at, _offer_if_free, SWEEPER, written=written) if candidates else []


class _Task(NamedTuple):
    workflow_id: int
    team: str
    function: str
    task: str


def hand_on(now: dt.datetime | None = None, written: list | None = None) -> list[int]:
    """After a commit that freed slots of tasks with a `max_running` (flow45.store.slots.take_freed),
    in a transaction of its own: offer those tasks' queued instances now, rather than at the next
    tick. Returns those offered."""
    tasks = slots.take_freed()
    return offer_queued(now, tasks=sorted(tasks), written=written) if tasks else []


def handing_on(change: Callable[..., Any]) -> Callable[..., Any]:
    """`change` (an operator's, or a callback's, given `now`), then the slots it freed handed on as a
    worker's message hands them on (`hand_on`): a cancel, skip or hold lets what waits queued go at once,
    not at the scheduler's next tick."""

    @functools.wraps(change)
    def changed(*args: Any, **kwargs: Any) -> Any:
        result = change(*args, **kwargs)
        hand_on(kwargs.get("now"))
        return result

    return changed


def _offer_if_free(unit: Unit, instance: Row) -> bool:
    if instance.state != S.QUEUED or slots.why_queued(unit, instance) is not None:
        return False  # held, undone or cancelled since we looked, or it must wait still
    rules.offer(unit.changes, instance, "slot", SWEEPER)
    return True
