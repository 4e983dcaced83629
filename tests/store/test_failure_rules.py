"""Two of Airflow's trigger rules that wait, as an `all_done` teardown does, until every upstream task has
ended: done, failed for good, or never to run because of a failure before it (Airflow's upstream_failed).

- `all_failed`, the alert when every source failed (`page`): offered only if every upstream task failed
  so, and skipped if one succeeded or was skipped;
- `none_skipped`, the comparison of every quote, a failed one's too (`compare`): offered only if no
  upstream task was skipped, and skipped if one was.

The run's outcome is its tasks' as always: a failure fails it once they have ended."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.errors import IllegalTransition
from tests.store.helpers import (
    BLOB, claim, complete, deploy_blob_tasks, fail_for_good, failure, in_one_batch, instance, offered_inputs,
    skip_detail, states,
)

pytestmark = pytest.mark.usefixtures("store_db")

NEW_YEARS_EVE = dt.datetime(2026, 12, 31, 23, 55)  # the sources fail in one year, the page goes out in the next
PRICES = ["north: {function: quote_north, output: Blob}",
          "south: {function: quote_south, output: Blob}",
          "check: {function: check, output: Blob, inputs: {quote: south}}",
          "page: {function: page, output: Blob, inputs: {north: north}, after: [check], trigger_rule: all_failed}",
          "compare: {function: compare, output: Blob, inputs: {north: north, south: check}, "
          "trigger_rule: none_skipped}"]


def _at(minutes: float) -> dt.datetime:
    return NEW_YEARS_EVE + dt.timedelta(minutes=minutes)


def _prices(tmp_path, tasks=PRICES) -> int:
    deploy_blob_tasks(tmp_path, "prices", tasks)
    return store.trigger("acme", "prices", actor="shop", now=_at(0))


def _all_failed(tmp_path) -> int:
    run = _prices(tmp_path)
    fail_for_good(run, "north", _at(1), "north is down")
    fail_for_good(run, "south", _at(2), "south is down")  # check never runs: it counts as failed
    return run


def test_when_every_source_failed_both_go_and_the_run_fails_once_they_have_ended(tmp_path):
    run = _all_failed(tmp_path)
    assert states(run) == {"north": "failed", "south": "failed", "check": "pending", "page": "available",
                           "compare": "available"}
    assert offered_inputs(run, "page") == {"north": None}
    assert offered_inputs(run, "compare") == {"north": None, "south": None}
    complete(run, "page", BLOB, now=_at(10))  # on New Year's Day
    assert store.get_run(run).status == "running"  # the comparison is on its way: the run keeps its slot
    complete(run, "compare", BLOB, now=_at(11))
    assert store.get_run(run).status == "failed"


def test_it_waits_for_every_upstream_task_and_one_that_succeeded_skips_it(tmp_path):
    run = _prices(tmp_path)
    fail_for_good(run, "north", _at(1), "north is down")
    assert states(run)["page"] == "pending"  # south may fail too
    complete(run, "south", BLOB, now=_at(2))
    assert states(run)["page"] == "pending"
    complete(run, "check", BLOB, now=_at(3))
    assert (states(run)["page"], states(run)["compare"]) == ("skipped", "available")
    assert skip_detail(run, "page") == {"reason": "trigger_rule all_failed: upstream task check did not fail",
                                        "trigger_rule": "all_failed"}
    assert offered_inputs(run, "compare") == {"north": None, "south": BLOB}
    complete(run, "compare", BLOB, now=_at(4))
    assert store.get_run(run).status == "failed"  # north's failure is the run's outcome


def test_an_upstream_task_skipped_skips_both_and_without_a_failure_the_run_succeeds(tmp_path):
    run = _prices(tmp_path)
    complete(run, "north", BLOB, now=_at(1))
    complete(run, "south", BLOB, now=_at(2))
    store.skip_instance(instance(run, "check").id, "no checks on New Year's Eve", actor="ann", now=_at(3))
    assert (states(run)["page"], states(run)["compare"]) == ("skipped", "skipped")
    assert skip_detail(run, "compare") == {"reason": "trigger_rule none_skipped: upstream task check was skipped",
                                           "trigger_rule": "none_skipped"}
    assert store.get_run(run).status == "succeeded"


def test_the_bridges_batch_lets_it_go_or_skips_it_message_by_message(tmp_path):
    run = _prices(tmp_path)
    other = store.trigger("acme", "prices", actor="shop", now=_at(0))
    for each in (run, other):
        fail_for_good(each, "north", _at(1), "north is down")
    down, up = claim(run, "south", now=_at(2)), claim(other, "south", now=_at(2))
    shipped = m.Submit(type="submit", instance=up.instance, token=up.token, output=BLOB)
    assert in_one_batch([failure(down, "south is down"), shipped], _at(3)) == [None, None]
    assert (states(run)["page"], states(other)["page"]) == ("available", "pending")
    assert (states(run)["compare"], states(other)["compare"]) == ("available", "pending")


def test_a_retry_takes_the_offered_alert_back_and_its_success_then_skips_it(tmp_path):
    run = _all_failed(tmp_path)
    store.retry_instance(instance(run, "south").id, actor="ann", now=_at(3))
    assert [states(run)[task] for task in ("south", "page", "compare")] == ["available", "pending", "pending"]
    complete(run, "south", BLOB, now=_at(4))
    complete(run, "check", BLOB, now=_at(5))
    assert (states(run)["page"], states(run)["compare"]) == ("skipped", "available")


@pytest.mark.parametrize("how", ["skip", "set_output"])
def test_an_operators_skip_or_output_of_a_failure_skips_the_offered_alert(tmp_path, how):
    run = _all_failed(tmp_path)
    north = instance(run, "north").id
    if how == "skip":
        store.skip_instance(north, "quoted by phone", actor="ann", now=_at(3))
    else:
        store.set_output(north, BLOB, reason="quoted by phone", actor="ann", now=_at(3))
    assert states(run)["page"] == "skipped"
    assert skip_detail(run, "page")["reason"] == "trigger_rule all_failed: upstream task north did not fail"
    # The comparison is skipped only when the quote is: a quote given by hand is one to compare.
    assert states(run)["compare"] == ("skipped" if how == "skip" else "available")


def test_once_the_alert_has_started_a_retry_is_refused_naming_undo(tmp_path):
    run = _all_failed(tmp_path)
    claim(run, "page", now=_at(3))
    with pytest.raises(IllegalTransition, match=r"page \(\d+, running\) ran after its failure \(trigger_rule: "
                                                r"all_failed\); undo instance \d+"):
        store.retry_instance(instance(run, "south").id, actor="ann", now=_at(4))


def test_an_undo_of_a_failure_after_the_alert_ran_asks_again(tmp_path):
    run = _all_failed(tmp_path)
    complete(run, "page", BLOB, now=_at(3))
    south = instance(run, "south").id
    plan = store.plan_undo(south)
    assert {a.task: a.becomes for a in plan.affected} == {"south": "available", "page": "pending",
                                                          "compare": "pending"}
    store.undo(south, "south is back", actor="ann", now=_at(4))
    assert [states(run)[task] for task in ("south", "page", "compare")] == ["available", "pending", "pending"]
    fail_for_good(run, "south", _at(5), "south is down again")
    assert (states(run)["page"], states(run)["compare"]) == ("available", "available")


def test_held_and_released_each_is_offered_or_skipped_as_its_upstream_ended(tmp_path):
    every, one = _prices(tmp_path), store.trigger("acme", "prices", actor="shop", now=_at(0))
    for run in (every, one):
        for task in ("page", "compare"):
            store.hold(instance(run, task).id, actor="ann", now=_at(0))
        fail_for_good(run, "north", _at(1), "north is down")
    fail_for_good(every, "south", _at(2), "south is down")
    complete(one, "south", BLOB, now=_at(2))
    store.skip_instance(instance(one, "check").id, "no checks on New Year's Eve", actor="ann", now=_at(3))
    assert {states(run)[task] for run in (every, one) for task in ("page", "compare")} == {"held"}
    for run in (every, one):
        for task in ("page", "compare"):
            store.release(instance(run, task).id, actor="ann", now=_at(4))
    assert (states(every)["page"], states(one)["page"]) == ("available", "skipped")
    assert (states(every)["compare"], states(one)["compare"]) == ("available", "skipped")


def test_in_a_run_too_wide_to_read_whole_it_is_skipped_or_let_go_as_in_any(tmp_path):
    lanes = [f"lane{n}: {{function: lane, output: Blob}}" for n in range(80)]
    tasks = [*lanes, "alert: {function: page, output: Blob, after: [lane0, lane1], trigger_rule: all_failed}",
             "tally: {function: tally, output: Blob, after: [lane0, lane1], trigger_rule: none_skipped}"]
    run = _prices(tmp_path, tasks)
    other = store.trigger("acme", "prices", actor="shop", now=_at(0))
    for each in (run, other):
        fail_for_good(each, "lane0", _at(1), "lane down")
    fail_for_good(run, "lane1", _at(2), "lane down")
    store.skip_instance(instance(other, "lane1").id, "not today", actor="ann", now=_at(2))
    assert [states(run)[task] for task in ("alert", "tally")] == ["available", "available"]
    assert [states(other)[task] for task in ("alert", "tally")] == ["skipped", "skipped"]
