"""A task's `trigger_rule: one_failed` (Airflow's): offered as soon as an upstream task has failed for good,
or will never run because of a failure before it, for a compensation (a refund after a charge whose
shipping failed) or an alert; skipped once every upstream task has succeeded or been skipped. The run's
outcome is its tasks' as always: the failure fails it once the compensation has ended."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from tests.store.helpers import (
    BLOB, claim, complete, deploy_blob_tasks, fail_for_good, failure, in_one_batch, instance, offered_inputs,
    skip_detail, states, task_refusal,
)

pytestmark = pytest.mark.usefixtures("store_db")

LEAP_DAY = dt.datetime(2028, 2, 29, 23, 50)  # the shipping fails before midnight, the refund runs on 1 March
ORDER = ["charge: {function: charge, output: Blob}",
         "pack: {function: pack, output: Blob}",
         "ship: {function: ship, output: Blob, inputs: {parcel: pack}, after: [charge], lease: 5m}",
         "refund: {function: refund, output: Blob, inputs: {payment: charge}, after: [ship], "
         "trigger_rule: one_failed}"]


def _at(minutes: float) -> dt.datetime:
    return LEAP_DAY + dt.timedelta(minutes=minutes)


def _order(tmp_path, tasks=ORDER) -> int:
    deploy_blob_tasks(tmp_path, "order", tasks)
    return store.trigger("acme", "order", actor="shop", now=_at(0))


def test_without_a_failure_the_compensation_is_skipped_and_the_run_succeeds(tmp_path):
    run = _order(tmp_path)
    for task in ("charge", "pack"):
        complete(run, task, BLOB, now=_at(1))
    assert states(run)["refund"] == "pending"  # ship may still fail
    complete(run, "ship", BLOB, now=_at(2))
    assert states(run)["refund"] == "skipped"
    assert skip_detail(run, "refund") == {"reason": "trigger_rule one_failed: no upstream task failed",
                                           "trigger_rule": "one_failed"}
    assert store.get_run(run).status == "succeeded"


def test_a_failure_for_good_lets_the_compensation_go_and_the_run_fails_once_it_has_ended(tmp_path):
    run = _order(tmp_path)
    for task in ("charge", "pack"):
        complete(run, task, BLOB, now=_at(1))
    fail_for_good(run, "ship", _at(5), "carrier refused")
    assert states(run)["refund"] == "available"
    assert offered_inputs(run, "refund") == {"payment": BLOB}
    assert store.get_run(run).status == "running"  # the refund is on its way: the run keeps its slot
    complete(run, "refund", BLOB, now=_at(15))  # on 1 March
    assert states(run)["refund"] == "succeeded" and store.get_run(run).status == "failed"


def test_it_goes_at_once_while_another_upstream_still_runs_and_when_a_failure_before_its_upstream_stops_it(tmp_path):
    tasks = ["a: {function: fa, output: Blob}", "b: {function: fb, output: Blob}",
             "c: {function: fc, output: Blob, inputs: {src: b}}",
             "alert: {function: page, output: Blob, inputs: {left: a, right: c}, trigger_rule: one_failed}"]
    run = _order(tmp_path, tasks)
    fail_for_good(run, "a", _at(1), "carrier refused")
    assert states(run) == {"a": "failed", "b": "available", "c": "pending", "alert": "available"}
    complete(run, "alert", BLOB, now=_at(2))
    assert store.get_run(run).status == "running"  # b is on its way
    complete(run, "b", BLOB, now=_at(3))
    complete(run, "c", BLOB, now=_at(4))
    assert store.get_run(run).status == "failed"

    other = store.trigger("acme", "order", actor="shop", now=_at(0))
    complete(other, "a", BLOB, now=_at(1))
    fail_for_good(other, "b", _at(2), "carrier refused")  # c never runs: Airflow's upstream_failed
    assert states(other) == {"a": "succeeded", "b": "failed", "c": "pending", "alert": "available"}
    assert offered_inputs(other, "alert") == {"left": BLOB, "right": None}


def test_the_bridges_batch_lets_it_go_on_a_failure_and_skips_it_on_a_success(tmp_path):
    run = _order(tmp_path)
    other = store.trigger("acme", "order", actor="shop", now=_at(0))
    for each in (run, other):
        for task in ("charge", "pack"):
            complete(each, task, BLOB, now=_at(1))
    failed, shipped = claim(run, "ship", now=_at(2)), claim(other, "ship", now=_at(2))
    submit = m.Submit(type="submit", instance=shipped.instance, token=shipped.token, output=BLOB)
    assert in_one_batch([failure(failed, "carrier refused"), submit], _at(3)) == [None, None]
    assert (states(run)["refund"], states(other)["refund"]) == ("available", "skipped")
    assert (store.get_run(run).status, store.get_run(other).status) == ("running", "succeeded")


def _shipping_failed(tmp_path) -> int:
    run = _order(tmp_path)
    for task in ("charge", "pack"):
        complete(run, task, BLOB, now=_at(1))
    fail_for_good(run, "ship", _at(2), "carrier refused")
    return run


def test_a_retry_takes_back_the_offered_compensation_which_is_skipped_when_the_retry_succeeds(tmp_path):
    run = _shipping_failed(tmp_path)
    store.retry_instance(instance(run, "ship").id, actor="ann", now=_at(3))
    assert (states(run)["ship"], states(run)["refund"]) == ("available", "pending")
    complete(run, "ship", BLOB, now=_at(4))
    assert states(run)["refund"] == "skipped" and store.get_run(run).status == "succeeded"


@pytest.mark.parametrize("how", ["skip", "set_output"])
def test_an_operators_skip_or_output_of_the_failure_takes_the_offered_compensation_back_and_skips_it(tmp_path, how):
    run = _shipping_failed(tmp_path)
    ship = instance(run, "ship").id
    if how == "skip":
        store.skip_instance(ship, "shipped by hand", actor="ann", now=_at(3))
    else:
        store.set_output(ship, BLOB, reason="shipped by hand", actor="ann", now=_at(3))
    assert states(run)["refund"] == "skipped"
    assert store.get_run(run).status == "succeeded"


def test_an_undo_of_the_failure_after_the_compensation_ran_asks_again_and_a_success_skips_it(tmp_path):
    run = _shipping_failed(tmp_path)
    complete(run, "refund", BLOB, now=_at(3))
    store.undo(instance(run, "ship").id, "carrier back", actor="ann", now=_at(5))
    assert (states(run)["ship"], states(run)["refund"]) == ("available", "pending")
    complete(run, "ship", BLOB, now=_at(6))
    assert states(run)["refund"] == "skipped" and store.get_run(run).status == "succeeded"


def test_an_undo_of_the_shipping_runs_it_again_and_its_failure_then_lets_the_refund_go(tmp_path):
    run = _order(tmp_path)
    for task in ("charge", "pack", "ship"):
        complete(run, task, BLOB, now=_at(1))
    assert states(run)["refund"] == "skipped"
    store.undo(instance(run, "ship").id, "parcel lost", actor="ann", now=_at(2))
    assert (states(run)["ship"], states(run)["refund"]) == ("available", "pending")
    fail_for_good(run, "ship", _at(3), "carrier refused")
    assert states(run)["refund"] == "available"


def test_an_undo_of_the_skipped_compensation_runs_it_as_an_operator_asks(tmp_path):
    run = _order(tmp_path)
    for task in ("charge", "pack", "ship"):
        complete(run, task, BLOB, now=_at(1))
    store.undo(instance(run, "refund").id, "customer asked for a refund", actor="ann", now=_at(2))
    assert states(run)["refund"] == "available"
    complete(run, "refund", BLOB, now=_at(3))
    assert store.get_run(run).status == "succeeded"


def test_a_held_compensation_released_without_a_failure_is_skipped(tmp_path):
    run = _order(tmp_path)
    store.hold(instance(run, "refund").id, actor="ann", now=_at(0))
    for task in ("charge", "pack", "ship"):
        complete(run, task, BLOB, now=_at(1))
    assert states(run)["refund"] == "held"
    store.release(instance(run, "refund").id, actor="ann", now=_at(2))
    assert states(run)["refund"] == "skipped" and store.get_run(run).status == "succeeded"


def test_in_a_run_too_wide_to_read_whole_it_is_skipped_or_let_go_as_in_any(tmp_path):
    lanes = [f"lane{n}: {{function: lane, output: Blob}}" for n in range(80)]
    tasks = [*lanes, "alert: {function: page, output: Blob, after: [lane0, lane1], trigger_rule: one_failed}"]
    run = _order(tmp_path, tasks)
    other = store.trigger("acme", "order", actor="shop", now=_at(0))
    complete(run, "lane0", BLOB, now=_at(1))
    complete(run, "lane1", BLOB, now=_at(1))
    fail_for_good(other, "lane1", _at(1), "carrier refused")
    assert (states(run)["alert"], states(other)["alert"]) == ("skipped", "available")


def test_airflows_rules_by_other_names_are_refused_naming_what_to_write(tmp_path):
    assert ("all_success, all_done, one_failed, none_failed_min_one_success, one_success, all_skipped, all_failed or "
            "none_skipped" in task_refusal(tmp_path, "{function: f, output: Blob, after: [x], trigger_rule: one_done}")
            .replace("'", ""))
    assert ("trigger_rule: 'none_failed' (Airflow's) is not a trigger rule here: write all_success, which goes after "
            "skipped upstream tasks too" in task_refusal(tmp_path, "{function: f, output: Blob, trigger_rule: none_failed}"))
    assert ("trigger_rule: 'always' (Airflow's) is not a trigger rule here: all_done is the nearest"
            in task_refusal(tmp_path, "{function: f, output: Blob, trigger_rule: always}"))


def test_the_undo_plan_says_the_compensation_is_offered_again_at_once_while_a_failure_still_lets_it_go(tmp_path):
    tasks = ["a: {function: fa, output: Blob}", "b: {function: fb, output: Blob}",
             "alert: {function: page, output: Blob, inputs: {left: a, right: b}, trigger_rule: one_failed}"]
    run = _order(tmp_path, tasks)
    fail_for_good(run, "a", _at(1), "carrier refused")
    complete(run, "b", BLOB, now=_at(2))
    complete(run, "alert", BLOB, now=_at(3))
    b = instance(run, "b").id
    planned = store.plan_undo(b)
    store.undo(b, "wrong parcel", actor="ann", now=_at(4))
    assert [(item.task, item.becomes) for item in planned.affected] == [("b", "available"), ("alert", "available")]
    assert (states(run)["b"], states(run)["alert"]) == ("available", "available")
