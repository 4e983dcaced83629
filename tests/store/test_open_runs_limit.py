"""A team's runs queued or running are limited (max_open_runs, per team if its settings say so), and
so are the task instances they hold (max_open_instances): a team's runaway triggers, its wide runs,
a backfill, its schedules or its connected workflows cannot fill the store every team shares. Past a
limit a trigger is refused (limit_reached) naming the team and the limit; a backfill is refused
whole; scheduled runs wait for the team to go under it; a connected run is refused on both ledgers,
and the upstream submit that finished its run still counts."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import LimitReached
from flow45.models import Event, Run, ScheduleCursor
from flow45.scheduler import tick
from flow45.settings import Settings, TeamSettings, current_settings, use_settings
from tests.scheduler.helpers import runs, scheduled, skip_events
from tests.store.helpers import T0, complete, deploy_text
from tests.store.test_connected import MONTHLY, NIGHTLY, OUTPUT

pytestmark = pytest.mark.usefixtures("store_db")

ONE_TASK = """
    team: {team}
    types:
      Blob: {{fields: {{uri: string}}}}
    workflows:
      job:
        max_active_runs: 1
        tasks:
          a: {{function: fa, output: Blob}}
"""


FOUR_TASKS = """
    team: {team}
    types:
      Blob: {{fields: {{uri: string}}}}
    workflows:
      wide:
        max_active_runs: null
        tasks:
          root: {{function: fa, output: Blob}}
          b: {{function: fb, output: Blob, inputs: {{x: root}}}}
          c: {{function: fb, output: Blob, inputs: {{x: root}}}}
          d: {{function: fb, output: Blob, inputs: {{x: root}}}}
      job:
        max_active_runs: null
        tasks:
          a: {{function: fa, output: Blob}}
