"""Eager dispatch: a submit that names the functions its worker runs gets a downstream attempt claimed
for that worker in the same transaction, carried in its reply instead of an offer."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.errors import InvalidOutput, StaleToken
from flow45.models import Attempt, Event, Outbox
from flow45.store.batch import Item, apply_worker_batch
from tests.store.helpers import BLOB, DIAMOND, T0, claim, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

LEASE = dt.timedelta(seconds=300)  # the default lease


def _submit(grant, output=BLOB, *, next_functions=(), message_id=None, now=T0):
    message = m.Submit(type="submit", instance=grant.instance, token=grant.token, output=output,
                       next=list(next_functions))
    return store.apply_message(message, team="acme", message_id=message_id, now=now)


def test_the_downstream_attempt_comes_back_claimed_for_the_worker_and_is_never_offered(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = claim(run, "a", worker="w1")
    reply = _submit(a, next_functions=["fb"], now=T0 + dt.timedelta(seconds=5))
    b = instance(run, "b")
    granted = reply.next
    assert reply.state == "succeeded"
    assert (granted["instance"], granted["task"], granted["function"]) == (b.id, "b", "fb")
    assert (granted["token"], granted["attempt"]) == (b.token, 1)
    assert granted["inputs"] == {"src": BLOB} and granted["run"] == run and granted["team"] == "acme"
    assert granted["lease_expires_at"] == "2026-03-01T12:05:05Z"
    assert b.state == "running" and b.worker == "w1" and b.lease_expires_at == T0 + dt.timedelta(seconds=5) + LEASE
    assert states(run)["c"] == "available", "c is offered as before"
    offered = {row.instance for row in Outbox.select() if row.kind == "offer"}
    assert instance(run, "c").id in offered and b.id not in offered
    ledger = [(e.kind, e.to_state, e.actor) for e in Event.select().where(Event.instance == b.id).order_by(Event.id)]
    assert ledger == [("ready", "available", "w1"), ("claim", "running", "w1")]
    attempt = Attempt.get((Attempt.instance == b.id) & (Attempt.number == 1))
    assert attempt.worker == "w1" and attempt.lineage == {"src": {"task": "a", "instance": a.instance, "attempt": 1}}


def test_the_granted_token_is_the_attempts_own(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    granted = _submit(claim(run, "a"), next_functions=["fb"]).next
    with pytest.raises(StaleToken):
        store.claim(granted["instance"], granted["token"], "someone-else", now=T0)
    done = store.submit(granted["instance"], granted["token"], BLOB, now=T0)
    assert done.state == "succeeded" and states(run)["b"] == "succeeded"


def test_without_a_named_function_downstream_is_offered_as_usual(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    reply = _submit(claim(run, "a"), next_functions=["fd", "elsewhere"])
    assert reply.next is None
    assert states(run) == {"a": "succeeded", "b": "available", "c": "available", "d": "pending"}
    assert Outbox.select().where(Outbox.instance.in_([instance(run, "b").id, instance(run, "c").id])).count() == 2


def test_of_several_the_most_urgent_is_taken_then_the_first_declared(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 5"))
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    assert _submit(claim(run, "a"), next_functions=["fc", "fb"]).next["task"] == "b"
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 5")
                .replace("inputs: {src: a}, undo: notify", "inputs: {src: a}, priority: 5"))
    urgent = store.trigger("acme", "diamond", actor="ann", now=T0)
    assert _submit(claim(urgent, "a"), next_functions=["fb", "fc"]).next["task"] == "c"


def test_a_submit_sent_again_gets_the_same_grant_and_changes_nothing(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = claim(run, "a")
    first = _submit(a, next_functions=["fb"], message_id="m-1")
    events = Event.select().count()
    again = _submit(a, next_functions=["fb"], message_id="m-1", now=T0 + dt.timedelta(seconds=9))
    assert again.duplicate and again.next == first.next
    assert Event.select().count() == events and instance(run, "b").lease_expires_at == T0 + LEASE


def test_in_a_batch_each_submit_takes_from_its_own_run_and_a_copy_gets_the_same_grant(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 5"))
    runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(2)]
    grants = [claim(run, "a") for run in runs]
    items = [Item("acme", f"m-{n}", m.Submit(type="submit", instance=g.instance, token=g.token, output=BLOB, next=["fb"]))
             for n, g in enumerate(grants)]
    items.append(Item("acme", "m-0", items[0].message))
    with atomic():
        apply_worker_batch(items, T0)
    assert [i.result.next["run"] for i in items] == [runs[0], runs[1], runs[0]]
    assert items[2].result.duplicate and items[2].result.next == items[0].result.next
    assert [states(run)["b"] for run in runs] == ["running", "running"]


def test_human_tasks_are_never_handed_to_a_worker(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("b: {function: fb,", "b: {human: true, function: fb,"))
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    assert _submit(claim(run, "a"), next_functions=["fb"]).next is None
    assert states(run)["b"] == "available"


def test_a_refused_output_takes_nothing(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = claim(run, "a")
    with pytest.raises(InvalidOutput, match="output.size"):
        _submit(a, {"uri": "x", "size": -1}, next_functions=["fb"])
    assert states(run) == {"a": "running", "b": "pending", "c": "pending", "d": "pending"}
