"""A task's `timeout`: an attempt may run that long from its claim, whatever progress it reports
(Airflow's execution_timeout, Temporal's start-to-close). Past it the lease sweep fails the attempt as
timed out, counted against retries, and the worker's late submit is stale."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.config import WorkflowSpec
from flow45.errors import StaleToken
from flow45.migrate import _task_timeout_v18
from flow45.models import Attempt, Event
from flow45.store.specs import spec_document
from tests.store.helpers import (BLOB, claim, config_refusal, deploy_text, instance, states, task_refusal,
                                 upgraded_from_before)

pytestmark = pytest.mark.usefixtures("store_db")

LEAP_DAY = dt.datetime(2028, 2, 29, 23, 30)  # the attempt runs over midnight into March
MICRO = dt.timedelta(microseconds=1)
SLOW = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      crunch:
        tasks:
          a: {function: fa, output: Blob, timeout: 1h, lease: 10m, retries: 1, retry_delay: 1m}
          b: {function: fb, output: Blob, inputs: {src: a}}
"""


def _progress_every_five_minutes(grant, until: dt.datetime):
    at, reply = LEAP_DAY, None
    while at + dt.timedelta(minutes=5) < until:
        at += dt.timedelta(minutes=5)
        reply = store.progress(grant.instance, grant.token, 50, "still going", now=at)
    return reply


def test_an_attempt_that_reports_progress_still_times_out_at_its_tasks_timeout(tmp_path):
    deploy_text(tmp_path, SLOW)
    run = store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY)
    grant = claim(run, "a", now=LEAP_DAY)
    deadline = LEAP_DAY + dt.timedelta(hours=1)
    assert grant.lease_expires_at == LEAP_DAY + dt.timedelta(minutes=10)

    last = _progress_every_five_minutes(grant, deadline)
    assert last.lease_expires_at == deadline  # the lease is renewed, but never past the timeout
    assert store.get_instance(grant.instance).timeout_at == deadline
    assert store.expire_leases(now=deadline - MICRO) == []
    assert store.expire_leases(now=deadline + MICRO) == [grant.instance]

    assert states(run)["a"] == "retry_wait"  # counted against its one retry
    ended = Attempt.get(Attempt.token == grant.token)
    assert ended.status == "expired"
    assert ended.error == "timed out at 2028-03-01 00:30:00 UTC: running longer than its task's timeout of 1h"
    expire = Event.select().where(Event.kind == "expire").get()
    assert expire.detail["error"] == ended.error
    with pytest.raises(StaleToken):
        store.submit(grant.instance, grant.token, BLOB, now=deadline)

    retried = deadline + dt.timedelta(minutes=2)
    store.release_due_retries(now=retried)
    again = claim(run, "a", now=retried)  # the next attempt has a timeout of its own
    assert store.get_instance(again.instance).timeout_at == retried + dt.timedelta(hours=1)
    store.submit(again.instance, again.token, BLOB, now=retried + dt.timedelta(minutes=59))
    assert states(run)["a"] == "succeeded"
    assert store.get_instance(again.instance).timeout_at is None  # it ended with its attempt


def test_a_lease_lapsing_before_the_timeout_is_still_told_as_an_expired_lease(tmp_path):
    deploy_text(tmp_path, SLOW)
    run = store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY)
    grant = claim(run, "a", now=LEAP_DAY)
    lapsed = LEAP_DAY + dt.timedelta(minutes=10) + MICRO
    assert store.expire_leases(now=lapsed) == [grant.instance]
    assert Attempt.get(Attempt.token == grant.token).error == "lease expired at 2028-02-29 23:40:00 UTC"


def test_a_parked_attempt_waits_for_its_callback_no_longer_than_the_timeout(tmp_path):
    deploy_text(tmp_path, SLOW)
    run = store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY)
    grant = claim(run, "a", now=LEAP_DAY)
    half_way = LEAP_DAY + dt.timedelta(minutes=30)
    parked = store.park(grant.instance, grant.token, None, now=half_way)  # no deadline of its own
    assert parked.lease_expires_at == LEAP_DAY + dt.timedelta(hours=1)
    later = claim(store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY), "a", now=LEAP_DAY)
    assert store.park(later.instance, later.token, 600, now=LEAP_DAY).lease_expires_at \
        == LEAP_DAY + dt.timedelta(minutes=10)  # a deadline within the timeout stays

    expired = store.expire_leases(now=LEAP_DAY + dt.timedelta(hours=1) + MICRO)
    assert sorted(expired) == sorted([grant.instance, later.instance])
    assert Attempt.get(Attempt.token == grant.token).error.startswith("timed out at 2028-03-01 00:30:00 UTC")
    assert Attempt.get(Attempt.token == later.token).error.startswith("callback deadline passed")


