"""Scheduled runs through tick(now), on SQLite and on PostgreSQL: DST, catchup, limits, redeploys."""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections import Counter

import pytest

from flow45 import store
from flow45.db import database
from flow45.models import Event, Run, Workflow, WorkflowVersion
from flow45.scheduler import tick
from flow45.store import schedule_runs, specs
from tests.scheduler.helpers import deploy_at, local, logical_times, runs, scheduled, skip_events, tick_every

pytestmark = pytest.mark.usefixtures("store_db")

D = dt.datetime
SECOND, MINUTE = dt.timedelta(seconds=1), dt.timedelta(minutes=1)
HOUR, DAY = dt.timedelta(hours=1), dt.timedelta(days=1)


def per_local_day(times):
    return Counter(local(t).date() for t in times)


def test_daily_0230_across_spring_forward_makes_one_run_per_local_day(tmp_path):
    deploy_at(tmp_path, scheduled("30 2 * * *", timezone="Europe/Amsterdam"), D(2026, 3, 27, 12))
    tick_every(D(2026, 3, 27, 12), D(2026, 3, 31, 12), 20 * MINUTE)
    # 02:30 CET, then 03:00 CEST (the end of the gap: 02:30 does not exist that night), then 02:30 CEST
    assert logical_times() == [D(2026, 3, 28, 1, 30), D(2026, 3, 29, 1, 0), D(2026, 3, 30, 0, 30), D(2026, 3, 31, 0, 30)]
    assert per_local_day(logical_times()) == {dt.date(2026, 3, day): 1 for day in (28, 29, 30, 31)}


@pytest.mark.parametrize("cron", ["30 1 * * *", "30 2 * * *"])
def test_daily_across_fall_back_makes_one_run_per_local_day(tmp_path, cron):
    deploy_at(tmp_path, scheduled(cron, timezone="Europe/Amsterdam"), D(2026, 10, 23, 12))
    tick_every(D(2026, 10, 23, 12), D(2026, 10, 27, 12), 20 * MINUTE)
    assert per_local_day(logical_times()) == {dt.date(2026, 10, day): 1 for day in (24, 25, 26, 27)}
    assert {local(t).strftime("%H:%M") for t in logical_times()} == {cron[3:4].rjust(2, "0") + ":30"}


def test_a_scheduled_run_is_of_the_current_version_with_its_tick_as_logical_time(tmp_path):
    deploy_at(tmp_path, scheduled("0 6 * * *"), D(2026, 3, 2, 0))
    report = tick(D(2026, 3, 2, 6, 0, 1))
    [made] = report.created
    run = store.get_run(made.run)
    assert (run.trigger, run.triggered_by, run.logical_time, run.params, run.version, run.status) == (
        "schedule", "flow45-scheduler", D(2026, 3, 2, 6), {}, 1, "running",
    )
    assert report.lines() == [f"run {made.run} of acme/nightly v1 created for 2026-03-02T06:00:00Z (running)"]
    assert tick(D(2026, 3, 2, 6, 0, 2)).created == [], "a tick is made once"


def test_a_new_workflow_does_not_backfill_before_its_deploy(tmp_path):
    deploy_at(tmp_path, scheduled("0 6 * * *", catchup="all"), D(2026, 3, 2, 12))
    assert tick(D(2026, 3, 2, 13)).created == []
    assert [r.logical_time for r in tick(D(2026, 3, 3, 7)).created] == [D(2026, 3, 3, 6)]


# ---- a missed week --------------------------------------------------------------------------------

MONDAY = D(2026, 3, 2, 6)
BACK = D(2026, 3, 9, 12)  # the scheduler was away from Monday 06:00 to the next Monday noon


def away_for_a_week(tmp_path, catchup: str) -> None:
    deploy_at(tmp_path, scheduled("0 6 * * *", catchup=catchup), D(2026, 3, 1, 12))
    assert len(tick(MONDAY + SECOND).created) == 1
    tick(BACK)


def test_missed_week_with_catchup_latest_runs_the_newest_missed_tick(tmp_path):
    away_for_a_week(tmp_path, "latest")
    assert logical_times() == [MONDAY, D(2026, 3, 9, 6)]
    [skip] = skip_events()
    assert (skip["ticks"], skip["first"], skip["last"]) == (6, "2026-03-03T06:00:00Z", "2026-03-08T06:00:00Z")
    assert "catchup: latest" in skip["reason"]


