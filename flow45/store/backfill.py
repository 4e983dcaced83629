"""Backfill: one run per schedule tick in a range, each with the tick as its logical time, made as
the scheduler makes its runs (`trigger`, so `max_active_runs` queues the extra ones). A tick that
already has a run is left alone and reported."""

from __future__ import annotations

import datetime as dt

from flow45.clock import to_utc
from flow45.errors import Flow45Error, RunExists
from flow45.models import Run, WorkflowVersion
from flow45.schedule import BadSchedule, cron_schedule, window, window_text
from flow45.store.deploy import find_workflow
from flow45.store.newrun import check_open, refuse_or_queue, validate_params
from flow45.store.runs import trigger_run
from flow45.store.specs import version_spec
from flow45.views import BackfillItem, BackfillPlan

MAX_TICKS = 1000  # a wider range is more likely a typo than a plan
# Task instances one backfill may make. It is one operator message, and operator messages go through the
# bridge one at a time: 1,000 runs of a 5,000-task workflow would hold every team's for minutes.
MAX_INSTANCES = 50_000


def backfill(
    team: str, workflow: str, start: dt.datetime, end: dt.datetime, *, actor: str, dry_run: bool = False,
    now: dt.datetime | None = None,
) -> BackfillPlan:
    """A run for each tick of the workflow's schedule from `start` to `end` (both included, UTC),
    oldest first, each in its own transaction; with `dry_run`, only the list."""
    start, end = to_utc(start), to_utc(end)
    if end < start:
        raise Flow45Error(f"backfill {team}/{workflow}: --to {end:%Y-%m-%d %H:%M} is before --from {start:%Y-%m-%d %H:%M}")
    row = find_workflow(team, workflow)
    refuse_or_queue(row, team, workflow)  # refused here, not at the first tick: a dry run says so too
    version = WorkflowVersion.get((WorkflowVersion.workflow == row) & (WorkflowVersion.version == row.current_version))
    spec = version_spec(version.id)
    schedule = spec.workflow.schedule
    if schedule is None:
        raise Flow45Error(f"{team}/{workflow} has no schedule, so no ticks to backfill; "
                          "use trigger --logical-time for one run")
    validate_params(spec, {})  # scheduled runs have no params: refused before anything is made
    try:
        schedule_ticks = cron_schedule(schedule.cron, schedule.timezone)  # first: it checks the zone
        first, last = window(schedule.start, schedule.end, schedule.timezone)
        if (first is not None and end < first) or (last is not None and start > last):
            raise Flow45Error(f"backfill {team}/{workflow}: its schedule runs "
                              f"{window_text(schedule.start, schedule.end)} ({schedule.timezone}), "
                              "which that range lies outside of")
        start, end = max(start, first or start), min(end, last or end)  # the schedule's own ticks only
        ticks = schedule_ticks.between(start - dt.timedelta(microseconds=1), end, limit=MAX_TICKS + 1)
    except OverflowError:  # a tick, or the local time of one, would fall outside years 1 to 9999
        raise Flow45Error(f"backfill {team}/{workflow}: the schedule's ticks cannot be worked out that close "
                          "to the ends of the calendar (years 1 and 9999)") from None
    except BadSchedule as exc:  # a version stored before deploy refused it
        raise Flow45Error(f"backfill {team}/{workflow}: {exc}; deploy a version with a schedule Flow45 takes") from None
    if len(ticks) > MAX_TICKS:
        raise Flow45Error(f"backfill {team}/{workflow}: more than {MAX_TICKS} ticks in that range; backfill it in parts")
    existing = dict(Run.select(Run.logical_time, Run.id).where(
        (Run.workflow == row.id) & Run.logical_time.in_(ticks)).tuples()) if ticks else {}
    tasks = len(spec.workflow.tasks)
    if not dry_run and (len(ticks) - len(existing)) * tasks > MAX_INSTANCES:
        raise Flow45Error(f"backfill {team}/{workflow}: {len(ticks) - len(existing)} runs of {tasks} tasks would make "
                          f"{(len(ticks) - len(existing)) * tasks:,} task instances, over {MAX_INSTANCES:,} in one "
                          f"backfill; backfill it in parts of at most {max(1, MAX_INSTANCES // tasks)} ticks")
    if not dry_run and len(ticks) > len(existing):
        check_open(team, tasks, adding=len(ticks) - len(existing))  # refused whole, not stopped half-way
    items = []
    for tick in ticks:
        if tick in existing:
            items.append(BackfillItem(tick, existing[tick], "exists"))
        elif dry_run:
            items.append(BackfillItem(tick, None, "would_create"))
        else:
            try:
                made = trigger_run(team, workflow, {}, actor=actor, now=now, trigger_kind="backfill", logical_time=tick)
            except RunExists as exc:  # the scheduler made it meanwhile
                found = exc.run or Run.get((Run.workflow == row.id) & (Run.logical_time == tick)).id
                items.append(BackfillItem(tick, found, "exists"))
                continue
            items.append(BackfillItem(tick, made.run, made.status))
    return BackfillPlan(team, workflow, start, end, dry_run, items)
