"""The scheduler's writes: runs at their cron ticks, and offers sent again when they may be lost.

Each is a function of `now`, one transaction per workflow or instance, with its ledger events.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import time

import peewee as pw

from flow45 import states as S
from flow45.clock import iso, to_utc
from flow45.db import atomic, dialect, generation
from flow45.errors import InvalidParams, LimitReached, RunExists
from flow45.models import Outbox, Run, ScheduleCursor, TaskInstance, Workflow, WorkflowVersion
from flow45.schedule import BadSchedule, DueTicks, cron_schedule, due_ticks, window
from flow45.store import reused_sql, rules
from flow45.store.due import due_in_turns
from flow45.store.newrun import validate_params
from flow45.store.runs import trigger
from flow45.store.specs import version_spec
from flow45.store.unit import Row, Unit, each_alone, lock_workflow, record_event
from flow45.turns import in_turns
from flow45.views import View

log = logging.getLogger("flow45.scheduler")
SCHEDULER = "flow45-scheduler"
# The interval between offers of the same attempt doubles from the quiet period up to this many times it.
REOFFER_BACKOFF_CAP = 10
# Task instances one workflow's catch-up makes in a tick, in its one transaction: 100 missed ticks of a
# workflow of 5,000 tasks would be half a million, for a minute, with every team's sweeps behind them.
INSTANCES_PER_TICK = 10_000


@dataclasses.dataclass(frozen=True)
class ScheduledRun(View):
    """A run the scheduler created for a tick."""

    team: str
    workflow: str
    version: int
    logical_time: dt.datetime
    run: int
    status: str  # running | queued


@dataclasses.dataclass(frozen=True)
class SkippedTicks(View):
    """Ticks the scheduler passed over without a run, and why (also in the ledger as `schedule_skip`)."""

    team: str
    workflow: str
    count: int  # counted up to flow45.schedule.SKIP_COUNT_CAP
    first: dt.datetime
    last: dt.datetime
    reason: str


@dataclasses.dataclass(frozen=True)
class _Scheduled:
    workflow_id: int
    team: str
    name: str
    version_id: int


def scheduled_workflows() -> list[_Scheduled]:
    """Every workflow, neither paused nor retired, whose current version has a schedule."""
    rows = reused_sql.rows("scheduled workflows", Workflow, lambda: (
        Workflow.select(Workflow.id, Workflow.team, Workflow.name, WorkflowVersion.id.alias("version_id"))
        .join(
            WorkflowVersion,
            on=(WorkflowVersion.workflow == Workflow.id) & (WorkflowVersion.version == Workflow.current_version),
        )
        # paused: its cursor stands still until the resume; retired: no schedule
        .where(Workflow.paused_at.is_null() & Workflow.retired_at.is_null())
        .order_by(Workflow.id)
    ), dicts=True)  # every tick: its SQL made once
    found = []
    for row in rows:
        if version_spec(row["version_id"]).workflow.schedule is not None:
            found.append(_Scheduled(row["id"], row["team"], row["name"], row["version_id"]))
    return found


def _schedule_key(document: dict) -> tuple | None:
    schedule = document["workflow"].get("schedule")
    return None if schedule is None else (schedule["cron"], schedule.get("timezone", "UTC"))


_starts: dict[tuple[int, int], dt.datetime] = {}


def schedule_start(version_id: int) -> dt.datetime:
    """When the version's schedule began: the deploy of the oldest version, in the unbroken line of
    versions ending with this one, that has the same cron and timezone. Ticks count from there, so a
    new workflow does not backfill and a changed cron starts at its redeploy. Versions are immutable,
    so the answer is cached."""
    key = (generation(), version_id)
    if key not in _starts:
        current = WorkflowVersion.get_by_id(version_id)
        wanted = _schedule_key(current.spec)
        start = current.created_at
        older = (
            WorkflowVersion.select(WorkflowVersion.spec, WorkflowVersion.created_at)
            .where((WorkflowVersion.workflow == current.workflow_id) & (WorkflowVersion.version < current.version))
            .order_by(WorkflowVersion.version.desc())
        )
        for version in older:
            if _schedule_key(version.spec) != wanted:
                break
            start = version.created_at
        if len(_starts) > 1024:
            _starts.clear()
        _starts[key] = start
    return _starts[key]


def next_ticks(workflows: list[tuple[int, int]]) -> dict[int, dt.datetime | None]:
    """For (workflow id, current version id) pairs, each schedule's next tick not yet dealt with:
    the one the scheduler makes a run for (or passes over, by its catchup policy) next. In the past,
    no scheduler has dealt with it yet. None: no schedule, or one refused (stored before deploy
    refused it)."""
    ids = [workflow_id for workflow_id, _ in workflows]
    cursors = dict(ScheduleCursor.select(ScheduleCursor.workflow, ScheduleCursor.last_tick)
                   .where(ScheduleCursor.workflow.in_(ids)).tuples()) if ids else {}
    found: dict[int, dt.datetime | None] = {}
    for workflow_id, version_id in workflows:
        schedule = version_spec(version_id).workflow.schedule
        found[workflow_id] = None
        if schedule is not None:
            try:
                ticks = cron_schedule(schedule.cron, schedule.timezone)
                since, end = _since_and_end(schedule, cursors.get(workflow_id), version_id)
                found[workflow_id] = next_tick = ticks.next_after(since)
                if next_tick is not None and end is not None and next_tick > end:
                    found[workflow_id] = None  # its schedule has ended
            except BadSchedule:
                pass
    return found


def _since_and_end(schedule, cursor: dt.datetime | None, version_id: int) -> tuple[dt.datetime, dt.datetime | None]:
    """The instant after which a schedule's next tick is due (its cursor, its deploy, or its start),
    and its end."""
    start, end = window(schedule.start, schedule.end, schedule.timezone)
    since = max(cursor or dt.datetime.min, schedule_start(version_id))
    if start is not None:
        since = max(since, start - dt.timedelta(microseconds=1))
    return since, end


@dataclasses.dataclass
class ScheduleOutcome:
    created: list[ScheduledRun] = dataclasses.field(default_factory=list)
    skipped: list[SkippedTicks] = dataclasses.field(default_factory=list)
    errors: list[str] = dataclasses.field(default_factory=list)  # one per workflow that failed
    left: int = 0  # workflows not looked at: the budget was spent; the next tick takes them first


def create_scheduled_runs(now: dt.datetime, *, on_time: dt.timedelta, limit: int = 100,
                          budget: float | None = None) -> ScheduleOutcome:
    """For each scheduled workflow, the runs its catchup policy wants for the ticks up to `now`.

    Runs use the workflow's current version, trigger `schedule`, actor flow45-scheduler, the tick as
    logical time and no params. Each workflow is one transaction that also moves its cursor; two
    schedulers at once serialize on the workflow row, and the unique (workflow, logical_time) index
    refuses a second run for a tick whatever happens. A workflow that fails is reported in `errors`
    and tried again at the next tick; the others go on. A lost connection is raised.

    The teams take turns, and once `budget` seconds (of this process's clock) are spent on runs, the
    workflows not yet looked at wait for the next tick (`left`), which takes them first: one team's
    many heavy schedules hold up neither another team's schedules nor the tick's other sweeps.
    """
    at = to_utc(now)
    cursors = {row.workflow_id: row.last_tick for row in ScheduleCursor.select()}
    outcome = ScheduleOutcome()
    started, worked = time.monotonic(), False
    for item in _in_turns(scheduled_workflows(), cursors):
        if worked and budget is not None and time.monotonic() - started >= budget:
            outcome.left += 1
            continue
        try:
            workflow = version_spec(item.version_id).workflow
            schedule, tasks = workflow.schedule, len(workflow.tasks)
            ticks = cron_schedule(schedule.cron, schedule.timezone)
            since, end = _since_and_end(schedule, cursors.get(item.workflow_id), item.version_id)
            due = due_ticks(ticks, schedule.catchup, since=since, now=at, on_time=on_time, end=end,
                            limit=min(limit, max(1, INSTANCES_PER_TICK // tasks)))
            if due.cursor is None:
                continue
            worked = True
            made, passed = _apply(item, cursors.get(item.workflow_id), due, schedule.catchup, at)
        except (pw.OperationalError, pw.InterfaceError):
            raise
        except BadSchedule as exc:  # stored before deploy refused it: said once, not every tick
            _refuse_once(item, str(exc))
            outcome.errors.append(f"{item.team}/{item.name}: {exc}")
            continue
        except Exception as exc:  # noqa: BLE001 - one workflow must not stop the others
            log.exception("scheduler: %s/%s failed", item.team, item.name)
            outcome.errors.append(f"{item.team}/{item.name}: {type(exc).__name__}: {exc}")
            continue
        outcome.created += made
        outcome.skipped += passed
    if outcome.left:
        log.info("scheduler: %d scheduled workflows left for the next tick (this one's %gs spent)",
                 outcome.left, budget)
    return outcome


def _in_turns(items: list[_Scheduled], cursors: dict[int, dt.datetime | None]) -> list[_Scheduled]:
    """The teams in turn, the one whose newest tick is oldest first; each team's workflows, the one
    furthest behind first. A tick cut short leaves the rest at the front of the next one's line."""
    def behind(item: _Scheduled) -> dt.datetime:
        return cursors.get(item.workflow_id) or dt.datetime.min

    newest: dict[str, dt.datetime] = {}
    for item in items:
        newest[item.team] = max(newest.get(item.team, dt.datetime.min), behind(item))
    ordered = sorted(items, key=lambda i: (newest[i.team], i.team, behind(i), i.workflow_id))
    return list(in_turns(ordered, lambda item: item.team))


def _apply(
    item: _Scheduled, seen_cursor: dt.datetime | None, due: DueTicks, catchup: str, at: dt.datetime
) -> tuple[list[ScheduledRun], list[SkippedTicks]]:
    made: list[ScheduledRun] = []
    passed: list[SkippedTicks] = []
    with atomic():
        workflow = lock_workflow(item.workflow_id)
        cursor = ScheduleCursor.get_or_none(ScheduleCursor.workflow == item.workflow_id)
        version = WorkflowVersion.get(
            (WorkflowVersion.workflow == workflow.id) & (WorkflowVersion.version == workflow.current_version)
        )
        if workflow.paused_at is not None or workflow.retired_at is not None:
            return [], []  # paused or retired since it was listed: the cursor stands still
        if version.id != item.version_id or (cursor.last_tick if cursor else None) != seen_cursor:
            return [], []  # redeployed or done by another scheduler meanwhile: the next tick looks again
        spec = version_spec(version.id)
        if due.skipped:
            reason = f"missed while no scheduler was running (catchup: {catchup})"
            passed.append(_skip(item, spec.number, due.skipped, due.first_skipped, due.last_skipped, reason, at))
        runs = list(due.run)
        try:
            validate_params(spec, {})
        except InvalidParams as exc:
            if runs:
                reason = f"a scheduled run has no params, but {exc.message}"
                passed.append(_skip(item, spec.number, len(runs), runs[0], runs[-1], reason, at))
            runs = []
        last = due.cursor
        for n, tick in enumerate(runs):
            try:
                run_id = trigger(
                    item.team, item.name, {}, actor=SCHEDULER, now=at, trigger_kind="schedule", logical_time=tick
                )
            except LimitReached as exc:  # the ticks from this one wait for the team to go under its limit
                _warn_once(item, exc.message)
                dealt_with = [t for t in (runs[n - 1] if n else None, due.last_skipped) if t is not None and t < tick]
                last = max(dealt_with, default=None)  # the skipped ones are not skipped again
                break
            except RunExists:  # its savepoint was rolled back: a run for this tick exists already
                continue
            status = Run.select(Run.status).where(Run.id == run_id).scalar()
            made.append(ScheduledRun(item.team, item.name, spec.number, tick, run_id, status))
            _limited.discard(item.workflow_id)
        if last is None:
            return made, passed  # nothing made: the cursor stands still
        if cursor is None:
            ScheduleCursor.create(workflow=item.workflow_id, last_tick=last, updated_at=at)
        else:
            ScheduleCursor.update(last_tick=last, updated_at=at).where(
                ScheduleCursor.workflow == item.workflow_id
            ).execute()
    return made, passed


_limited: set[int] = set()  # workflows whose scheduled runs wait for their team's limit, said once


_refused: set[int] = set()  # versions whose schedule is refused, said once


def _refuse_once(item: _Scheduled, why: str) -> None:
    if item.version_id not in _refused:
        _refused.add(item.version_id)
        log.error("scheduler: %s/%s makes no scheduled runs: %s; deploy a version with a schedule it takes",
                  item.team, item.name, why)


def _warn_once(item: _Scheduled, why: str) -> None:
    if item.workflow_id not in _limited:
        _limited.add(item.workflow_id)
        log.warning("scheduler: %s/%s: its scheduled runs wait: %s", item.team, item.name, why)


def _skip(
    item: _Scheduled, version: int, count: int, first: dt.datetime, last: dt.datetime, reason: str, at: dt.datetime
) -> SkippedTicks:
    record_event(
        at, item.team, "schedule_skip", SCHEDULER,
        detail={
            "workflow": item.name, "version": version, "ticks": count, "first": iso(first), "last": iso(last),
            "reason": reason,
        },
    )
    return SkippedTicks(item.team, item.name, count, first, last, reason)


# ---- offers that may be lost ------------------------------------------------------------------

def _backed_off(at: dt.datetime, quiet: dt.timedelta) -> pw.Expression:
    """Offered at least as long ago as the instance had been waiting when it was offered (so the
    interval between offers doubles), or longer ago than the cap."""
    offered, since = TaskInstance.offered_at, TaskInstance.updated_at
    doubled = dialect().doubled_wait_elapsed(offered, since, at)
    return doubled | (offered <= at - quiet * REOFFER_BACKOFF_CAP)


def reoffer_lost(now: dt.datetime, quiet: float, limit: int = 500) -> list[int]:
    """Available instances offered longer than `quiet` seconds ago get their offer written again:
    the same attempt and token (a duplicate is harmless, the token decides). The interval doubles
    for an instance nobody claims, up to REOFFER_BACKOFF_CAP quiet periods; an offer still waiting
    in the outbox is not lost and is left alone."""
    at = to_utc(now)
    period = dt.timedelta(seconds=quiet)
    stale = at - period
    candidates = due_in_turns(
        TaskInstance.select(TaskInstance.id, TaskInstance.run, TaskInstance.team)
        .where(
            (TaskInstance.state == pw.SQL("'available'")) & (TaskInstance.offered_at <= stale)
            & (TaskInstance.human == False) & _backed_off(at, period)  # noqa: E712 (human tasks get no offers)
        )
        .order_by(TaskInstance.offered_at), TaskInstance.team, limit)
    if not candidates:
        return []
    unsent = {
        row.instance for row in Outbox.select(Outbox.instance).where(
            Outbox.sent_at.is_null() & (Outbox.kind == "offer") & Outbox.instance.in_([c.id for c in candidates])
        )
    }

    def offer_again(unit: Unit, instance: Row) -> bool:
        if instance.state != S.AVAILABLE or instance.offered_at is None or instance.offered_at > stale:
            return False  # claimed, or offered again by another scheduler, since we looked
        rules.reoffer(unit.changes, instance, SCHEDULER, iso(instance.offered_at))
        return True

    return each_alone([c for c in candidates if c.id not in unsent], at, offer_again)
