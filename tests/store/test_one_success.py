"""A task's `trigger_rule: one_success` (Airflow's): offered as soon as one upstream task has succeeded,
without waiting for the others: an order placed with the first supplier's quote. Skipped once every
upstream task was skipped; never offered when none can succeed any more (a failure fails the run, as
all_success's does), and an `all_done` teardown after it then goes."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.models import Event, Outbox
from tests.store.helpers import (
    claim, complete, deploy_text, fail_for_good, instance, offered_inputs, skip_detail, states,
    submits_in_one_batch,
)

pytestmark = pytest.mark.usefixtures("store_db")

LEAP_DAY = dt.datetime(2028, 2, 29, 23, 57)  # the quotes come in on 29 February, the order goes on 1 March
SKIPPED_ALL = "trigger_rule one_success: every upstream task was skipped"
NORTH, SOUTH, PLACED = {"uri": "s3://quotes/north"}, {"uri": "s3://quotes/south"}, {"uri": "s3://orders/1"}
BUY = """
team: acme
types:
  Blob: {fields: {uri: string}}
workflows:
  buy:
    tasks:
      request: {function: request, output: Blob}
      north: {function: quote_north, output: Blob, inputs: {req: request}}
      south: {function: quote_south, output: Blob, inputs: {req: request}}
      order: {function: place_order, output: Blob, inputs: {north: north, south: south}, trigger_rule: one_success}
      close: {function: close, output: Blob, inputs: {order: order}, trigger_rule: all_done}