def test_missed_week_with_catchup_all_runs_every_missed_tick_oldest_first(tmp_path):
    away_for_a_week(tmp_path, "all")
    assert logical_times() == [MONDAY + n * DAY for n in range(8)]
    assert [r.id for r in runs()] == sorted(r.id for r in runs())
    assert skip_events() == []


def test_missed_week_with_catchup_none_runs_only_future_ticks(tmp_path):
    away_for_a_week(tmp_path, "none")
    assert logical_times() == [MONDAY]
    [skip] = skip_events()
    assert skip["ticks"] == 7 and "catchup: none" in skip["reason"]
    tick(D(2026, 3, 10, 6, 0, 2))
    assert logical_times() == [MONDAY, D(2026, 3, 10, 6)]


def test_catchup_all_after_a_long_absence_is_spread_over_ticks(tmp_path):
    deploy_at(tmp_path, scheduled("0 * * * *", catchup="all", max_active_runs=None), D(2026, 3, 1))
    first = tick(D(2026, 3, 10))  # 216 hourly ticks missed
    assert len(first.created) == 100
    tick(D(2026, 3, 10, 0, 0, 1))
    tick(D(2026, 3, 10, 0, 0, 2))
    assert logical_times() == [D(2026, 3, 1, 1) + n * HOUR for n in range(216)]


def test_a_wide_workflows_catchup_makes_a_bounded_number_of_instances_a_tick(tmp_path, monkeypatch):
    """One transaction per workflow: 216 missed runs of a wide workflow at once would hold the tick,
    and every team's sweeps behind it, for as long as they took."""
    monkeypatch.setattr(schedule_runs, "INSTANCES_PER_TICK", 30)
    tasks = "\n".join(f"              t{n}: {{function: fa, output: Blob}}" for n in range(10))
    wide = scheduled("0 * * * *", catchup="all", max_active_runs=None).replace(
        "              a: {function: fa, output: Blob, retries: 0}", tasks)
    deploy_at(tmp_path, wide, D(2026, 3, 1))
    assert len(tick(D(2026, 3, 10)).created) == 3  # 30 instances: three runs of ten tasks
    assert len(tick(D(2026, 3, 10, 0, 0, 1)).created) == 3
    assert logical_times() == [D(2026, 3, 1, 1) + n * HOUR for n in range(6)]


# ---- limits, params, collisions -------------------------------------------------------------------

def test_max_active_runs_queues_scheduled_runs_until_a_slot_frees(tmp_path):
    deploy_at(tmp_path, scheduled("0 6 * * *", catchup="all", max_active_runs=1), D(2026, 3, 1, 12))
    report = tick(D(2026, 3, 4, 7))
    assert [r.status for r in report.created] == ["running", "queued", "queued"]
    assert "max_active_runs: 1" in store.get_run(report.created[1].run).waiting_for
    store.cancel_run(report.created[0].run, actor="op", now=D(2026, 3, 4, 8))
    assert [r.status for r in runs()] == ["cancelled", "running", "queued"]


def test_required_params_skip_the_tick_with_a_reason_in_the_ledger(tmp_path):
    deploy_at(tmp_path, scheduled("0 6 * * *", params="Month"), D(2026, 3, 1, 12))
    report = tick(D(2026, 3, 2, 6, 0, 1))
    assert report.created == [] and report.errors == []
    [skip] = report.skipped
    assert "params" in skip.reason and "month" in skip.reason
    tick(D(2026, 3, 2, 6, 0, 2))
    assert len(skip_events()) == 1, "the same tick is not reported again"
    assert runs() == []


def test_optional_params_are_fine(tmp_path):
    deploy_at(tmp_path, scheduled("0 6 * * *", params="Hints"), D(2026, 3, 1, 12))
    assert len(tick(D(2026, 3, 2, 6, 0, 1)).created) == 1


def test_a_tick_that_already_has_a_run_is_not_run_twice(tmp_path):
    deploy_at(tmp_path, scheduled("0 6 * * *"), D(2026, 3, 1, 12))
    manual = store.trigger("acme", "nightly", actor="ann", now=D(2026, 3, 2, 5), logical_time=D(2026, 3, 2, 6))
    report = tick(D(2026, 3, 2, 6, 0, 1))
    assert report.created == [] and report.errors == []
    assert [r.id for r in runs()] == [manual]
    assert len(tick(D(2026, 3, 3, 6, 0, 1)).created) == 1, "and the schedule goes on"


# ---- redeploys ----------------------------------------------------------------------------------

