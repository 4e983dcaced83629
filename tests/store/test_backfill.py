"""Backfill and logical time: one run per schedule tick in a range (29 February and a DST change
included), extra runs queued by max_active_runs, a dry run that makes nothing, ticks that have a run
left alone, and the offer carrying the run's logical time; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import importlib

import pytest

from flow45 import store
from flow45.config import load_config
from flow45.errors import Flow45Error, IllegalTransition
from flow45.models import Outbox, Run, Workflow, WorkflowVersion
from flow45.store import specs
from tests.store.helpers import T0, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")


def nightly(cron: str = "0 2 * * *", timezone: str = "Europe/Amsterdam", max_active: int = 2) -> str:
    return f"""
    team: acme
    types:
      Done:
        fields: {{ok: boolean}}
    workflows:
      nightly:
        schedule: {{cron: "{cron}", timezone: {timezone}}}
        max_active_runs: {max_active}
        tasks:
          load: {{function: load, output: Done}}
      adhoc:
        tasks:
          load: {{function: load, output: Done}}
    """


def U(*args) -> dt.datetime:
    return dt.datetime(*args)


def test_a_backfill_over_29_february_makes_a_run_per_night_and_queues_past_max_active_runs(tmp_path):
    deploy_text(tmp_path, nightly(timezone="UTC"))
    dry = store.backfill("acme", "nightly", U(2028, 2, 28), U(2028, 3, 1, 23), actor="ops", dry_run=True, now=T0)
    assert [(i.logical_time, i.status) for i in dry.items] == [
        (U(2028, 2, 28, 2), "would_create"), (U(2028, 2, 29, 2), "would_create"), (U(2028, 3, 1, 2), "would_create")]
    assert Run.select().count() == 0
    plan = store.backfill("acme", "nightly", U(2028, 2, 28), U(2028, 3, 1, 23), actor="ops", now=T0)
    assert [i.status for i in plan.items] == ["running", "running", "queued"]
    runs = list(Run.select().order_by(Run.logical_time))
    assert [(r.logical_time, r.trigger, r.triggered_by) for r in runs] == [
        (U(2028, 2, 28, 2), "backfill", "ops"), (U(2028, 2, 29, 2), "backfill", "ops"), (U(2028, 3, 1, 2), "backfill", "ops")]
    again = store.backfill("acme", "nightly", U(2028, 2, 29, 2), U(2028, 3, 2, 2), actor="ops", now=T0)
    assert [(i.run, i.status) for i in again.items] == [(runs[1].id, "exists"), (runs[2].id, "exists"),
                                                         (again.items[2].run, "queued")]
    offer = Outbox.get(Outbox.instance == instance(runs[1].id, "load").id)
    assert offer.body["logical_time"] == "2028-02-29T02:00:00Z"


def test_the_ticks_follow_the_wall_clock_across_a_dst_change(tmp_path):
    deploy_text(tmp_path, nightly(cron="30 2 * * *", max_active=10))
    # Amsterdam springs forward on 2026-03-29 (02:00 -> 03:00): 02:30 does not exist that night, so
    # its tick is the end of the gap (01:00 UTC); before it 02:30 is 01:30 UTC, after it 00:30 UTC.
    spring = store.backfill("acme", "nightly", U(2026, 3, 28), U(2026, 3, 30, 12), actor="ops", now=T0)
    assert [i.logical_time for i in spring.items] == [U(2026, 3, 28, 1, 30), U(2026, 3, 29, 1), U(2026, 3, 30, 0, 30)]
    # It falls back on 2026-10-25: 02:30 happens twice that night, and the night gets one run.
    autumn = store.backfill("acme", "nightly", U(2026, 10, 24), U(2026, 10, 26, 12), actor="ops", now=T0)
    assert [i.logical_time for i in autumn.items] == [U(2026, 10, 24, 0, 30), U(2026, 10, 25, 0, 30),
                                                       U(2026, 10, 26, 1, 30)]
    assert Run.select().where(Run.trigger == "backfill").count() == 6


def test_a_workflow_without_a_schedule_or_a_reversed_range_is_refused_and_trigger_takes_a_logical_time(tmp_path):
    deploy_text(tmp_path, nightly())
    with pytest.raises(Flow45Error, match="acme/adhoc has no schedule.*trigger --logical-time"):
        store.backfill("acme", "adhoc", U(2026, 3, 1), U(2026, 3, 2), actor="ops", now=T0)
    with pytest.raises(Flow45Error, match="--to 2026-02-01 00:00 is before --from 2026-03-01 00:00"):
        store.backfill("acme", "nightly", U(2026, 3, 1), U(2026, 2, 1), actor="ops", now=T0)
    run = store.trigger("acme", "adhoc", actor="ops", now=T0, logical_time=U(2026, 2, 14, 6))
    assert store.get_run(run).logical_time == U(2026, 2, 14, 6)
    assert Outbox.get(Outbox.instance == instance(run, "load").id).body["logical_time"] == "2026-02-14T06:00:00Z"
    plain = store.trigger("acme", "adhoc", actor="ops", now=T0)
    assert Outbox.get(Outbox.instance == instance(plain, "load").id).body["logical_time"] is None


def test_a_dry_run_of_a_workflow_that_refuses_triggers_is_refused_as_the_backfill_would_be(tmp_path):
    """Retired, or paused with triggers refused, its dry run listed every tick as "would_create"."""
    deploy_text(tmp_path, nightly(timezone="UTC"))
    store.pause("acme", "nightly", actor="ops", triggers="refuse", now=T0)
    for dry_run in (True, False):
        with pytest.raises(IllegalTransition, match="acme/nightly is paused and refuses triggers; resume it first"):
            store.backfill("acme", "nightly", U(2028, 2, 28), U(2028, 3, 1), actor="ops", dry_run=dry_run, now=T0)
    store.resume("acme", "nightly", actor="ops", now=T0)
    deploy_text(tmp_path, nightly(timezone="UTC").replace("nightly:", "weekly:"))
    store.deploy(load_config(sorted(tmp_path.glob("config-*.yaml"))[-1]), actor="ops", now=T0, prune=True)
    for dry_run in (True, False):
        with pytest.raises(IllegalTransition, match="acme/nightly is retired; deploy it again to bring it back"):
            store.backfill("acme", "nightly", U(2028, 2, 28), U(2028, 3, 1), actor="ops", dry_run=dry_run, now=T0)
    assert Run.select().count() == 0


@pytest.mark.parametrize("start, end", [(U(1, 1, 1), U(1, 1, 3)), (U(9999, 12, 30), U(9999, 12, 31, 23, 59))])
def test_a_range_at_the_ends_of_the_calendar_is_refused_naming_them_and_makes_nothing(tmp_path, start, end):
    deploy_text(tmp_path, nightly())
    with pytest.raises(Flow45Error, match=r"acme/nightly: .* the ends of the calendar \(years 1 and 9999\)"):
        store.backfill("acme", "nightly", start, end, actor="ops", now=T0)
    assert Run.select().count() == 0


def test_a_stored_schedule_with_seconds_is_refused_naming_it_and_makes_nothing(tmp_path):
    """Deploy refuses it now (tests/configs/bad/cron_with_seconds.yaml); a version stored before."""
    deploy_text(tmp_path, nightly())
    [stored] = WorkflowVersion.select().join(Workflow).where(Workflow.name == "nightly")
    spec = stored.spec
    spec["workflow"]["schedule"]["cron"] = "0 0 2 * * *"
    WorkflowVersion.update(spec=spec).where(WorkflowVersion.id == stored.id).execute()
    specs._cache.clear()
    refused = r"^backfill acme/nightly: '0 0 2 \* \* \*' has 6 fields: .*; deploy a version"
    with pytest.raises(Flow45Error, match=refused):
        store.backfill("acme", "nightly", U(2026, 3, 1), U(2026, 3, 2), actor="ops", now=T0)
    assert Run.select().count() == 0


def test_a_backfill_past_its_instance_cap_is_refused_whole_naming_a_range_that_fits(tmp_path, monkeypatch):
    """One backfill is one operator message, and those go through the bridge one at a time: its task
    instances are capped. Ticks that have their run already do not count."""
    monkeypatch.setattr(importlib.import_module("flow45.store.backfill"), "MAX_INSTANCES", 10)
    deploy_text(tmp_path, nightly(timezone="UTC", max_active=10).replace(
        "load: {function: load, output: Done}\n      adhoc:",
        "load: {function: load, output: Done}\n          check: {function: check, output: Done}\n      adhoc:"))
    runs_before = Run.select().count()
    with pytest.raises(Flow45Error, match=r"6 runs of 2 tasks would make 12 task instances, over 10 in one backfill; "
                                          r"backfill it in parts of at most 5 ticks"):
        store.backfill("acme", "nightly", U(2026, 3, 1), U(2026, 3, 6, 3), actor="ann", now=T0)
    assert Run.select().count() == runs_before  # refused whole: nothing made
    assert len(store.backfill("acme", "nightly", U(2026, 3, 1), U(2026, 3, 6, 3), actor="ann", dry_run=True,
                              now=T0).items) == 6  # a dry run shows it all
    made = store.backfill("acme", "nightly", U(2026, 3, 1), U(2026, 3, 5, 3), actor="ann", now=T0)
    assert [i.status for i in made.items] == ["running"] * 5
    again = store.backfill("acme", "nightly", U(2026, 3, 1), U(2026, 3, 8, 3), actor="ann", now=T0)
    assert [i.status for i in again.items].count("exists") == 5  # 3 new runs: 6 instances


def test_a_run_the_scheduler_makes_while_the_backfill_runs_is_reported_as_there_already(tmp_path, monkeypatch):
    deploy_text(tmp_path, nightly(timezone="UTC"))
    backfill_module = importlib.import_module("flow45.store.backfill")
    real = backfill_module.trigger_run

    def scheduler_first(team, workflow, params, **given):
        if given["logical_time"] == U(2028, 2, 29, 2):  # the scheduler's tick lands between the read and this
            store.trigger(team, workflow, actor="flow45-scheduler", now=T0, trigger_kind="schedule",
                          logical_time=given["logical_time"])
        return real(team, workflow, params, **given)

    monkeypatch.setattr(backfill_module, "trigger_run", scheduler_first)
    plan = store.backfill("acme", "nightly", U(2028, 2, 28), U(2028, 3, 1, 23), actor="ops", now=T0)
    made_by_scheduler = Run.get(Run.trigger == "schedule").id
    assert [(i.run, i.status) for i in plan.items][1] == (made_by_scheduler, "exists")
    assert [i.status for i in plan.items] == ["running", "exists", "queued"]  # max_active_runs: 2


def test_queued_runs_start_in_the_order_of_their_nights_not_of_their_making(tmp_path):
    deploy_text(tmp_path, nightly(timezone="UTC", max_active=1))
    new_year, second = (store.trigger("acme", "nightly", actor="scheduler", now=night, trigger_kind="schedule",
                                      logical_time=night) for night in (U(2027, 1, 1, 2), U(2027, 1, 2, 2)))
    plan = store.backfill("acme", "nightly", U(2026, 12, 30), U(2026, 12, 31, 12), actor="ops", now=U(2027, 1, 2, 3))
    assert [i.status for i in plan.items] == ["queued", "queued"]
    grant = store.claim(instance(new_year, "load").id, instance(new_year, "load").token, "w", now=U(2027, 1, 2, 4))
    store.submit(grant.instance, grant.token, {"ok": True}, now=U(2027, 1, 2, 4))
    # The backfilled 30 December starts next, before the 2nd of January made before it.
    started = [r.id for r in Run.select().where(Run.status == "running")]
    assert started == [plan.items[0].run]
    assert store.get_run(second).status == "queued"
