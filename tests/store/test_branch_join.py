"""A task's `trigger_rule: none_failed_min_one_success` (Airflow's): the join after branches that `when`
chose between. Offered as with all_success once every upstream task has succeeded or been skipped, but
skipped when every one of them was skipped, so a run that took no branch does not ship nothing. A
failure upstream keeps it waiting, as all_success does."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.graph import mermaid
from flow45.store.batch import Item, apply_worker_batch
from flow45.store.specs import current_spec
from tests.store.helpers import (
    claim, complete, deploy_text, fail_for_good, instance, offered_inputs, skip_detail, states, task_refusal,
)

pytestmark = pytest.mark.usefixtures("store_db")

NEW_YEAR = dt.datetime(2027, 12, 31, 23, 58)  # the order is classified in one year and shipped in the next
SKIPPED_ALL = "trigger_rule none_failed_min_one_success: every upstream task was skipped"
PARCEL = {"uri": "s3://parcels/1"}
ORDERS = """
team: acme
types:
  Order: {fields: {size: {type: enum, values: [small, large, none]}}}
  Blob: {fields: {uri: string}}
workflows:
  orders:
    tasks:
      classify: {function: classify, output: Order}
      small: {function: pack_small, output: Blob, inputs: {order: classify}, when: {order.size: small}}
      large: {function: pack_large, output: Blob, inputs: {order: classify}, when: {order.size: large}}
      ship: {function: ship, output: Blob, inputs: {small: small, large: large},
             trigger_rule: none_failed_min_one_success}
"""


def _at(minutes: float) -> dt.datetime:
    return NEW_YEAR + dt.timedelta(minutes=minutes)


def _orders(tmp_path, text: str = ORDERS) -> int:
    deploy_text(tmp_path, text)
    return store.trigger("acme", "orders", actor="shop", now=_at(0))


def test_the_join_waits_for_the_branch_taken_and_gets_null_for_the_one_skipped(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "small"}, now=_at(1))
    assert states(run) == {"classify": "succeeded", "small": "available", "large": "skipped", "ship": "pending"}
    complete(run, "small", PARCEL, now=_at(3))  # on New Year's Day
    assert states(run)["ship"] == "available"
    assert offered_inputs(run, "ship") == {"small": PARCEL, "large": None}
    complete(run, "ship", PARCEL, now=_at(4))
    assert store.get_run(run).status == "succeeded"


def test_when_no_branch_is_taken_the_join_is_skipped_and_the_run_succeeds(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "none"}, now=_at(1))
    assert states(run) == {"classify": "succeeded", "small": "skipped", "large": "skipped", "ship": "skipped"}
    assert skip_detail(run, "ship") == {"reason": SKIPPED_ALL, "trigger_rule": "none_failed_min_one_success"}
    assert store.get_run(run).status == "succeeded"


def test_a_failed_branch_keeps_the_join_waiting_and_fails_the_run(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "large"}, now=_at(1))
    fail_for_good(run, "large", _at(2), "no box that big")
    assert states(run)["ship"] == "pending"
    assert store.get_run(run).status == "failed"


def test_the_bridges_batch_skips_the_join_or_lets_it_go_message_by_message(tmp_path):
    run = _orders(tmp_path)
    other = store.trigger("acme", "orders", actor="shop", now=_at(0))
    nothing, something = claim(run, "classify", now=_at(1)), claim(other, "classify", now=_at(1))
    items = [Item("acme", "m-1", m.Submit(type="submit", instance=nothing.instance, token=nothing.token,
                                          output={"size": "none"})),
             Item("acme", "m-2", m.Submit(type="submit", instance=something.instance, token=something.token,
                                          output={"size": "large"}))]
    with atomic():
        apply_worker_batch(items, _at(2))
    assert [item.error for item in items] == [None, None]
    assert (states(run)["ship"], states(other)["ship"]) == ("skipped", "pending")
    assert (store.get_run(run).status, store.get_run(other).status) == ("succeeded", "running")


def test_in_a_run_too_wide_to_read_whole_the_join_reads_the_upstream_it_was_not_given(tmp_path):
    lanes = "\n".join(f"      lane{n}: {{function: lane, output: Blob}}" for n in range(80))
    text = ORDERS.replace("    tasks:\n", "    tasks:\n" + lanes + "\n", 1)
    text += "      tally: {function: tally, output: Blob, after: [lane0, lane1], " \
            "trigger_rule: none_failed_min_one_success}\n"
    run = _orders(tmp_path, text)
    other = store.trigger("acme", "orders", actor="shop", now=_at(0))
    for each in (run, other):
        store.skip_instance(instance(each, "lane0").id, "not today", actor="ann", now=_at(1))
    store.skip_instance(instance(run, "lane1").id, "not today", actor="ann", now=_at(2))
    complete(other, "lane1", PARCEL, now=_at(2))
    assert (states(run)["tally"], states(other)["tally"]) == ("skipped", "available")


def test_a_held_join_released_after_every_branch_was_skipped_is_skipped(tmp_path):
    run = _orders(tmp_path)
    store.hold(instance(run, "ship").id, actor="ann", now=_at(0))
    complete(run, "classify", {"size": "none"}, now=_at(1))
    assert states(run)["ship"] == "held"
    store.release(instance(run, "ship").id, actor="ann", now=_at(2))
    assert states(run)["ship"] == "skipped" and store.get_run(run).status == "succeeded"


def test_an_undo_of_the_classification_asks_again_and_a_branch_taken_then_lets_the_join_go(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "none"}, now=_at(1))
    store.undo(instance(run, "classify").id, "misread the order", actor="ann", now=_at(2))
    assert states(run) == {"classify": "available", "small": "pending", "large": "pending", "ship": "pending"}
    complete(run, "classify", {"size": "large"}, now=_at(3))
    complete(run, "large", PARCEL, now=_at(4))
    assert offered_inputs(run, "ship") == {"small": None, "large": PARCEL}


def test_the_rule_needs_an_upstream_and_the_graph_says_it(tmp_path):
    assert ("trigger_rule: none_failed_min_one_success waits for the upstream tasks to succeed, and this task has "
            "none" in task_refusal(tmp_path, "{function: f, output: Blob, trigger_rule: none_failed_min_one_success}"))
    deploy_text(tmp_path, ORDERS)
    orders = current_spec(store.find_workflow("acme", "orders")).workflow
    assert 'ship["ship<br/>ship → Blob<br/>skipped if every upstream is"]' in mermaid("acme/orders", orders)