def test_redeploy_switches_the_version_of_later_runs_and_can_stop_or_move_the_schedule(tmp_path):
    text = scheduled("0 6 * * *", catchup="all")
    deploy_at(tmp_path, text, D(2026, 3, 1, 12))
    tick(D(2026, 3, 2, 6, 0, 1))
    deploy_at(tmp_path, text.replace("retries: 0", "retries: 3"), D(2026, 3, 2, 12))
    tick(D(2026, 3, 3, 6, 0, 1))
    assert [(r.logical_time, store.get_run(r.id).version) for r in runs()] == [
        (D(2026, 3, 2, 6), 1), (D(2026, 3, 3, 6), 2),
    ]
    unscheduled = "\n".join(line for line in text.splitlines() if "schedule:" not in line)
    deploy_at(tmp_path, unscheduled, D(2026, 3, 3, 12))
    tick(D(2026, 3, 6, 12))
    assert len(runs()) == 2, "a workflow deployed without a schedule stops"
    deploy_at(tmp_path, scheduled("0 18 * * *", catchup="all"), D(2026, 3, 6, 12))
    tick(D(2026, 3, 7, 12))
    assert logical_times()[2:] == [D(2026, 3, 6, 18)], "a new schedule counts from its deploy, not from the old one"
    assert store.get_run(runs()[-1].id).version == 4


def test_a_run_in_flight_keeps_its_version_when_the_workflow_is_redeployed(tmp_path):
    text = scheduled("0 6 * * *", max_active_runs=1, catchup="all")
    deploy_at(tmp_path, text, D(2026, 3, 1, 12))
    tick(D(2026, 3, 3, 7))  # one running, one queued, both version 1
    deploy_at(tmp_path, text.replace("retries: 0", "retries: 1"), D(2026, 3, 3, 8))
    store.cancel_run(runs()[0].id, actor="op", now=D(2026, 3, 3, 9))
    assert [(r.status, store.get_run(r.id).version) for r in runs()] == [("cancelled", 1), ("running", 1)]


# ---- two schedulers at once -----------------------------------------------------------------------

def test_two_schedulers_ticking_at_the_same_moment_make_each_run_once(tmp_path):
    deploy_at(tmp_path, scheduled("0 * * * *", catchup="all", max_active_runs=None), D(2026, 3, 1))
    moments = [D(2026, 3, 1, 5, 0, 1), D(2026, 3, 1, 5, 0, 2), D(2026, 3, 1, 9, 30), D(2026, 3, 1, 10, 0, 1)]
    barrier = threading.Barrier(2)
    reports: dict[str, list] = {"one": [], "two": []}
    failures: list[BaseException] = []

    def scheduler(name: str) -> None:
        try:
            for now in moments:
                barrier.wait(timeout=30)
                reports[name].append(tick(now))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failures.append(exc)
            barrier.abort()
        finally:
            database.close()

    threads = [threading.Thread(target=scheduler, args=(name,)) for name in reports]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert failures == [] and all(not r.errors for rs in reports.values() for r in rs)
    assert logical_times() == [D(2026, 3, 1, 1) + n * HOUR for n in range(10)]
    made = [r.run for rs in reports.values() for report in rs for r in report.created]
    assert sorted(made) == [r.id for r in runs()], "each run reported by exactly the scheduler that made it"
    assert Event.select().where(Event.kind == "trigger").count() == 10
    assert Run.select().count() == 10


def _schedules(team: str, names: list[str]) -> str:
    workflows = "".join(f"""
          {name}:
            schedule: {{cron: "0 6 * * *"}}
            tasks:
              a: {{function: fa, output: Blob}}""" for name in names)
    return f"""
        team: {team}
        types:
          Blob: {{fields: {{uri: string}}}}
        workflows:{workflows}
    """


def test_a_tick_past_its_budget_leaves_the_rest_to_the_next_and_the_teams_take_turns(tmp_path, monkeypatch):
    """A budget of nothing: each tick makes one workflow's runs. acme has three schedules, rival
    one: rival's comes second, not last; and the sweeps after the schedules run on every tick."""
    import flow45.scheduler

    deploy_at(tmp_path, _schedules("acme", ["a1", "a2", "a3"]), D(2026, 3, 2, 0))
    deploy_at(tmp_path, _schedules("rival", ["r1"]), D(2026, 3, 2, 0))
    monkeypatch.setattr(flow45.scheduler, "SCHEDULE_BUDGET", 0.0)
    store.trigger("rival", "r1", actor="ops", now=D(2026, 3, 2, 5))
    lease = store.claim_next("rival", ["fa"], "w", now=D(2026, 3, 2, 5))  # its lease ends before the ticks
    made = []
    for n in range(4):
        report = tick(D(2026, 3, 2, 6, 0, n))
        assert report.errors == []
        made.append([store.get_run(r.run).workflow for r in report.created])
        if n == 0:
            assert report.expired == [lease.instance]  # the sweeps ran all the same
    assert made == [["a1"], ["r1"], ["a2"], ["a3"]]
    assert tick(D(2026, 3, 2, 6, 0, 5)).created == []


