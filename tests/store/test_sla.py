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
