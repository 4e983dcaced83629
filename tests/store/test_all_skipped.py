"""A task's `trigger_rule: all_skipped` (Airflow's): the fallback when `when` took no branch. Decided as
all_success would be, once every upstream task has succeeded or been skipped: offered only if every one
was skipped, else skipped, the ledger naming the upstream task that succeeded. A failure upstream keeps
it waiting, as all_success does. Every upstream task counts, those it takes inputs from too."""

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

LEAP_DAY = dt.datetime(2028, 2, 29, 23, 58)  # classified on 29 February, sorted on 1 March
PARCEL = {"uri": "s3://parcels/1"}
ORDERS = """
team: acme
types:
  Order: {fields: {size: {type: enum, values: [small, large, odd]}}}
  Blob: {fields: {uri: string}}
workflows:
  orders:
    tasks:
      classify: {function: classify, output: Order}
      small: {function: pack_small, output: Blob, inputs: {order: classify}, when: {order.size: small}}
      large: {function: pack_large, output: Blob, inputs: {order: classify}, when: {order.size: large}}
      by_hand: {function: pack_by_hand, output: Blob, after: [small, large], trigger_rule: all_skipped}
"""


def _at(minutes: float) -> dt.datetime:
    return LEAP_DAY + dt.timedelta(minutes=minutes)


def _orders(tmp_path, text: str = ORDERS) -> int:
    deploy_text(tmp_path, text)
    return store.trigger("acme", "orders", actor="shop", now=_at(0))


def test_when_no_branch_is_taken_the_fallback_is_offered_and_the_run_goes_on(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "odd"}, now=_at(1))
    assert states(run) == {"classify": "succeeded", "small": "skipped", "large": "skipped", "by_hand": "available"}
    assert offered_inputs(run, "by_hand") == {}
    complete(run, "by_hand", PARCEL, now=_at(3))  # on 1 March
    assert store.get_run(run).status == "succeeded"


def test_a_branch_that_succeeded_skips_the_fallback_naming_it(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "small"}, now=_at(1))
    assert states(run)["by_hand"] == "pending"  # decided once every upstream task is done
    complete(run, "small", PARCEL, now=_at(3))
    assert states(run)["by_hand"] == "skipped"
    assert skip_detail(run, "by_hand") == {"reason": "trigger_rule all_skipped: upstream task small succeeded",
                                           "trigger_rule": "all_skipped"}
    assert store.get_run(run).status == "succeeded"


def test_a_failed_branch_keeps_the_fallback_waiting_and_fails_the_run(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "large"}, now=_at(1))
    fail_for_good(run, "large", _at(2), "no box that big")
    assert states(run)["by_hand"] == "pending"
    assert store.get_run(run).status == "failed"


def test_the_bridges_batch_offers_or_skips_the_fallback_message_by_message(tmp_path):
    run = _orders(tmp_path)
    other = store.trigger("acme", "orders", actor="shop", now=_at(0))
    odd, large = claim(run, "classify", now=_at(1)), claim(other, "classify", now=_at(1))
    items = [Item("acme", "m-1", m.Submit(type="submit", instance=odd.instance, token=odd.token,
                                          output={"size": "odd"})),
             Item("acme", "m-2", m.Submit(type="submit", instance=large.instance, token=large.token,
                                          output={"size": "large"}))]
    with atomic():
        apply_worker_batch(items, _at(2))
    assert [item.error for item in items] == [None, None]
    assert (states(run)["by_hand"], states(other)["by_hand"]) == ("available", "pending")
    packed = claim(other, "large", now=_at(3))
    items = [Item("acme", "m-3", m.Submit(type="submit", instance=packed.instance, token=packed.token,
                                          output=PARCEL))]
    with atomic():
        apply_worker_batch(items, _at(4))
    assert items[0].error is None and states(other)["by_hand"] == "skipped"


def test_in_a_run_too_wide_to_read_whole_the_fallback_reads_the_upstream_it_was_not_given(tmp_path):
    lanes = "\n".join(f"      lane{n}: {{function: lane, output: Blob}}" for n in range(80))
    text = ORDERS.replace("    tasks:\n", "    tasks:\n" + lanes + "\n", 1)
    text += "      rescue: {function: rescue, output: Blob, after: [lane0, lane1], trigger_rule: all_skipped}\n"
    run = _orders(tmp_path, text)
    other = store.trigger("acme", "orders", actor="shop", now=_at(0))
    for each in (run, other):
        store.skip_instance(instance(each, "lane0").id, "not today", actor="ann", now=_at(1))
    store.skip_instance(instance(run, "lane1").id, "not today", actor="ann", now=_at(2))
    complete(other, "lane1", PARCEL, now=_at(2))
    assert (states(run)["rescue"], states(other)["rescue"]) == ("available", "skipped")


def test_a_held_fallback_released_is_offered_or_skipped_as_its_upstream_ended(tmp_path):
    skipped_all, took_one = _orders(tmp_path), store.trigger("acme", "orders", actor="shop", now=_at(0))
    for run in (skipped_all, took_one):
        store.hold(instance(run, "by_hand").id, actor="ann", now=_at(0))
    complete(skipped_all, "classify", {"size": "odd"}, now=_at(1))
    complete(took_one, "classify", {"size": "small"}, now=_at(1))
    complete(took_one, "small", PARCEL, now=_at(2))
    assert (states(skipped_all)["by_hand"], states(took_one)["by_hand"]) == ("held", "held")
    for run in (skipped_all, took_one):
        store.release(instance(run, "by_hand").id, actor="ann", now=_at(3))
    assert (states(skipped_all)["by_hand"], states(took_one)["by_hand"]) == ("available", "skipped")
    assert store.get_run(took_one).status == "succeeded"


def test_an_undo_of_the_classification_asks_again(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "odd"}, now=_at(1))
    assert states(run)["by_hand"] == "available"
    plan = store.plan_undo(instance(run, "classify").id)
    assert {a.task: a.becomes for a in plan.affected} == {"classify": "available", "small": "pending",
                                                          "large": "pending", "by_hand": "pending"}
    store.undo(instance(run, "classify").id, "misread the order", actor="ann", now=_at(2))
    complete(run, "classify", {"size": "large"}, now=_at(3))
    assert states(run)["by_hand"] == "pending"
    complete(run, "large", PARCEL, now=_at(4))
    assert states(run)["by_hand"] == "skipped" and store.get_run(run).status == "succeeded"


def test_an_undo_of_the_skipped_fallback_itself_runs_it(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "small"}, now=_at(1))
    complete(run, "small", PARCEL, now=_at(2))
    store.undo(instance(run, "by_hand").id, "pack this one by hand as well", actor="ann", now=_at(3))
    assert states(run)["by_hand"] == "available"


def test_the_rule_needs_an_upstream_and_the_graph_says_it(tmp_path):
    assert ("trigger_rule: all_skipped waits for the upstream tasks to be skipped, and this task has none"
            in task_refusal(tmp_path, "{function: f, output: Blob, trigger_rule: all_skipped}"))
    deploy_text(tmp_path, ORDERS)
    orders = current_spec(store.find_workflow("acme", "orders")).workflow
    assert "only if every upstream is skipped" in mermaid("acme/orders", orders)