def test_a_stored_schedule_with_seconds_makes_no_runs_and_is_said_once_while_the_others_go_on(tmp_path, caplog):
    """Deploy refuses six fields now (tests/configs/bad/cron_with_seconds.yaml). A version stored
    before: croniter reads seconds last, so Quartz's '0 0 6 * * *' (06:00 daily) would make a run for
    every second of 00:00 to 00:01 on the 6th of each month."""
    deploy_at(tmp_path, scheduled("0 6 * * *"), D(2026, 3, 1, 12))
    deploy_at(tmp_path, scheduled("0 6 * * *").replace("acme", "beta"), D(2026, 3, 1, 12))
    [stored] = WorkflowVersion.select().join(Workflow).where(Workflow.team == "acme")
    spec = stored.spec
    spec["workflow"]["schedule"]["cron"] = "0 0 6 * * *"
    WorkflowVersion.update(spec=spec).where(WorkflowVersion.id == stored.id).execute()
    specs._cache.clear()

    with caplog.at_level(logging.ERROR, logger="flow45"):
        reports = [tick(D(2026, 3, 6, 0, 0, second)) for second in range(0, 60, 10)]
        reports.append(tick(D(2026, 3, 6, 6, 0, 1)))
    made = [r.team for report in reports for r in report.created]
    assert made == ["beta", "beta"], "beta's runs of 5 and 6 March at 06:00 (the latest missed, then on time), no other"
    assert all("'0 0 6 * * *' has 6 fields" in " ".join(report.errors) for report in reports)
    said = [r.getMessage() for r in caplog.records if "makes no scheduled runs" in r.getMessage()]
    assert said == ["scheduler: acme/nightly makes no scheduled runs: '0 0 6 * * *' has 6 fields: a schedule "
                    "takes five (minute hour day month weekday), without seconds or a year; deploy a version "
                    "with a schedule it takes"]
    assert not any(r.exc_info for r in caplog.records), "no traceback for it"


@pytest.mark.parametrize("zone, said", [
    ("localtime", "'localtime' is the zone of whichever machine reads it"),
    ("Atlantis/Poseidonia", "unknown timezone 'Atlantis/Poseidonia'"),  # a name this machine's database lacks
])
def test_a_stored_zone_the_scheduler_cannot_take_makes_no_runs_and_is_said_once(tmp_path, caplog, zone, said):
    """Deploy refuses both (tests/unit/test_config.py). A version stored before, or deployed from a machine
    whose zone database knew a name this one does not: `localtime` ticks at the hours of whichever machine
    the scheduler runs on. The other teams' schedules go on, and no traceback comes each tick."""
    deploy_at(tmp_path, scheduled("0 6 * * *"), D(2026, 3, 1, 12))
    deploy_at(tmp_path, scheduled("0 6 * * *").replace("acme", "beta"), D(2026, 3, 1, 12))
    [stored] = WorkflowVersion.select().join(Workflow).where(Workflow.team == "acme")
    spec = stored.spec
    spec["workflow"]["schedule"]["timezone"] = zone
    WorkflowVersion.update(spec=spec).where(WorkflowVersion.id == stored.id).execute()
    specs._cache.clear()

    with caplog.at_level(logging.ERROR, logger="flow45"):
        reports = [tick(D(2026, 3, 2, 6, 0, second)) for second in range(0, 60, 10)]
    assert [r.team for report in reports for r in report.created] == ["beta"]
    said_once = [r.getMessage() for r in caplog.records if "makes no scheduled runs" in r.getMessage()]
    assert len(said_once) == 1 and said in said_once[0], said_once
    assert not any(r.exc_info for r in caplog.records), "no traceback for it"


def test_a_scheduled_run_of_a_workflow_whose_params_have_defaults_takes_them(tmp_path):
    deploy_at(tmp_path, scheduled("0 6 1 * *", params="Month").replace(
        "Month: {fields: {month: string}}", "Month: {fields: {month: {type: string, default: previous}}}"), D(2027, 2, 27))
    [made] = tick(D(2027, 3, 1, 6, 0, 1)).created  # the 1st of the month, after February's 28 days
    assert store.get_run(made.run).params == {"month": "previous"}
