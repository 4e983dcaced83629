"""The one engine: a message applied alone and the same message in a batch are one code path, so
what is asserted here holds for the embedded default, `LocalTransport`, the CLI and the bridge."""

from __future__ import annotations

import json

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.models import Attempt, Event, Outbox
from flow45.store import outbox
from flow45.store.batch import Item, apply_worker_batch
from tests.store.helpers import BLOB, DIAMOND, T0, complete, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")

ONE_TASK = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      single:
        max_active_runs: 1
        tasks:
          a: {function: fa, output: Blob}
"""


def _submit_item(run: int, message_id: str, worker: str = "w") -> Item:
    grant = store.claim(instance(run, "a").id, instance(run, "a").token, worker, now=T0)
    return Item("acme", message_id, m.Submit(type="submit", instance=grant.instance, token=grant.token, output=BLOB))


@pytest.mark.parametrize("alone", [True, False], ids=["alone", "in-a-batch"])
def test_a_run_that_finishes_starts_the_queued_run_with_its_submitter_as_actor(tmp_path, alone):
    deploy_text(tmp_path, ONE_TASK)
    first = store.trigger("acme", "single", actor="ann", now=T0)
    second = store.trigger("acme", "single", actor="ann", now=T0)
    assert store.get_run(second).status == "queued"
    if alone:
        complete(first, "a", BLOB, worker="w7")
    else:
        with atomic():
            apply_worker_batch([_submit_item(first, "m1", worker="w7")], T0)
    start = Event.get((Event.run == second) & (Event.kind == "start"))
    assert (start.from_state, start.to_state, start.actor) == ("queued", "running", "w7")
    assert instance(second, "a").state == "available"


def test_the_queued_runs_offer_is_among_the_rows_a_batch_returns_for_its_relay(tmp_path):
    deploy_text(tmp_path, ONE_TASK)
    first = store.trigger("acme", "single", actor="ann", now=T0)
    second = store.trigger("acme", "single", actor="ann", now=T0)
    with atomic():
        written = apply_worker_batch([_submit_item(first, "m1")], T0)
    offer = Outbox.get(Outbox.instance == instance(second, "a").id)
    assert [row.id for row in written] == [offer.id]
    assert written[0].body["token"] == instance(second, "a").token


def test_every_offer_a_batch_writes_is_returned_in_order(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 3"))
    runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(3)]
    items = [_submit_item(run, f"m{run}") for run in runs]
    with atomic():
        written = apply_worker_batch(items, T0)
    stored = Outbox.select().where(Outbox.id.in_([row.id for row in written])).order_by(Outbox.id)
    assert [(r.instance, r.routing_key) for r in stored] == [(w.body["instance"], w.routing_key) for w in written]
    assert sorted(w.body["task"] for w in written) == ["b", "b", "b", "c", "c", "c"]


def test_an_offer_is_published_as_the_very_text_stored(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 3"))
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    with atomic():
        written = apply_worker_batch([_submit_item(run, "m1")], T0)
    stored = {row.id: row for row in Outbox.select(Outbox.id, Outbox.body.cast("text").alias("text"))}
    assert [(w.id, w.text) for w in written] == [(w.id, stored[w.id].text) for w in written]
    assert [json.loads(w.text) for w in written] == [w.body for w in written]


def test_pending_rows_come_by_priority_then_age_passing_over_those_in_flight(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 5"))
    runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(5)]
    rows = list(Outbox.select().order_by(Outbox.id))
    Outbox.update(priority=7).where(Outbox.id == rows[3].id).execute()
    in_flight = {rows[0].id, rows[2].id}
    found = outbox.pending(exclude=in_flight)
    assert [r.id for r in found] == [rows[3].id, rows[1].id, rows[4].id]
    assert found[1].body["run"] == runs[1] and json.loads(found[1].text) == found[1].body
    assert [r.id for r in outbox.pending(limit=2)] == [rows[3].id, rows[0].id]


def test_the_relay_marks_confirmed_rows_sent_in_the_batchs_transaction_and_no_others(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    confirmed = Outbox.get(Outbox.instance == instance(run, "a").id)
    with atomic():
        apply_worker_batch([_submit_item(run, "m2")], T0, sent=[confirmed.id])
    assert Outbox.get_by_id(confirmed.id).sent_at == T0
    downstream_offers = Outbox.select().where(Outbox.id != confirmed.id)
    assert downstream_offers.count() == 2
    assert all(row.sent_at is None for row in downstream_offers)


def test_the_marks_roll_back_with_a_batch_that_fails(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    confirmed = Outbox.get(Outbox.instance == instance(run, "a").id)
    with pytest.raises(RuntimeError):
        with atomic():
            outbox.mark_sent_in_transaction([confirmed.id], T0)
            raise RuntimeError("the database went away mid-batch")
    assert Outbox.get_by_id(confirmed.id).sent_at is None


def test_the_same_message_twice_in_one_batch_takes_effect_once(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    first = _submit_item(run, "same")
    again = Item("acme", "same", first.message)
    with atomic():
        apply_worker_batch([first, again], T0)
    assert (first.result.duplicate, again.result.duplicate) == (False, True)
    assert again.result.state == "succeeded"
    assert Event.select().where(Event.kind == "submit").count() == 1



AWKWARD = 'it\'s "quoted", {braced}, a\\back\\slash, NULL, é€𝄞\n\tend '


def test_text_a_batch_writes_is_stored_as_sent_whatever_characters_it_holds(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    offered = instance(run, "a")
    claim = Item("acme", AWKWARD, m.Claim(type="claim", instance=offered.id, token=offered.token, worker=AWKWARD))
    fail = Item("acme", "f1", m.Fail(type="fail", instance=offered.id, token=offered.token, error=AWKWARD,
                                     retryable=False))
    for item in (claim, fail):
        with atomic():
            apply_worker_batch([item], T0)
        assert item.error is None
    events = {e.kind: e for e in Event.select().where(Event.instance == offered.id)}
    assert (events["claim"].actor, events["fail"].detail["error"]) == (AWKWARD, AWKWARD)
    attempt = Attempt.get(Attempt.instance == offered.id)
    assert (attempt.worker, attempt.error) == (AWKWARD, AWKWARD)
    assert instance(run, "a").worker == AWKWARD
