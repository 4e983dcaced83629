"""A workflow's `timeout`: a run still running that long after it started (or started again) is
cancelled by the scheduler, and the run it kept waiting under `max_active_runs` starts."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import StaleToken
from flow45.models import Event
from flow45.notify.events import notify_kinds
from flow45.scheduler import tick
from tests.store.helpers import BLOB, DIAMOND, claim, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")

T0 = dt.datetime(2026, 2, 28, 23, 0)  # over the end of February, into the 1st of March
HOUR = dt.timedelta(hours=1)
TIMED = DIAMOND.replace("max_active_runs: 1", "max_active_runs: 1\n        timeout: 2h")


def status(run: int) -> str:
    return store.get_run(run).status


def test_a_run_past_its_timeout_is_cancelled_and_the_queued_one_starts_with_its_own_time(tmp_path):
    deploy_text(tmp_path, TIMED)
    stuck = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(stuck, "a", now=T0)  # a worker took it, and went quiet renewing its lease
    waiting = store.trigger("acme", "diamond", actor="ann", now=T0 + HOUR)
    assert (status(stuck), status(waiting)) == ("running", "queued")

    assert tick(T0 + 2 * HOUR - dt.timedelta(seconds=1)).timed_out == []
    report = tick(T0 + 2 * HOUR)
    assert report.timed_out == [stuck] and report.errors == []
    assert (status(stuck), status(waiting)) == ("cancelled", "running")
    [cancel] = Event.select().where((Event.run == stuck) & (Event.kind == "cancel") & Event.instance.is_null())
    assert cancel.actor == "flow45-scheduler"
    assert cancel.detail["reason"] == "timed out: running for 2h, longer than its workflow's timeout of 2h"
    [shown] = store.list_events(ids=[cancel.id])
    assert notify_kinds(shown) == ["run_timed_out"] and cancel.detail["timeout"] == "2h"  # `notify` can post it
    view = store.get_run(stuck)
    assert (view.cancelled_by, view.cancel_reason) == ("flow45-scheduler", cancel.detail["reason"])
    with pytest.raises(StaleToken):  # the quiet worker's attempt was revoked with the run
        store.submit(grant.instance, grant.token, BLOB, now=T0 + 2 * HOUR)

    # The run that waited counts from its start (when the slot came free), not from its trigger.
    assert tick(T0 + 3 * HOUR).timed_out == []
    assert tick(T0 + 4 * HOUR).timed_out == [waiting]


def test_a_run_running_again_after_an_undo_counts_from_then(tmp_path):
    deploy_text(tmp_path, TIMED)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    for task in ("a", "b", "c", "d"):
        grant = claim(run, task, now=T0)
        store.submit(grant.instance, grant.token, BLOB, now=T0)
    assert status(run) == "succeeded"
    later = T0 + 24 * HOUR
    store.undo(instance(run, "d").id, actor="ann", reason="bad numbers", now=later)
    assert status(run) == "running"
    assert tick(later + HOUR).timed_out == []
    assert tick(later + 2 * HOUR).timed_out == [run]


def test_a_run_of_a_version_without_a_timeout_keeps_running_when_the_next_version_has_one(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 2"))
    old = store.trigger("acme", "diamond", actor="ann", now=T0)
    deploy_text(tmp_path, TIMED.replace("max_active_runs: 1", "max_active_runs: 2"))
    new = store.trigger("acme", "diamond", actor="ann", now=T0)
    assert tick(T0 + 30 * HOUR).timed_out == [new]
    assert (status(old), status(new)) == ("running", "cancelled")