def test_a_task_without_a_timeout_runs_as_long_as_it_reports_progress(tmp_path):
    deploy_text(tmp_path, SLOW)
    run = store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY)
    a = claim(run, "a", now=LEAP_DAY)
    store.submit(a.instance, a.token, BLOB, now=LEAP_DAY)
    b = claim(run, "b", now=LEAP_DAY)
    assert store.get_instance(b.instance).timeout_at is None
    at = LEAP_DAY
    for _ in range(30):  # five hours of renewed leases
        at += dt.timedelta(minutes=10)
        store.progress(b.instance, b.token, None, "on", now=at)
    assert store.expire_leases(now=at + dt.timedelta(minutes=1)) == []
    assert instance(run, "b").state == "running"


def test_a_task_without_a_timeout_is_stored_as_before_tasks_had_one():
    """The stored document, and so its content hash: a redeploy after an upgrade makes no new version."""
    workflow = WorkflowSpec.model_validate({"tasks": {"a": {"function": "make", "output": "Document"}}})
    assert spec_document(workflow, {})["workflow"]["tasks"]["a"] == {
        "function": "make", "output": "Document", "description": None, "inputs": {}, "after": [], "retries": 0,
        "retry_delay": None, "retry_backoff": 1.0, "max_retry_delay": None, "lease": None, "priority": 0,
        "human": False, "assignees": [], "due": None, "reminders": [], "overdue": None, "undo": "none",
        "wait": None, "wait_until": None}
    timed = WorkflowSpec.model_validate({"tasks": {"a": {"function": "make", "output": "Document", "timeout": "90m"}}})
    assert spec_document(timed, {})["workflow"]["tasks"]["a"]["timeout"] == 5400.0


@pytest.mark.parametrize("task, problem", [
    ("{function: approve, human: true, output: Blob, timeout: 1h}",
     "timeout: a human task has no worker's attempt to time out"),
    ("{wait: 1h, timeout: 1h}", "a timer (wait) has no worker and no output: remove timeout"),
    ("{function: fa, output: Blob, timeout: 0s}", "timeout: Input should be greater than 0"),
    ("{function: fa, output: Blob, timeout: 40000d}", "timeout: 40000d is longer than a century"),
])
def test_a_timeout_that_cannot_apply_is_refused_naming_the_task(tmp_path, task, problem):
    refused = task_refusal(tmp_path, task)
    assert "workflows.w.tasks.a" in refused and problem in refused


def test_a_workflows_timeout_past_a_century_is_refused_as_its_sla_is(tmp_path):
    """A run's timeout is subtracted from now by the scheduler's sweep, which a century must not overflow."""
    refused = config_refusal(tmp_path, "{w: {timeout: 5000000d, tasks: {a: {function: fa, output: Blob}}}}")
    assert "workflows.w.timeout: 5000000d is longer than a century" in refused


def test_a_store_from_before_task_timeouts_is_upgraded_and_times_out_attempts(tmp_path):
    upgraded_from_before(_task_timeout_v18, "task_instance", "timeout_at")
    deploy_text(tmp_path, SLOW)
    run = store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY)
    grant = claim(run, "a", now=LEAP_DAY)
    _progress_every_five_minutes(grant, LEAP_DAY + dt.timedelta(hours=1))
    assert store.expire_leases(now=LEAP_DAY + dt.timedelta(hours=1, seconds=1)) == [grant.instance]
    assert Attempt.get(Attempt.token == grant.token).error.startswith("timed out")


def test_the_schedulers_tick_tells_a_timed_out_attempt_from_an_expired_lease(tmp_path):
    from flow45 import scheduler

    deploy_text(tmp_path, SLOW)
    timed = claim(store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY), "a", now=LEAP_DAY)
    lapsed = claim(store.trigger("acme", "crunch", actor="ann", now=LEAP_DAY), "a", now=LEAP_DAY)
    _progress_every_five_minutes(timed, LEAP_DAY + dt.timedelta(hours=1))
    report = scheduler.tick(LEAP_DAY + dt.timedelta(hours=1, seconds=1))
    assert (report.attempts_timed_out, report.expired) == ([timed.instance], [lapsed.instance])
    assert f"task instance {timed.instance}: attempt ran past its task's timeout, failed" in report.lines()
    assert "attempts_timed_out" in scheduler.ACTIONS

