"""After branches that `when` chose between, Airflow's two trigger rules that ask which were taken. Both
are decided as all_success would be, once every upstream task has succeeded or been skipped, and a
failure upstream keeps both waiting, as all_success does.

- `none_failed_min_one_success`, the join (`ship`): offered, but skipped when every upstream task was
  skipped, so a run that took no branch does not ship nothing;
- `all_skipped`, the fallback (`by_hand`): offered only when every upstream task was skipped, else
  skipped naming the one that succeeded. Every upstream task counts, those it takes inputs from too."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from tests.store.helpers import (
    claim, complete, deploy_text, fail_for_good, instance, offered_inputs, skip_detail, states,
    submits_in_one_batch,
)

pytestmark = pytest.mark.usefixtures("store_db")

NEW_YEAR = dt.datetime(2027, 12, 31, 23, 58)  # the order is classified in one year and shipped in the next
LEAP_DAY = dt.datetime(2028, 2, 29, 23, 58)  # classified on 29 February, packed on 1 March
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
      by_hand: {function: pack_by_hand, output: Blob, after: [small, large], trigger_rule: all_skipped}
"""


def _at(minutes: float, start: dt.datetime = NEW_YEAR) -> dt.datetime:
    return start + dt.timedelta(minutes=minutes)


def _orders(tmp_path, text: str = ORDERS) -> int:
    deploy_text(tmp_path, text)
    return store.trigger("acme", "orders", actor="shop", now=_at(0))


def test_the_join_waits_for_the_branch_taken_and_gets_null_for_the_one_skipped_and_the_fallback_is_skipped(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "small"}, now=_at(1))
    assert states(run) == {"classify": "succeeded", "small": "available", "large": "skipped", "ship": "pending",
                           "by_hand": "pending"}
    complete(run, "small", PARCEL, now=_at(3))  # on New Year's Day
    assert states(run)["ship"] == "available"
    assert offered_inputs(run, "ship") == {"small": PARCEL, "large": None}
    assert states(run)["by_hand"] == "skipped"
    assert skip_detail(run, "by_hand") == {"reason": "trigger_rule all_skipped: upstream task small succeeded",
                                           "trigger_rule": "all_skipped"}
    complete(run, "ship", PARCEL, now=_at(4))
    assert store.get_run(run).status == "succeeded"


def test_when_no_branch_is_taken_the_join_is_skipped_and_the_fallback_offered(tmp_path):
    deploy_text(tmp_path, ORDERS)
    run = store.trigger("acme", "orders", actor="shop", now=_at(0, LEAP_DAY))
    complete(run, "classify", {"size": "none"}, now=_at(1, LEAP_DAY))
    assert states(run) == {"classify": "succeeded", "small": "skipped", "large": "skipped", "ship": "skipped",
                           "by_hand": "available"}
    assert skip_detail(run, "ship") == {"reason": SKIPPED_ALL, "trigger_rule": "none_failed_min_one_success"}
    assert offered_inputs(run, "by_hand") == {}
    complete(run, "by_hand", PARCEL, now=_at(3, LEAP_DAY))  # on 1 March
    assert store.get_run(run).status == "succeeded"


def test_a_failed_branch_keeps_the_join_and_the_fallback_waiting_and_fails_the_run(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "large"}, now=_at(1))
    fail_for_good(run, "large", _at(2), "no box that big")
    assert (states(run)["ship"], states(run)["by_hand"]) == ("pending", "pending")
    assert store.get_run(run).status == "failed"


def test_the_bridges_batch_decides_both_message_by_message(tmp_path):
    run = _orders(tmp_path)
    other = store.trigger("acme", "orders", actor="shop", now=_at(0))
    nothing, something = claim(run, "classify", now=_at(1)), claim(other, "classify", now=_at(1))
    assert submits_in_one_batch([(nothing, {"size": "none"}), (something, {"size": "large"})], _at(2)) == [None, None]
    assert [states(run)[task] for task in ("ship", "by_hand")] == ["skipped", "available"]
    assert [states(other)[task] for task in ("ship", "by_hand")] == ["pending", "pending"]
    assert submits_in_one_batch([(claim(other, "large", now=_at(3)), PARCEL)], _at(4)) == [None]
    assert [states(other)[task] for task in ("ship", "by_hand")] == ["available", "skipped"]