"""


def _at(minutes: float) -> dt.datetime:
    return LEAP_DAY + dt.timedelta(minutes=minutes)


def _buy(tmp_path, text: str = BUY) -> int:
    deploy_text(tmp_path, text)
    run = store.trigger("acme", "buy", actor="shop", now=_at(0))
    complete(run, "request", {"uri": "s3://requests/1"}, now=_at(1))
    return run


def _skip(run: int, task: str, minutes: float) -> None:
    store.skip_instance(instance(run, task).id, "supplier closed", actor="ann", now=_at(minutes))


def test_the_first_quote_lets_the_order_go_without_waiting_for_the_other(tmp_path):
    run = _buy(tmp_path)
    claim(run, "south", now=_at(2))
    complete(run, "north", NORTH, now=_at(2))
    assert states(run) == {"request": "succeeded", "north": "succeeded", "south": "running", "order": "available",
                           "close": "pending"}
    assert offered_inputs(run, "order") == {"north": NORTH, "south": None}
    store.submit(instance(run, "south").id, instance(run, "south").token, SOUTH, now=_at(3))  # on 1 March
    assert states(run)["order"] == "available" and instance(run, "order").attempt == 1  # offered once
    complete(run, "order", PLACED, now=_at(4))
    complete(run, "close", PLACED, now=_at(5))
    assert store.get_run(run).status == "succeeded"


def test_a_skipped_quote_leaves_the_order_waiting_for_the_other(tmp_path):
    run = _buy(tmp_path)
    _skip(run, "north", 2)
    assert states(run)["order"] == "pending" and store.get_run(run).status == "running"
    complete(run, "south", SOUTH, now=_at(3))
    assert states(run)["order"] == "available"
    assert offered_inputs(run, "order") == {"north": None, "south": SOUTH}


def test_when_every_quote_is_skipped_the_order_is_skipped_and_the_run_succeeds(tmp_path):
    run = _buy(tmp_path)
    _skip(run, "north", 2)
    _skip(run, "south", 3)
    assert states(run)["order"] == "skipped"
    assert skip_detail(run, "order") == {"reason": SKIPPED_ALL, "trigger_rule": "one_success"}
    complete(run, "close", PLACED, now=_at(4))
    assert store.get_run(run).status == "succeeded"


def test_a_failed_quote_does_not_stop_the_order_once_the_other_comes_in_but_fails_the_run(tmp_path):
    run = _buy(tmp_path)
    fail_for_good(run, "north", _at(2), "supplier gone")
    assert states(run)["order"] == "pending" and store.get_run(run).status == "running"
    assert states(run)["close"] == "pending"  # the order may still run
    complete(run, "south", SOUTH, now=_at(3))
    assert states(run)["order"] == "available"
    complete(run, "order", PLACED, now=_at(4))
    complete(run, "close", PLACED, now=_at(5))
    assert store.get_run(run).status == "failed"


def test_when_no_quote_can_come_in_the_order_never_runs_and_the_teardown_goes(tmp_path):
    run = _buy(tmp_path)
    _skip(run, "north", 2)
    fail_for_good(run, "south", _at(3), "supplier gone")
    assert states(run)["order"] == "pending"
    assert states(run)["close"] == "available"
    assert offered_inputs(run, "close") == {"order": None}
    complete(run, "close", PLACED, now=_at(4))
    assert store.get_run(run).status == "failed"


def test_a_held_order_with_a_quote_in_keeps_the_teardown_waiting_and_goes_once_released(tmp_path):
    run = _buy(tmp_path)
    store.hold(instance(run, "order").id, actor="ann", now=_at(1))
    complete(run, "north", NORTH, now=_at(2))
    fail_for_good(run, "south", _at(3), "supplier gone")
    assert (states(run)["order"], states(run)["close"]) == ("held", "pending")  # released, the order runs
    store.release(instance(run, "order").id, actor="ann", now=_at(4))
    assert states(run)["order"] == "available"
    assert offered_inputs(run, "order") == {"north": NORTH, "south": None}


def test_a_held_order_released_before_any_quote_waits_pending(tmp_path):
    run = _buy(tmp_path)
    store.hold(instance(run, "order").id, actor="ann", now=_at(1))
    _skip(run, "north", 2)
    store.release(instance(run, "order").id, actor="ann", now=_at(3))
    assert states(run)["order"] == "pending"
    complete(run, "south", SOUTH, now=_at(4))
    assert states(run)["order"] == "available"


def _undo_north(run: int, minutes: float) -> list[tuple[str, str]]:
    """Undo the north quote; what its plan said, each task and the state it becomes, checked against the
    states the undo left."""
    north = instance(run, "north").id
    planned = [(item.task, item.becomes) for item in store.plan_undo(north).affected]
    store.undo(north, "wrong price", actor="ann", now=_at(minutes))
    assert [(task, states(run)[task]) for task, _ in planned] == planned
    return planned


def test_an_undo_of_the_quote_that_let_the_order_go_offers_it_again_at_once_if_the_other_came_in(tmp_path):
    run = _buy(tmp_path)
    complete(run, "north", NORTH, now=_at(2))
    complete(run, "order", PLACED, now=_at(3))
    complete(run, "south", SOUTH, now=_at(4))
    assert _undo_north(run, 5) == [("north", "available"), ("order", "available"), ("close", "pending")]
    assert offered_inputs(run, "order") == {"north": None, "south": SOUTH}


def test_the_undo_plan_says_the_order_is_skipped_when_its_condition_fails_on_the_quote_left(tmp_path):
    text = BUY.replace("trigger_rule: one_success}", "trigger_rule: one_success,\n"
                       "             when: {north.uri: s3://quotes/north}}")
    run = _buy(tmp_path, text)
    complete(run, "north", NORTH, now=_at(2))
    complete(run, "order", PLACED, now=_at(3))
    complete(run, "south", SOUTH, now=_at(4))
    assert _undo_north(run, 5) == [("north", "available"), ("order", "skipped"), ("close", "available")]
    assert skip_detail(run, "order")["reason"] == "when north.uri is \"s3://quotes/north\": it is null"
    undo = Event.get((Event.run == run) & (Event.kind == "undo") & Event.to_state.is_null())  # the summary
    assert [(a["task"], a["becomes"]) for a in undo.detail["affected"]] == [
        ("north", "available"), ("order", "skipped"), ("close", "available")]  # the ledger says it too


@pytest.mark.parametrize("other", ["running", "skipped"])
def test_an_undo_of_the_only_quote_in_leaves_the_order_pending(tmp_path, other):
    run = _buy(tmp_path)
    if other == "running":
        claim(run, "south", now=_at(2))
    else:
        _skip(run, "south", 2)
    complete(run, "north", NORTH, now=_at(3))
    assert _undo_north(run, 4) == [("north", "available"), ("order", "pending")]


def test_two_quotes_in_one_batch_of_the_bridge_offer_the_order_once(tmp_path):
    run = _buy(tmp_path)
    north, south = claim(run, "north", now=_at(2)), claim(run, "south", now=_at(2))
    assert submits_in_one_batch([(north, NORTH), (south, SOUTH)], _at(3)) == [None, None]
    assert states(run)["order"] == "available"
    offers = Outbox.select().where((Outbox.instance == instance(run, "order").id) & (Outbox.kind == "offer"))
    assert offers.count() == 1
    assert offered_inputs(run, "order") == {"north": NORTH, "south": SOUTH}


def test_in_a_run_too_wide_to_read_whole_the_order_reads_the_quotes_it_was_not_given(tmp_path):
    lanes = "\n".join(f"      lane{n}: {{function: lane, output: Blob}}" for n in range(80))
    text = BUY.replace("    tasks:\n", "    tasks:\n" + lanes + "\n", 1)
    text += "      tally: {function: tally, output: Blob, after: [lane0, lane1], trigger_rule: one_success}\n"
    deploy_text(tmp_path, text)
    run, other = (store.trigger("acme", "buy", actor="shop", now=_at(0)) for _ in range(2))
    for each in (run, other):
        store.skip_instance(instance(each, "lane0").id, "not today", actor="ann", now=_at(1))
    assert (states(run)["tally"], states(other)["tally"]) == ("pending", "pending")
    store.skip_instance(instance(run, "lane1").id, "not today", actor="ann", now=_at(2))
    complete(other, "lane1", PLACED, now=_at(2))
    assert (states(run)["tally"], states(other)["tally"]) == ("skipped", "available")
