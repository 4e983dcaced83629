"""Callbacks: a worker parks its attempt under a key; the key's holder completes or fails it. On
SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import IllegalTransition, InvalidOutput, NotFound
from flow45.models import Attempt, Event
from tests.store.helpers import BLOB, DIAMOND, T0, claim, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")
MICRO = dt.timedelta(microseconds=1)
RIVAL = DIAMOND.replace("team: acme", "team: rival")


def parked(tmp_path, deadline: float | None = 3600.0):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    reply = store.park(grant.instance, grant.token, deadline, now=T0)
    return run, grant, reply.callback_key


def test_a_parked_attempt_is_completed_by_its_key_with_a_typed_output(tmp_path):
    run, grant, key = parked(tmp_path)
    assert len(key) >= 22, "at least 128 random bits"
    assert store.get_run(run).waiting_for == "a (callback, deadline 2026-03-01 13:00Z)"
    assert store.get_instance(grant.instance).parked

    with pytest.raises(InvalidOutput, match="output.size"):
        store.complete_callback(key, {"uri": "x", "size": "big"}, actor="webhook", now=T0)
    assert states(run)["a"] == "running", "a refused output changes nothing; the key still works"

    done = store.complete_callback(key, {"uri": "s3://x", "size": 7}, actor="webhook", now=T0, team="acme")
    assert (done.instance, done.state) == (grant.instance, "succeeded")
    assert states(run)["b"] == states(run)["c"] == "available"
    b = claim(run, "b")
    assert b.inputs == {"src": {"uri": "s3://x", "size": 7}}
    event = Event.get((Event.instance == grant.instance) & (Event.kind == "callback"))
    assert (event.from_state, event.to_state, event.actor) == ("running", "succeeded", "webhook")
    assert Attempt.get(Attempt.instance == grant.instance).output == {"uri": "s3://x", "size": 7}
    assert not store.get_instance(grant.instance).parked


def test_unknown_ended_and_other_teams_keys_are_refused_in_the_same_words(tmp_path):
    run, grant, key = parked(tmp_path)
    deploy_text(tmp_path, RIVAL)
    rival_run = store.trigger("rival", "diamond", actor="rex", now=T0)
    rival_grant = claim(rival_run, "a")
    rival_key = store.park(rival_grant.instance, rival_grant.token, now=T0).callback_key

    def refusal(bad_key: str) -> str:
        with pytest.raises(NotFound) as caught:
            store.complete_callback(bad_key, BLOB, actor="webhook", team="acme", now=T0)
        return str(caught.value)

    unknown = refusal("x" * 43)
    assert unknown == "no parked task instance has this callback key for team acme"
    assert refusal(rival_key) == unknown
    assert refusal("") == refusal("k" * 500) == unknown
    with pytest.raises(NotFound):
        store.fail_callback(rival_key, "nope", actor="webhook", team="acme", now=T0)
    assert states(rival_run)["a"] == "running", "another team's attempt is untouched"

    store.complete_callback(key, BLOB, actor="webhook", team="acme", now=T0)
    assert refusal(key) == unknown, "a key whose attempt ended is unknown"


def test_past_the_deadline_the_sweep_fails_the_attempt_counted_against_retries(tmp_path):
    run, grant, key = parked(tmp_path, deadline=600)
    deadline = T0 + dt.timedelta(minutes=10)
    store.progress(grant.instance, grant.token, 50, "still waiting", now=T0 + dt.timedelta(minutes=9))
    assert instance(run, "a").lease_expires_at == deadline, "progress does not move a parked deadline"
    assert store.expire_leases(deadline) == []
    assert store.expire_leases(deadline + MICRO) == [grant.instance]
    a = instance(run, "a")
    assert (a.state, a.failures, a.callback_key) == ("retry_wait", 1, None)  # DIAMOND's a: retries 1
    event = Event.get((Event.instance == grant.instance) & (Event.kind == "expire"))
    assert event.detail["error"] == "callback deadline passed at 2026-03-01 12:10:00 UTC"
    with pytest.raises(NotFound):
        store.complete_callback(key, BLOB, actor="late", now=deadline + MICRO)


def test_without_a_deadline_nothing_expires_and_failing_by_key_retries(tmp_path):
    run, grant, key = parked(tmp_path, deadline=None)
    assert store.get_run(run).waiting_for == "a (callback, no deadline)"
    assert store.expire_leases(T0 + dt.timedelta(days=30)) == []
    with pytest.raises(IllegalTransition, match="parked already"):
        store.park(grant.instance, grant.token, now=T0)
    done = store.fail_callback(key, "the service said no", actor="webhook", now=T0)
    assert done.state == "retry_wait"
    assert Attempt.get(Attempt.instance == grant.instance).error == "the service said no"


def test_a_database_from_before_callbacks_is_upgraded_with_their_key_column():
    from flow45.db import database
    from flow45.migrate import STEPS, _callbacks_v3

    assert _callbacks_v3 in STEPS
    database.execute_sql("DROP INDEX IF EXISTS task_instance_callback_key")
    database.execute_sql("ALTER TABLE task_instance DROP COLUMN callback_key")
    _callbacks_v3()
    _callbacks_v3()  # a table created with the column already (a fresh database) is left as it is
    assert "callback_key" in {c.name for c in database.get_columns("task_instance")}
    assert "task_instance_callback_key" in {i.name for i in database.get_indexes("task_instance")}


def test_a_callback_key_is_safe_on_a_command_line():
    from flow45.store.callback_rules import new_key

    keys = [new_key() for _ in range(2000)]
    assert all(len(k) == 64 and set(k) <= set("0123456789abcdef") for k in keys)
    assert len(set(keys)) == len(keys)