def test_in_a_run_too_wide_to_read_whole_both_read_the_upstream_they_were_not_given(tmp_path):
    lanes = "\n".join(f"      lane{n}: {{function: lane, output: Blob}}" for n in range(80))
    text = ORDERS.replace("    tasks:\n", "    tasks:\n" + lanes + "\n", 1)
    text += ("      tally: {function: tally, output: Blob, after: [lane0, lane1], "
             "trigger_rule: none_failed_min_one_success}\n"
             "      rescue: {function: rescue, output: Blob, after: [lane0, lane1], trigger_rule: all_skipped}\n")
    run = _orders(tmp_path, text)
    other = store.trigger("acme", "orders", actor="shop", now=_at(0))
    for each in (run, other):
        store.skip_instance(instance(each, "lane0").id, "not today", actor="ann", now=_at(1))
    store.skip_instance(instance(run, "lane1").id, "not today", actor="ann", now=_at(2))
    complete(other, "lane1", PARCEL, now=_at(2))
    assert [states(run)[task] for task in ("tally", "rescue")] == ["skipped", "available"]
    assert [states(other)[task] for task in ("tally", "rescue")] == ["available", "skipped"]


def test_held_and_released_after_every_branch_was_skipped_the_join_is_skipped_and_the_fallback_offered(tmp_path):
    run = _orders(tmp_path)
    for task in ("ship", "by_hand"):
        store.hold(instance(run, task).id, actor="ann", now=_at(0))
    complete(run, "classify", {"size": "none"}, now=_at(1))
    assert (states(run)["ship"], states(run)["by_hand"]) == ("held", "held")
    for task in ("ship", "by_hand"):
        store.release(instance(run, task).id, actor="ann", now=_at(2))
    assert (states(run)["ship"], states(run)["by_hand"]) == ("skipped", "available")


def test_a_held_fallback_released_after_a_branch_succeeded_is_skipped(tmp_path):
    run = _orders(tmp_path)
    store.hold(instance(run, "by_hand").id, actor="ann", now=_at(0))
    complete(run, "classify", {"size": "small"}, now=_at(1))
    complete(run, "small", PARCEL, now=_at(2))
    complete(run, "ship", PARCEL, now=_at(3))
    assert states(run)["by_hand"] == "held" and store.get_run(run).status == "running"
    store.release(instance(run, "by_hand").id, actor="ann", now=_at(4))
    assert states(run)["by_hand"] == "skipped" and store.get_run(run).status == "succeeded"


def test_an_undo_of_the_classification_asks_again_and_a_branch_taken_then_lets_the_join_go(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "none"}, now=_at(1))
    plan = store.plan_undo(instance(run, "classify").id)
    assert {a.task: a.becomes for a in plan.affected} == {"classify": "available", "small": "pending",
                                                          "large": "pending", "ship": "pending", "by_hand": "pending"}
    store.undo(instance(run, "classify").id, "misread the order", actor="ann", now=_at(2))
    assert states(run) == {"classify": "available", "small": "pending", "large": "pending", "ship": "pending",
                           "by_hand": "pending"}
    complete(run, "classify", {"size": "large"}, now=_at(3))
    complete(run, "large", PARCEL, now=_at(4))
    assert offered_inputs(run, "ship") == {"small": None, "large": PARCEL}
    assert states(run)["by_hand"] == "skipped"


def test_an_undo_of_the_skipped_fallback_itself_runs_it(tmp_path):
    run = _orders(tmp_path)
    complete(run, "classify", {"size": "small"}, now=_at(1))
    complete(run, "small", PARCEL, now=_at(2))
    store.undo(instance(run, "by_hand").id, "pack this one by hand as well", actor="ann", now=_at(3))
    assert states(run)["by_hand"] == "available"
