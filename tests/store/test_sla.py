"""A workflow's `sla`: the scheduler's sweep writes one `sla_missed` event per unfinished run past it,
on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.models import Event
from tests.store.helpers import T0, complete, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

CONFIG = """
    team: acme
    types:
      Ok: {fields: {ok: boolean}}
    workflows:
      job:
        sla: 1h30m
        max_active_runs: 1
        tasks:
          work: {function: work, output: Ok}
      plain:
        tasks:
          work: {function: work, output: Ok}
"""


def test_sla_missed_once_per_unfinished_run_counted_from_the_trigger(tmp_path):
    deploy_text(tmp_path, CONFIG)
    done = store.trigger("acme", "job", actor="ann", now=T0)
    queued = store.trigger("acme", "job", actor="ann", now=T0 + dt.timedelta(minutes=10))
    store.trigger("acme", "plain", actor="ann", now=T0)
    complete(done, "work", {"ok": True}, now=T0 + dt.timedelta(minutes=20))
    assert store.get_run(queued).status == "running", "it waited in the queue; its SLA counts from its trigger"
    assert store.sla_missed(now=T0 + dt.timedelta(minutes=99)) == []
    assert store.sla_missed(now=T0 + dt.timedelta(minutes=100)) == [queued]
    assert store.sla_missed(now=T0 + dt.timedelta(hours=5)) == [], "once per run; a finished run and no sla: none"
    [event] = Event.select().where(Event.kind == "sla_missed")
    assert (event.team, event.run, event.actor) == ("acme", queued, "flow45-scheduler")
    assert event.detail == {"workflow": "job", "sla": "90m", "triggered": "2026-03-01T12:10:00Z",
                            "due": "2026-03-01T13:40:00Z"}


def test_a_run_whose_sla_cannot_be_recorded_does_not_stop_the_others(tmp_path, monkeypatch, caplog):
    deploy_text(tmp_path, CONFIG.replace("max_active_runs: 1", "max_active_runs: 2"))
    first = store.trigger("acme", "job", actor="ann", now=T0)
    second = store.trigger("acme", "job", actor="ann", now=T0 + dt.timedelta(seconds=1))
    from flow45.store import sweep

    specs, calls = sweep.version_spec, []

    def broken_the_first_time(version_id):
        calls.append(version_id)
        if len(calls) == 1:
            raise RuntimeError("a bug")
        return specs(version_id)

    monkeypatch.setattr(sweep, "version_spec", broken_the_first_time)
    assert store.sla_missed(now=T0 + dt.timedelta(hours=2)) == [second]
    assert f"run {first}: recording its missed SLA failed; left as it was" in caplog.text
    monkeypatch.setattr(sweep, "version_spec", specs)
    assert store.sla_missed(now=T0 + dt.timedelta(hours=2)) == [first], "left as it was: recorded on the next sweep"
