"""Pausing a workflow: its schedule makes no runs, triggers queue or are refused as the operator
chose, runs already going go on; resuming starts the queued runs and the next tick applies the
catch-up policy to the ticks missed; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from flow45 import store
from flow45.errors import IllegalTransition
from flow45.config import load_config
from flow45.models import Event, Run, Workflow
from flow45.scheduler import tick
from tests.store.helpers import deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

def config(catchup: str) -> str:
    return f"""
    team: acme
    types:
      Done:
        fields: {{ok: boolean}}
    workflows:
      nightly:
        schedule: {{cron: "0 2 * * *", timezone: UTC, catchup: {catchup}}}
        max_active_runs: 5
        tasks:
          load: {{function: load, output: Done}}
    """


def scheduled() -> list[dt.datetime]:
    return [r.logical_time for r in Run.select().where(Run.trigger == "schedule").order_by(Run.logical_time)]


@pytest.mark.parametrize("catchup, after_resume", [
    ("all", [dt.datetime(2026, 3, 2, 2), dt.datetime(2026, 3, 3, 2), dt.datetime(2026, 3, 4, 2)]),
    ("latest", [dt.datetime(2026, 3, 2, 2), dt.datetime(2026, 3, 4, 2)]),
])
def test_a_paused_schedule_makes_no_runs_and_the_resume_applies_the_catchup_policy(tmp_path, catchup, after_resume):
    deploy_text(tmp_path, config(catchup))  # at T0, 2026-03-01 12:00: the first tick is the next night
    tick(dt.datetime(2026, 3, 2, 2, 0, 5))
    assert scheduled() == [dt.datetime(2026, 3, 2, 2)]
    store.pause("acme", "nightly", actor="ops", now=dt.datetime(2026, 3, 2, 12))
    tick(dt.datetime(2026, 3, 3, 2, 0, 5))
    tick(dt.datetime(2026, 3, 4, 2, 0, 5))
    assert scheduled() == [dt.datetime(2026, 3, 2, 2)]
    store.resume("acme", "nightly", actor="ops", now=dt.datetime(2026, 3, 4, 2, 0, 6))
    tick(dt.datetime(2026, 3, 4, 2, 0, 7))
    assert scheduled() == after_resume
    assert [e.kind for e in Event.select().where(Event.kind.in_(["pause", "resume"])).order_by(Event.id)] == \
        ["pause", "resume"]


def test_triggers_while_paused_queue_or_are_refused_and_the_resume_starts_the_queued(tmp_path):
    deploy_text(tmp_path, config("none"))
    at = dt.datetime(2026, 3, 5, 9)
    store.pause("acme", "nightly", actor="ops", triggers="refuse", now=at)
    with pytest.raises(IllegalTransition, match="acme/nightly is paused and refuses triggers; resume it first"):
        store.trigger("acme", "nightly", actor="ann", now=at)
    store.pause("acme", "nightly", actor="ops", triggers="queue", now=at)  # the choice can change while paused
    run = store.trigger("acme", "nightly", actor="ann", now=at)
    assert store.get_run(run).status == "queued"
    with pytest.raises(IllegalTransition, match="is paused already"):
        store.pause("acme", "nightly", actor="ops", triggers="queue", now=at)
    store.resume("acme", "nightly", actor="ops", now=at)
    assert store.get_run(run).status == "running"
    with pytest.raises(IllegalTransition, match="acme/nightly is not paused"):
        store.resume("acme", "nightly", actor="ops", now=at)


def test_a_run_queued_while_its_workflow_is_paused_says_it_waits_for_the_resume(tmp_path):
    """It said "a free slot (max_active_runs: 5)" with every slot free."""
    deploy_text(tmp_path, config("none"))  # max_active_runs: 5
    at = dt.datetime(2026, 3, 5, 9)
    store.pause("acme", "nightly", actor="ops", triggers="queue", now=at)
    run = store.trigger("acme", "nightly", actor="ann", now=at)
    assert store.get_run(run).waiting_for == "its workflow's resume (paused)"
    assert [v.waiting_for for v in store.list_runs("acme")] == ["its workflow's resume (paused)"]
    store.resume("acme", "nightly", actor="ops", now=at)
    assert store.get_run(run).waiting_for is None


def test_the_resume_starts_the_oldest_queued_runs_up_to_the_limit_past_cancelled_ones(tmp_path):
    deploy_text(tmp_path, config("none"))  # max_active_runs: 5
    at = dt.datetime(2026, 3, 5, 9)
    store.pause("acme", "nightly", actor="ops", triggers="queue", now=at)
    queued = [store.trigger("acme", "nightly", actor="ann", now=at) for _ in range(30)]
    for run in queued[1:4] + queued[5:7]:
        store.cancel_run(run, actor="ops", now=at)
    store.resume("acme", "nightly", actor="ops", now=at)
    status = {run: store.get_run(run).status for run in queued}
    assert [r for r in queued if status[r] == "running"] == [queued[0], queued[4], *queued[7:10]]
    assert all(status[r] == "queued" for r in queued[10:])


def test_a_workflow_left_out_of_the_config_is_reported_then_retired_by_prune_and_restored_by_a_deploy(tmp_path):
    deploy_text(tmp_path, config("all"))
    run = store.trigger("acme", "nightly", actor="ann", now=dt.datetime(2026, 3, 1, 13))
    other = config("all").replace("nightly:", "weekly:")
    report = deploy_text(tmp_path, other)
    assert [(w.workflow, w.change) for w in report.workflows] == [("weekly", "created"), ("nightly", "missing")]
    assert {w.name for w in store.list_workflows("acme")} == {"nightly", "weekly"}
    from flow45.config import load_config

    path = tmp_path / "weekly-only.yaml"
    path.write_text(textwrap.dedent(other))
    pruned = store.deploy(load_config(path), actor="ops", now=dt.datetime(2026, 3, 2), prune=True)
    assert [(w.workflow, w.change) for w in pruned.workflows] == [("weekly", "unchanged"), ("nightly", "retired")]
    assert {w.name for w in store.list_workflows("acme")} == {"weekly"}
    assert store.get_run(run).workflow == "nightly"  # its history stays
    with pytest.raises(IllegalTransition, match="acme/nightly is retired; deploy it again"):
        store.trigger("acme", "nightly", actor="ann", now=dt.datetime(2026, 3, 2))
    tick(dt.datetime(2026, 3, 5, 3))
    assert {r.workflow.name for r in Run.select().where(Run.trigger == "schedule")} == {"weekly"}
    restored = deploy_text(tmp_path, config("all"))
    assert ("nightly", "restored") in [(w.workflow, w.change) for w in restored.workflows]
    assert [e.kind for e in Event.select().where(Event.kind.in_(["retire", "restore"])).order_by(Event.id)] == \
        ["retire", "restore"]


def test_a_workflow_deployed_again_after_its_retirement_does_not_catch_up_the_nights_it_was_away(tmp_path):
    path = tmp_path / "nightly.yaml"
    path.write_text(textwrap.dedent(config("all")))
    away = tmp_path / "weekly-only.yaml"
    away.write_text(textwrap.dedent(config("none").replace("nightly:", "weekly:")))
    store.deploy(load_config(path), actor="ops", now=dt.datetime(2027, 12, 30, 12))
    tick(dt.datetime(2027, 12, 31, 2, 0, 5))
    store.deploy(load_config(away), actor="ops", now=dt.datetime(2027, 12, 31, 12), prune=True)  # nightly retired
    tick(dt.datetime(2028, 1, 1, 2, 0, 5))
    store.deploy(load_config(path), actor="ops", now=dt.datetime(2028, 2, 29, 12))  # back on 29 February
    tick(dt.datetime(2028, 3, 1, 2, 0, 5))
    nightly = [r.logical_time for r in Run.select().join(Workflow).where(Workflow.name == "nightly")
               .order_by(Run.logical_time)]
    assert nightly == [dt.datetime(2027, 12, 31, 2), dt.datetime(2028, 3, 1, 2)]  # the nights away are not made
