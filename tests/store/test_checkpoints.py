"""Checkpoints: a worker says where its attempt got to with its progress, and the instance's next
attempt (a retry, or after an expired lease) gets the last one in its claim's answer, so a long task
resumes instead of starting over (Temporal's heartbeat details). An undo starts afresh."""

from __future__ import annotations

import datetime as dt

import pytest
from pydantic import ValidationError

from flow45 import messages as m
from flow45 import store
from flow45.errors import InvalidCheckpoint, StaleToken
from flow45.migrate import _checkpoints_v20
from flow45.models import Attempt
from tests.store.helpers import BLOB, claim, deploy_blob_tasks, instance, states, upgraded_from_before

pytestmark = pytest.mark.usefixtures("store_db")

NEW_YEARS_EVE = dt.datetime(2026, 12, 31, 23, 50)  # the attempts run into the new year
LONG = ["a: {function: fa, output: Blob, lease: 10m, retries: 2, retry_delay: 1m}",
        "b: {function: fb, output: Blob, inputs: {src: a}}"]


def _after(minutes: float) -> dt.datetime:
    return NEW_YEARS_EVE + dt.timedelta(minutes=minutes)


def _retried(run: int, minutes: float):
    store.release_due_retries(now=_after(minutes))
    return claim(run, "a", now=_after(minutes))


def test_a_retry_resumes_from_where_the_failed_attempt_got_to(tmp_path):
    deploy_blob_tasks(tmp_path, "load", LONG)
    run = store.trigger("acme", "load", actor="ann", now=NEW_YEARS_EVE)
    first = claim(run, "a", now=NEW_YEARS_EVE)
    assert first.checkpoint is None  # nothing done yet: start from the top
    store.progress(first.instance, first.token, 40, "files", checkpoint={"done": 400}, now=_after(2))
    store.progress(first.instance, first.token, 60, "files", checkpoint={"done": 600, "last": "f-600"}, now=_after(4))
    store.progress(first.instance, first.token, 61, "still going", now=_after(5))  # none sent: the last one stays
    store.fail(first.instance, first.token, "disk full", now=_after(6))

    second = _retried(run, 20)
    assert second.attempt == 2
    assert second.checkpoint == {"done": 600, "last": "f-600"}
    assert Attempt.get(Attempt.token == first.token).checkpoint == {"done": 600, "last": "f-600"}
    store.submit(second.instance, second.token, BLOB, now=_after(30))
    assert claim(run, "b", now=_after(30)).checkpoint is None  # another instance's attempts are not its own


def test_after_an_expired_lease_and_an_attempt_that_said_nothing_the_last_checkpoint_sent_is_given(tmp_path):
    deploy_blob_tasks(tmp_path, "load", LONG)
    run = store.trigger("acme", "load", actor="ann", now=NEW_YEARS_EVE)
    first = claim(run, "a", now=NEW_YEARS_EVE)
    store.progress(first.instance, first.token, checkpoint=["2026-12-31", 17], now=_after(1))
    assert store.expire_leases(now=_after(12)) == [first.instance]  # the worker vanished

    second = _retried(run, 15)
    assert second.checkpoint == ["2026-12-31", 17]
    store.fail(second.instance, second.token, "crashed before its first checkpoint", now=_after(16))
    third = _retried(run, 30)
    assert third.attempt == 3 and third.checkpoint == ["2026-12-31", 17]


def test_an_undo_starts_the_instance_afresh_and_an_operators_retry_does_not(tmp_path):
    deploy_blob_tasks(tmp_path, "load", [LONG[0].replace("retries: 2", "retries: 0"), LONG[1]])
    run = store.trigger("acme", "load", actor="ann", now=NEW_YEARS_EVE)
    first = claim(run, "a", now=NEW_YEARS_EVE)
    store.progress(first.instance, first.token, checkpoint={"page": 3}, now=_after(1))
    store.fail(first.instance, first.token, "upstream API down", now=_after(2))
    assert states(run)["a"] == "failed"

    store.retry_instance(first.instance, actor="ann", now=_after(3))  # the same instance, on from where it got to
    second = claim(run, "a", now=_after(3))
    assert second.checkpoint == {"page": 3}
    store.progress(second.instance, second.token, checkpoint={"page": 9}, now=_after(4))
    store.submit(second.instance, second.token, BLOB, now=_after(15))

    store.undo(first.instance, "the source was wrong; load it again", actor="ann", now=_after(20))
    again = claim(run, "a", now=_after(21))
    assert again.attempt == 3 and again.checkpoint is None
    archived = Attempt.select().where(Attempt.instance == first.instance, Attempt.archived == True)  # noqa: E712
    assert sorted(a.checkpoint["page"] for a in archived) == [3, 9]  # kept for the record


def test_a_stale_attempts_checkpoint_is_refused_and_not_kept(tmp_path):
    deploy_blob_tasks(tmp_path, "load", LONG)
    run = store.trigger("acme", "load", actor="ann", now=NEW_YEARS_EVE)
    first = claim(run, "a", now=NEW_YEARS_EVE)
    store.expire_leases(now=_after(11))
    second = _retried(run, 15)
    with pytest.raises(StaleToken):
        store.progress(first.instance, first.token, checkpoint={"done": 999}, now=_after(16))
    assert Attempt.get(Attempt.token == first.token).checkpoint is None
    store.fail(second.instance, second.token, "again", now=_after(17))
    assert _retried(run, 30).checkpoint is None


@pytest.mark.parametrize("checkpoint, problem", [
    ({"cursor": "x" * 5000}, "checkpoint is 5013 bytes of JSON, over 4096: keep where the work got to, not the work"),
    ({"resume_url": "https://u:hunter2@example.com/x"},
     "checkpoint refused, checkpoint.resume_url: the value looks like a URL with a password"),
    ({"api_key": "k-123"}, "checkpoint refused, checkpoint.api_key: the field name looks like a secret"),
])
def test_a_checkpoint_that_cannot_be_kept_is_refused_and_changes_nothing(tmp_path, checkpoint, problem):
    deploy_blob_tasks(tmp_path, "load", LONG)
    run = store.trigger("acme", "load", actor="ann", now=NEW_YEARS_EVE)
    grant = claim(run, "a", now=NEW_YEARS_EVE)
    with pytest.raises(InvalidCheckpoint) as refused:
        store.progress(grant.instance, grant.token, 50, checkpoint=checkpoint, now=_after(5))
    assert str(refused.value).startswith(f"task instance {grant.instance}: {problem}")
    kept = instance(run, "a")
    assert (kept.progress_pct, kept.lease_expires_at) == (None, _after(10))  # the lease was not renewed
    assert Attempt.get(Attempt.token == grant.token).checkpoint is None

    with pytest.raises(ValidationError, match="checkpoint"):  # the wire's parser says the same
        m.worker_messages().validate_python({"type": "progress", "instance": grant.instance, "token": grant.token,
                                             "checkpoint": checkpoint})


def test_a_store_from_before_checkpoints_is_upgraded_and_resumes_attempts(tmp_path):
    upgraded_from_before(_checkpoints_v20, "attempt", "checkpoint")
    deploy_blob_tasks(tmp_path, "load", LONG)
    run = store.trigger("acme", "load", actor="ann", now=NEW_YEARS_EVE)
    first = claim(run, "a", now=NEW_YEARS_EVE)
    store.progress(first.instance, first.token, checkpoint={"done": 1}, now=_after(1))
    store.fail(first.instance, first.token, "x", now=_after(2))
    assert _retried(run, 10).checkpoint == {"done": 1}