"""


def limited(limit: int, **teams: int) -> None:
    use_settings(Settings(database_url=current_settings().database_url, max_open_runs=limit,
                          teams={team: TeamSettings(max_open_runs=own) for team, own in teams.items()}))


def limited_instances(limit: int, **teams: int) -> None:
    use_settings(Settings(database_url=current_settings().database_url, max_open_instances=limit,
                          teams={team: TeamSettings(max_open_instances=own) for team, own in teams.items()}))


def test_a_trigger_past_the_teams_limit_is_refused_and_another_team_goes_on(tmp_path):
    deploy_text(tmp_path, ONE_TASK.format(team="acme"))
    deploy_text(tmp_path, ONE_TASK.format(team="rival"))
    limited(3)
    made = [store.trigger("acme", "job", actor="ann", now=T0) for _ in range(3)]  # one running, two queued
    with pytest.raises(LimitReached) as refused:
        store.trigger("acme", "job", actor="ann", now=T0)
    assert refused.value.code == "limit_reached"
    assert refused.value.message == ("team acme has 3 runs queued or running, and another would pass its limit of 3 "
                                     "(max_open_runs): let some finish, or cancel some, first")
    assert Run.select().where(Run.team == "acme").count() == 3
    store.trigger("rival", "job", actor="rita", now=T0)  # another team's own count
    store.cancel_run(made[-1], actor="ann", now=T0)
    store.trigger("acme", "job", actor="ann", now=T0)  # under the limit again: counted afresh


def test_a_teams_own_limit_wins_over_the_installations(tmp_path):
    deploy_text(tmp_path, ONE_TASK.format(team="acme"))
    deploy_text(tmp_path, ONE_TASK.format(team="rival"))
    limited(100, rival=1)
    store.trigger("rival", "job", actor="rita", now=T0)
    with pytest.raises(LimitReached, match="its limit of 1"):
        store.trigger("rival", "job", actor="rita", now=T0)
    for _ in range(5):
        store.trigger("acme", "job", actor="ann", now=T0)


def test_a_backfill_that_would_pass_the_limit_is_refused_whole(tmp_path):
    deploy_text(tmp_path, scheduled("0 6 * * *", max_active_runs=None))
    limited(5)
    with pytest.raises(LimitReached, match="has 0 runs queued or running, and 6 more would pass its limit of 5"):
        store.backfill("acme", "nightly", dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 7), actor="ann", now=T0)
    assert Run.select().count() == 0
    made = store.backfill("acme", "nightly", dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 5, 12), actor="ann", now=T0)
    assert len(made.items) == 5


def test_scheduled_runs_wait_for_the_team_to_go_under_its_limit(tmp_path):
    deploy_text(tmp_path, scheduled("0 * * * *", catchup="all", max_active_runs=None))  # hourly, deployed at T0
    limited(2)
    tick(T0 + dt.timedelta(hours=3, minutes=1))  # ticks at 13:00, 14:00, 15:00: room for two
    assert [r.logical_time.hour for r in runs()] == [13, 14]
    report = tick(T0 + dt.timedelta(hours=3, minutes=2))
    assert report.errors == [] and report.created == [] and skip_events() == []
    assert ScheduleCursor.get().last_tick.hour == 14  # 15:00 waits
    complete(runs()[0].id, "a", {"uri": "s3://done"})
    report = tick(T0 + dt.timedelta(hours=3, minutes=3))
    assert [r.logical_time.hour for r in report.created] == [15]


def test_a_connected_run_past_the_limit_is_refused_on_both_ledgers(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, MONTHLY)
    limited(100, reports=1)
    store.trigger("reports", "monthly", {"month": "2026-01"}, actor="rita", now=T0)
    upstream = store.trigger("ops", "nightly", actor="ann", now=T0)
    complete(upstream, "load", OUTPUT)
    complete(upstream, "publish", OUTPUT)  # finishes the run: its submit is applied all the same
    assert Run.get_by_id(upstream).status == "succeeded"
    assert Run.select().where(Run.upstream_run == upstream).count() == 0
    for team in ("ops", "reports"):
        refused = Event.get((Event.team == team) & (Event.kind == "connect_refused"))
        assert "team reports has 1 run queued or running" in refused.detail["error"]


def test_ticks_passed_over_while_a_scheduled_run_waits_are_passed_over_once(tmp_path):
    """catchup: latest. The newest tick waits for the team's limit; the older ones it passes over are
    recorded once, not again on every tick it waits."""
    deploy_text(tmp_path, scheduled("0 * * * *", catchup="latest", max_active_runs=None))
    limited(1)
    manual = store.trigger("acme", "nightly", actor="ann", now=T0)  # the team's one open run
    for minute in (1, 2, 3):
        report = tick(T0 + dt.timedelta(hours=3, minutes=minute))
        assert report.errors == [] and report.created == []
    assert [(e["ticks"], e["first"], e["last"]) for e in skip_events()] == [(2, "2026-03-01T13:00:00Z",
                                                                             "2026-03-01T14:00:00Z")]
    complete(manual, "a", {"uri": "s3://done"})
    assert [r.logical_time.hour for r in tick(T0 + dt.timedelta(hours=3, minutes=4)).created] == [15]
    assert len(skip_events()) == 1


def test_a_run_whose_instances_would_pass_the_teams_limit_is_refused_and_a_smaller_one_fits(tmp_path):
    deploy_text(tmp_path, FOUR_TASKS.format(team="acme"))
    deploy_text(tmp_path, FOUR_TASKS.format(team="rival"))
    limited_instances(10)
    first = store.trigger("acme", "wide", actor="ann", now=T0)
    store.trigger("acme", "wide", actor="ann", now=T0)  # 8 instances held
    with pytest.raises(LimitReached) as refused:
        store.trigger("acme", "wide", actor="ann", now=T0)
    assert refused.value.code == "limit_reached"
    assert refused.value.message == (
        "team acme has 8 task instances in runs queued or running, and another of 4 tasks would pass its limit "
        "of 10 (max_open_instances): let some finish, or cancel some, first")
    assert Run.select().where(Run.team == "acme").count() == 2
    store.trigger("acme", "job", actor="ann", now=T0)  # one task: 9
    store.trigger("rival", "wide", actor="rita", now=T0)  # another team's own count
    for task in ("root", "b", "c", "d"):
        complete(first, task, {"uri": "s3://done"})  # a finished run holds none
    store.trigger("acme", "wide", actor="ann", now=T0)


def test_a_teams_own_instance_limit_wins_and_a_run_larger_than_it_is_refused(tmp_path):
    deploy_text(tmp_path, FOUR_TASKS.format(team="acme"))
    deploy_text(tmp_path, FOUR_TASKS.format(team="rival"))
    limited_instances(100, rival=3)
    with pytest.raises(LimitReached, match="team rival has 0 task instances .* another of 4 tasks would pass its "
                                           "limit of 3"):
        store.trigger("rival", "wide", actor="rita", now=T0)
    for _ in range(25):
        store.trigger("acme", "wide", actor="ann", now=T0)  # 100, counted afresh past half the limit
    with pytest.raises(LimitReached, match="has 100 task instances"):
        store.trigger("acme", "wide", actor="ann", now=T0)
    assert Run.select().where(Run.team == "acme").count() == 25


def test_a_backfill_whose_instances_would_pass_the_limit_is_refused_whole(tmp_path):
    deploy_text(tmp_path, scheduled("0 6 * * *", max_active_runs=None))
    limited_instances(5)
    with pytest.raises(LimitReached, match="has 0 task instances in runs queued or running, and 6 more of 1 task "
                                           "would pass its limit of 5"):
        store.backfill("acme", "nightly", dt.datetime(2026, 3, 1), dt.datetime(2026, 3, 7), actor="ann", now=T0)
    assert Run.select().count() == 0


def test_scheduled_runs_wait_for_the_team_to_go_under_its_instance_limit(tmp_path):
    deploy_text(tmp_path, scheduled("0 * * * *", catchup="all", max_active_runs=None))  # hourly, deployed at T0
    limited_instances(2)
    tick(T0 + dt.timedelta(hours=3, minutes=1))  # ticks at 13:00, 14:00, 15:00: room for two runs of one task
    assert [r.logical_time.hour for r in runs()] == [13, 14]
    complete(runs()[0].id, "a", {"uri": "s3://done"})
    assert [r.logical_time.hour for r in tick(T0 + dt.timedelta(hours=3, minutes=2)).created] == [15]
