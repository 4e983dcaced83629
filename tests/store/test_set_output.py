"""An operator sets a worker task's output by hand ("mark success", typed): checked against the
output type, kept as an attempt by the operator with the reason, and downstream goes on as after a
submit; on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest

from flow45 import store
from flow45.errors import Flow45Error, IllegalTransition, InvalidOutput, StaleToken
from flow45.models import Attempt, Event, Outbox
from tests.store.helpers import BLOB, DIAMOND, T0, claim, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")


def failed_a(tmp_path) -> int:
    """A run of the diamond whose first task failed for good."""
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    for _ in range(2):
        grant = claim(run, "a")
        store.fail(grant.instance, grant.token, "boom", retryable=False, now=T0)
        if states(run)["a"] == "failed":
            break
    assert store.get_run(run).status == "failed"
    return run


def test_setting_a_failed_tasks_output_is_an_attempt_by_the_operator_and_downstream_goes_on(tmp_path):
    run = failed_a(tmp_path)
    a = instance(run, "a").id
    reply = store.set_output(a, BLOB, reason="ran it by hand", actor="ops", now=T0)
    assert reply.state == "succeeded" and reply.attempt == 2
    assert states(run) == {"a": "succeeded", "b": "available", "c": "available", "d": "pending"}
    assert store.get_run(run).status == "running"
    last = Attempt.select().where(Attempt.instance == a).order_by(Attempt.number.desc()).get()
    assert (last.number, last.status, last.worker, last.output, last.comment) == (2, "succeeded", "ops", BLOB, "ran it by hand")
    event = Event.get((Event.instance == a) & (Event.kind == "set_output"))
    assert (event.from_state, event.to_state, event.actor) == ("failed", "succeeded", "ops")
    assert event.detail == {"attempt": 2, "reason": "ran it by hand"}
    offer = Outbox.get(Outbox.instance == instance(run, "b").id)
    assert offer.body["inputs"] == {"src": BLOB}


def test_a_running_attempt_is_revoked_and_its_submit_refused_as_stale(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a", worker="w1")
    store.set_output(grant.instance, BLOB, reason="worker is stuck", actor="ops", now=T0)
    first = Attempt.get((Attempt.instance == grant.instance) & (Attempt.number == 1))
    assert (first.status, first.error) == ("revoked", "output set by ops")
    with pytest.raises(StaleToken, match="not the current attempt's"):
        store.submit(grant.instance, grant.token, {"uri": "late", "size": 2}, now=T0)
    assert states(run)["a"] == "succeeded"


def test_a_bad_output_a_missing_reason_and_a_finished_task_are_refused_changing_nothing(tmp_path):
    run = failed_a(tmp_path)
    a = instance(run, "a").id
    with pytest.raises(InvalidOutput, match="size"):
        store.set_output(a, {"uri": "s3://x", "size": -1}, reason="r", actor="ops", now=T0)
    with pytest.raises(Flow45Error, match="needs a reason"):
        store.set_output(a, BLOB, reason="  ", actor="ops", now=T0)
    assert states(run)["a"] == "failed"
    store.set_output(a, BLOB, reason="r", actor="ops", now=T0)
    with pytest.raises(IllegalTransition, match="succeeded; an output can be set only while .* \\(undo it first\\)"):
        store.set_output(a, BLOB, reason="r", actor="ops", now=T0)
    with pytest.raises(IllegalTransition, match="pending"):
        store.set_output(instance(run, "d").id, BLOB, reason="r", actor="ops", now=T0)
    with pytest.raises(IllegalTransition, match="pending"):  # its state first: no output would do
        store.set_output(instance(run, "d").id, {"uri": 7}, reason="r", actor="ops", now=T0)


def test_a_task_held_before_its_upstream_is_done_is_refused_as_a_pending_one_is(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    b = instance(run, "b").id
    store.hold(b, actor="ops", now=T0)
    with pytest.raises(IllegalTransition, match=rf"task instance {b} \(b of run {run}\) is held before its upstream is done"):
        store.set_output(b, BLOB, reason="r", actor="ops", now=T0)
    assert states(run) == {"a": "available", "b": "held", "c": "pending", "d": "pending"}
    complete(run, "a", BLOB, now=T0)
    assert store.set_output(b, BLOB, reason="ran it by hand", actor="ops", now=T0).state == "succeeded"
    assert states(run) == {"a": "succeeded", "b": "succeeded", "c": "available", "d": "pending"}


def test_the_run_as_it_was_knows_the_operators_attempt(tmp_path):
    run = failed_a(tmp_path)
    a = instance(run, "a").id
    store.set_output(a, BLOB, reason="r", actor="ops", now=T0)
    was = store.run_as_of(run, event=Event.select().order_by(Event.id.desc()).get().id)
    live = store.get_instance(a)
    replayed = next(i for i in was.instances if i.id == a)
    assert (replayed.state, replayed.attempt, replayed.worker) == ("succeeded", live.attempt, "ops")
