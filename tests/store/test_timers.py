"""Timers (`wait`, `wait_until`): no worker, they succeed by themselves when due; on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.models import Attempt, Event, Outbox
from flow45.scheduler import tick
from tests.store.helpers import BLOB, T0, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

COOL_DOWN = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      cool:
        tasks:
          load: {function: fload, output: Blob}
          settle: {wait: 30m, after: [load]}
          publish: {function: fpublish, output: Blob, inputs: {data: load}, after: [settle]}
"""

NIGHTLY = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      nightly:
        schedule: {cron: "0 1 * * *", timezone: Europe/Amsterdam}
        tasks:
          not_before_six: {wait_until: "06:00"}
          publish: {function: fpublish, output: Blob, after: [not_before_six]}
"""
MICRO = dt.timedelta(microseconds=1)


def test_wait_succeeds_when_due_and_not_a_microsecond_before(tmp_path):
    deploy_text(tmp_path, COOL_DOWN)
    run = store.trigger("acme", "cool", actor="ann", now=T0)
    ready = T0 + dt.timedelta(minutes=5)
    complete(run, "load", BLOB, now=ready)
    settle = instance(run, "settle")
    assert settle.state == "waiting" and settle.not_before == ready + dt.timedelta(minutes=30)
    assert not Outbox.select().where(Outbox.instance == settle.id).exists(), "no worker is offered a timer"
    assert store.get_run(run).waiting_for == "settle (timer, due 2026-03-01 12:35Z)"

    assert store.fire_due_timers(settle.not_before - MICRO) == []
    assert states(run)["settle"] == "waiting"
    report = tick(settle.not_before)
    assert report.timers == [settle.id]
    assert states(run) == {"load": "succeeded", "settle": "succeeded", "publish": "available"}
    event = Event.get((Event.instance == settle.id) & (Event.kind == "timer"))
    assert (event.from_state, event.to_state, event.actor) == ("waiting", "succeeded", "flow45-scheduler")
    assert event.detail["due"] == "2026-03-01T12:35:00Z"
    [attempt] = Attempt.select().where(Attempt.instance == settle.id)
    assert (attempt.status, attempt.worker, attempt.output) == ("succeeded", "flow45-scheduler", None)
    complete(run, "publish", BLOB, now=settle.not_before)
    assert store.get_run(run).status == "succeeded"


def test_wait_until_is_a_time_of_day_on_the_logical_day_in_the_schedule_timezone(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    # The 01:00 Amsterdam tick of 1 July (summer time, UTC+2) is 23:00 UTC on 30 June.
    logical = dt.datetime(2026, 6, 30, 23, 0)
    run = store.trigger("acme", "nightly", actor="flow45-scheduler", now=logical, trigger_kind="schedule",
                        logical_time=logical)
    timer = instance(run, "not_before_six")
    assert timer.state == "waiting" and timer.not_before == dt.datetime(2026, 7, 1, 4, 0)
    assert "not_before_six (timer, due 2026-07-01 04:00Z)" == store.get_run(run).waiting_for
    assert [r.waiting_for for r in store.list_runs()] == ["not_before_six (timer, due 2026-07-01 04:00Z)"]
    assert store.fire_due_timers(dt.datetime(2026, 7, 1, 4, 0) - MICRO) == []
    assert store.fire_due_timers(dt.datetime(2026, 7, 1, 4, 0)) == [timer.id]
    assert states(run)["publish"] == "available"


def test_undo_re_arms_a_timer_and_hold_keeps_it_from_firing(tmp_path):
    deploy_text(tmp_path, COOL_DOWN)
    run = store.trigger("acme", "cool", actor="ann", now=T0)
    complete(run, "load", BLOB, now=T0)
    settle = instance(run, "settle")
    store.fire_due_timers(T0 + dt.timedelta(minutes=30))
    assert states(run)["publish"] == "available"

    later = T0 + dt.timedelta(hours=2)
    plan = store.undo(settle.id, "publish again after a fresh cool-down", actor="ann", now=later)
    assert [(a.task, a.becomes) for a in plan.affected] == [("settle", "waiting"), ("publish", "pending")]
    again = instance(run, "settle")
    assert again.state == "waiting" and again.not_before == later + dt.timedelta(minutes=30)
    assert again.attempt == settle.attempt + 1
    assert Attempt.get(Attempt.instance == settle.id).archived, "the first firing is kept, superseded"

    store.hold(again.id, actor="ann", now=later)
    assert store.fire_due_timers(later + dt.timedelta(hours=1)) == []
    store.release(again.id, actor="ann", now=later + dt.timedelta(hours=1))
    released = instance(run, "settle")
    assert released.state == "waiting" and released.not_before == later + dt.timedelta(hours=1, minutes=30)
    assert store.fire_due_timers(released.not_before) == [settle.id]
    assert states(run)["publish"] == "available"


def test_undoing_the_upstream_re_arms_the_timer_when_it_is_ready_again(tmp_path):
    deploy_text(tmp_path, COOL_DOWN)
    run = store.trigger("acme", "cool", actor="ann", now=T0)
    complete(run, "load", BLOB, now=T0)
    store.fire_due_timers(T0 + dt.timedelta(minutes=30))
    load = instance(run, "load")
    store.undo(load.id, "bad load", actor="ann", now=T0 + dt.timedelta(hours=1))
    assert states(run) == {"load": "available", "settle": "pending", "publish": "pending"}
    complete(run, "load", BLOB, now=T0 + dt.timedelta(hours=3))
    assert instance(run, "settle").not_before == T0 + dt.timedelta(hours=3, minutes=30)


@pytest.mark.parametrize("logical, due", [
    # 29 March: Amsterdam's clocks skip 02:00-02:59; 02:30 is taken as 03:30 summer time, an hour later.
    (dt.datetime(2026, 3, 28, 23, 0), dt.datetime(2026, 3, 29, 1, 30)),
    # 25 October: 02:00-02:59 happens twice; the timer fires at the first 02:30, summer time.
    (dt.datetime(2026, 10, 24, 22, 0), dt.datetime(2026, 10, 25, 0, 30)),
    # 29 February, winter time: 02:30 is 01:30 UTC.
    (dt.datetime(2028, 2, 29, 0, 0), dt.datetime(2028, 2, 29, 1, 30)),
])
def test_wait_until_on_the_nights_the_clocks_change_fires_once_at_a_time_that_exists(tmp_path, logical, due):
    deploy_text(tmp_path, NIGHTLY.replace('"06:00"', '"02:30"'))
    run = store.trigger("acme", "nightly", actor="flow45-scheduler", now=logical, trigger_kind="schedule",
                        logical_time=logical)
    timer = instance(run, "not_before_six")
    assert timer.not_before == due
    assert store.fire_due_timers(due - MICRO) == []
    assert store.fire_due_timers(due) == [timer.id]
    assert store.fire_due_timers(due + dt.timedelta(hours=1)) == []  # the hour that comes again fires nothing more
