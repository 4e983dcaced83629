"""A task's `start_within` (Temporal's schedule-to-start, Conductor's pollTimeoutSeconds): an offer no
worker claims in time fails the instance, not retried, saying so; the run fails and tells, instead of
waiting unseen for workers that are gone."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import scheduler, store
from flow45.errors import StaleToken
from flow45.models import Event
from tests.store.helpers import BLOB, claim, deploy_blob_tasks, instance, states, task_refusal

pytestmark = pytest.mark.usefixtures("store_db")

NEW_YEAR = dt.datetime(2026, 12, 31, 23, 55)  # the offer waits into the new year
SECOND = dt.timedelta(seconds=1)
WAITING = ["a: {function: fa, output: Blob, start_within: 10m, retries: 3, retry_delay: 1m}",
           "b: {function: fb, output: Blob, inputs: {src: a}}"]


def test_an_offer_nobody_claims_in_time_fails_the_instance_and_the_run(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", WAITING)
    run = store.trigger("acme", "nightly", actor="ann", now=NEW_YEAR)
    offered = instance(run, "a")
    deadline = NEW_YEAR + dt.timedelta(minutes=10)
    assert offered.lease_expires_at == deadline
    assert store.fail_unclaimed(now=deadline - SECOND) == []
    report = scheduler.tick(deadline + SECOND)
    assert report.unclaimed == [offered.id]
    assert f"task instance {offered.id}: no worker claimed it within its task's start_within, failed" in report.lines()
    assert states(run) == {"a": "failed", "b": "pending"} and store.get_run(run).status == "failed"
    [event] = Event.select().where((Event.instance == offered.id) & (Event.kind == "expire"))
    assert (event.from_state, event.to_state) == ("available", "failed")
    assert event.detail["error"] == ("no worker claimed it within 10m of its offer, by 2027-01-01 00:05:00 UTC: "
                                     "is a worker for fa running?")  # not retried: nobody is there to take it
    from flow45.notify.events import notify_kinds, text
    from flow45.views import EventView

    told = EventView(id=event.id, at=event.at, team="acme", run=run, instance=offered.id, kind="expire",
                     from_state="available", to_state="failed", actor="scheduler", detail=event.detail)
    assert notify_kinds(told) == ["retries_exhausted", "unclaimed"]  # a team can route this one apart
    assert text(told, notify_kinds(told)) == (
        f"[acme] task instance {offered.id} of run {run} failed: no worker claimed it within 10m of its offer, "
        f"by 2027-01-01 00:05:00 UTC: is a worker for fa running? (event {event.id})")
    with pytest.raises(StaleToken):  # a worker that comes back late finds the offer gone
        store.claim(offered.id, offered.token, "late-worker", now=deadline + 2 * SECOND)

    store.retry_instance(offered.id, actor="ann", now=deadline + dt.timedelta(hours=1))  # the workers are back
    again = instance(run, "a")
    assert again.lease_expires_at == deadline + dt.timedelta(hours=1, minutes=10)  # a new offer, a new deadline
    grant = claim(run, "a", now=deadline + dt.timedelta(hours=1, minutes=9))
    assert grant.lease_expires_at == deadline + dt.timedelta(hours=1, minutes=14)  # its lease, from the claim
    assert store.fail_unclaimed(now=deadline + dt.timedelta(hours=2)) == []
    store.submit(grant.instance, grant.token, BLOB, now=deadline + dt.timedelta(hours=1, minutes=10))
    assert instance(run, "b").lease_expires_at is None  # b has no start_within


def test_a_retry_is_a_new_offer_with_a_new_deadline(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", WAITING)
    run = store.trigger("acme", "nightly", actor="ann", now=NEW_YEAR)
    grant = claim(run, "a", now=NEW_YEAR + dt.timedelta(minutes=9))
    store.fail(grant.instance, grant.token, "flaky", now=NEW_YEAR + dt.timedelta(minutes=20))
    store.release_due_retries(now=NEW_YEAR + dt.timedelta(minutes=21))
    assert instance(run, "a").lease_expires_at == NEW_YEAR + dt.timedelta(minutes=31)
    assert store.fail_unclaimed(now=NEW_YEAR + dt.timedelta(minutes=30)) == []
    assert states(run)["a"] == "available"


@pytest.mark.parametrize("task, problem", [
    ("{function: approve, human: true, output: Blob, start_within: 1h}",
     "start_within: a human task waits for a person"),
    ("{wait: 1h, start_within: 1h}", "a timer (wait) has no worker and no output: remove start_within"),
    ("{function: fa, output: Blob, start_within: 0s}", "start_within: Input should be greater than 0"),
    ("{function: fa, output: Blob, start_within: 40000d}", "start_within: 40000d is longer than a century"),
])
def test_a_start_within_that_cannot_apply_is_refused_naming_the_task(tmp_path, task, problem):
    refused = task_refusal(tmp_path, task)
    assert "workflows.w.tasks.a" in refused and problem in refused
