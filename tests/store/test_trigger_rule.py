"""A task's `trigger_rule: all_done` (Airflow's): it is offered once every upstream task has finished,
failed for good too, so that a cleanup or teardown runs whatever happened; a failed upstream gives it null.
The run's outcome is its tasks' as always: a failure fails it (once the teardown has ended, as anything else
of the run on its way), and the teardown's success does not undo that."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.errors import IllegalTransition, StaleToken
from flow45.graph import mermaid
from flow45.scheduler import tick
from flow45.store.batch import Item, apply_worker_batch
from flow45.store.specs import current_spec
from tests.store.helpers import (
    BLOB, claim, complete, deploy_blob_tasks, deploy_text, fail_for_good, instance, offered_inputs, states,
    task_refusal,
)

pytestmark = pytest.mark.usefixtures("store_db")

NEW_YEARS_EVE = dt.datetime(2026, 12, 31, 23, 55)  # the load fails before midnight, the teardown runs after
TASKS = ["start: {function: start_cluster, output: Blob}",
         "load: {function: load, output: Blob, inputs: {cluster: start}, lease: 5m}",
         "audit: {function: audit, output: Blob, inputs: {cluster: start}}",
         "report: {function: report, output: Blob, inputs: {rows: load}}",
         "teardown: {function: stop_cluster, output: Blob, inputs: {cluster: start, rows: load}, after: [audit], "
         "trigger_rule: all_done}"]


def _at(minutes: float) -> dt.datetime:
    return NEW_YEARS_EVE + dt.timedelta(minutes=minutes)


def _run(tmp_path, rule: str = "all_done") -> int:
    deploy_blob_tasks(tmp_path, "nightly", [task.replace("all_done", rule) for task in TASKS])
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    complete(run, "start", BLOB, now=_at(1))
    complete(run, "audit", BLOB, now=_at(2))
    return run


def test_a_teardown_runs_after_its_upstream_fails_for_good_and_the_run_fails_once_it_has_ended(tmp_path):
    run = _run(tmp_path)
    fail_for_good(run, "load", _at(3), "table locked")
    assert states(run) == {"start": "succeeded", "load": "failed", "audit": "succeeded", "report": "pending",
                           "teardown": "available"}
    assert store.get_run(run).status == "running"  # the teardown is on its way: the run keeps its slot
    assert offered_inputs(run, "teardown") == {"cluster": BLOB, "rows": None}
    complete(run, "teardown", BLOB, now=_at(6))  # after midnight
    assert states(run)["teardown"] == "succeeded" and store.get_run(run).status == "failed"


def test_a_teardown_waits_for_every_upstream_and_runs_after_success_too(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", TASKS)
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    complete(run, "start", BLOB, now=_at(1))
    fail_for_good(run, "load", _at(2), "table locked")
    assert states(run)["teardown"] == "pending"  # audit has not ended
    complete(run, "audit", BLOB, now=_at(3))
    assert states(run)["teardown"] == "available"

    other = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    for task in ("start", "audit", "load"):
        assert states(other)["teardown"] == "pending"
        complete(other, task, BLOB, now=_at(4))
    assert offered_inputs(other, "teardown") == {"cluster": BLOB, "rows": BLOB}
    complete(other, "teardown", BLOB, now=_at(5))
    assert store.get_run(other).status == "running"  # report is still to do
    complete(other, "report", BLOB, now=_at(5))
    assert store.get_run(other).status == "succeeded"


@pytest.mark.parametrize("rule", ["all_done", "one_failed"])
def test_a_failure_with_retries_left_does_not_let_the_teardown_go(tmp_path, rule):
    deploy_blob_tasks(tmp_path, "nightly", [t.replace("lease: 5m", "lease: 5m, retries: 1, retry_delay: 1m")
                                            .replace("all_done", rule) for t in TASKS])
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    complete(run, "start", BLOB, now=_at(1))
    complete(run, "audit", BLOB, now=_at(1))
    grant = claim(run, "load", now=_at(2))
    store.fail(grant.instance, grant.token, "table locked", now=_at(2))
    assert (states(run)["load"], states(run)["teardown"]) == ("retry_wait", "pending")
    tick(_at(4))
    claim(run, "load", now=_at(4))
    tick(_at(10))  # its lease expires: no retries left
    assert (states(run)["load"], states(run)["teardown"]) == ("failed", "available")


def test_the_bridges_batch_lets_the_teardown_go_on_a_failure(tmp_path):
    run = _run(tmp_path)
    grant = claim(run, "load", now=_at(3))
    item = Item("acme", "m-1", m.Fail(type="fail", instance=grant.instance, token=grant.token, error="table locked",
                                      retryable=False))
    with atomic():
        apply_worker_batch([item], _at(3))
    assert item.error is None
    assert (states(run)["load"], states(run)["teardown"]) == ("failed", "available")


def test_a_retry_takes_back_a_teardown_only_offered_and_it_goes_after_the_retried_end(tmp_path):
    run = _run(tmp_path)
    fail_for_good(run, "load", _at(3), "table locked")
    offered = instance(run, "teardown")
    store.retry_instance(instance(run, "load").id, actor="ann", now=_at(4))
    assert (states(run)["load"], states(run)["teardown"]) == ("available", "pending")
    assert store.get_run(run).status == "running"
    with pytest.raises(StaleToken):  # a worker that took the earlier offer is too late
        store.claim(offered.id, offered.token, "w", now=_at(5))
    as_it_was = {i.task: i for i in store.run_as_of(run, at=_at(4)).instances}["teardown"]
    assert (as_it_was.state, as_it_was.offered_at) == ("pending", None)  # the dashboard's time travel: not offered
    complete(run, "load", BLOB, now=_at(6))
    assert offered_inputs(run, "teardown") == {"cluster": BLOB, "rows": BLOB}


@pytest.mark.parametrize("rule", ["all_done", "one_failed"])
@pytest.mark.parametrize("started", [False, True])
def test_a_retry_after_the_teardown_ran_is_refused_naming_undo_which_runs_both_again(tmp_path, started, rule):
    run = _run(tmp_path, rule)
    fail_for_good(run, "load", _at(3), "table locked")
    if started:
        claim(run, "teardown", now=_at(4))
    else:
        complete(run, "teardown", BLOB, now=_at(4))
    load = instance(run, "load").id
    with pytest.raises(IllegalTransition) as refused:
        store.retry_instance(load, actor="ann", now=_at(5))
    ran = "running" if started else "succeeded"
    assert str(refused.value) == (
        f"task instance {load} (load of run {run}) cannot be retried: teardown ({instance(run, 'teardown').id}, "
        f"{ran}) ran after its failure (trigger_rule: {rule}); undo instance {load} to run it and that again")
    assert states(run)["load"] == "failed"
    store.undo(load, "table unlocked", actor="ann", now=_at(6))
    assert (states(run)["load"], states(run)["teardown"]) == ("available", "pending")
    assert store.get_run(run).status == "running"


def test_an_undo_of_the_teardown_offers_it_again_after_a_failed_upstream(tmp_path):
    run = _run(tmp_path)
    fail_for_good(run, "load", _at(3), "table locked")
    complete(run, "teardown", BLOB, now=_at(4))
    store.undo(instance(run, "teardown").id, "cluster still up", actor="ann", now=_at(5))
    assert (states(run)["teardown"], store.get_run(run).status) == ("available", "failed")  # failed it stays


@pytest.mark.parametrize("rule, awaits, shown", [
    ("all_done", "finish", "once upstream ends, failed too"),
    ("one_failed", "fail", "only once an upstream fails"),
    ("none_failed_min_one_success", "succeed", "skipped if every upstream is"),
    ("one_success", "succeed", "once one upstream succeeds"),
    ("all_skipped", "be skipped", "only if every upstream is skipped"),
    ("all_failed", "fail", "only if every upstream fails"),
    ("none_skipped", "finish", "once upstream ends, skipped if one is"),
])
def test_each_rule_needs_an_upstream_and_the_graph_says_it(tmp_path, rule, awaits, shown):
    assert (f"trigger_rule: {rule} waits for the upstream tasks to {awaits}, and this task has none"
            in task_refusal(tmp_path, f"{{function: f, output: Blob, trigger_rule: {rule}}}"))
    deploy_blob_tasks(tmp_path, "nightly", [task.replace("all_done", rule) for task in TASKS])
    nightly = current_spec(store.find_workflow("acme", "nightly")).workflow
    assert f'teardown["teardown<br/>stop_cluster → Blob<br/>{shown}"]' in mermaid("acme/nightly", nightly)


def test_a_teardown_at_the_end_of_a_chain_runs_when_a_task_early_in_it_fails(tmp_path):
    tasks = ["load: {function: load, output: Blob}", "report: {function: report, output: Blob, inputs: {rows: load}}",
             "publish: {function: publish, output: Blob, inputs: {doc: report}}",
             "teardown: {function: stop_cluster, output: Blob, inputs: {doc: publish}, trigger_rule: all_done}"]
    deploy_blob_tasks(tmp_path, "nightly", tasks)
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    fail_for_good(run, "load", _at(1), "table locked")
    assert states(run) == {"load": "failed", "report": "pending", "publish": "pending", "teardown": "available"}
    assert offered_inputs(run, "teardown") == {"doc": None}  # publish never runs: Airflow's upstream_failed
    store.retry_instance(instance(run, "load").id, actor="ann", now=_at(2))
    assert states(run)["teardown"] == "pending"
    for task in ("load", "report", "publish"):
        complete(run, task, BLOB, now=_at(3))
    assert states(run)["teardown"] == "available"


def test_a_chain_thousands_long_lets_its_teardown_go(tmp_path):
    steps = [f"s{n}: {{function: step, output: Blob, after: [s{n - 1}]}}" for n in range(1, 1500)]
    tasks = ["s0: {function: step, output: Blob}", *steps,
             "teardown: {function: stop_cluster, output: Blob, after: [s1499], trigger_rule: all_done}"]
    deploy_blob_tasks(tmp_path, "long", tasks)
    run = store.trigger("acme", "long", actor="cron", now=_at(0))
    fail_for_good(run, "s0", _at(1), "table locked")
    assert states(run)["teardown"] == "available"


CHAIN = ["load: {function: load, output: Blob}", "report: {function: report, output: Blob, inputs: {rows: load}}",
         "teardown: {function: stop_cluster, output: Blob, inputs: {doc: report}, trigger_rule: all_done}"]


def test_skipping_the_failed_task_lets_what_follows_it_run_and_the_teardown_waits_for_it(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", CHAIN)
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    fail_for_good(run, "load", _at(1), "table locked")
    assert states(run)["teardown"] == "available"
    store.skip_instance(instance(run, "load").id, "loaded by hand", actor="ann", now=_at(2))
    assert states(run) == {"load": "skipped", "report": "available", "teardown": "pending"}
    complete(run, "report", BLOB, now=_at(3))
    assert offered_inputs(run, "teardown") == {"doc": BLOB}


def test_an_output_set_on_the_failed_task_after_the_teardown_started_is_refused_naming_undo(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", CHAIN)
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    fail_for_good(run, "load", _at(1), "table locked")
    claim(run, "teardown", now=_at(2))
    load = instance(run, "load").id
    with pytest.raises(IllegalTransition, match=f"cannot be given an output: teardown .* undo instance {load}"):
        store.set_output(load, BLOB, reason="loaded by hand", actor="ann", now=_at(3))
    assert states(run) == {"load": "failed", "report": "pending", "teardown": "running"}


def test_skipping_a_failed_task_the_teardown_follows_directly_leaves_its_offer(tmp_path):
    run = _run(tmp_path)
    fail_for_good(run, "load", _at(3), "table locked")
    offered = instance(run, "teardown")
    store.skip_instance(instance(run, "load").id, "no rows tonight", actor="ann", now=_at(4))
    assert states(run)["teardown"] == "available"  # it waited for load alone, which has ended either way
    assert instance(run, "teardown").token == offered.token


def test_a_retry_that_takes_back_an_offered_teardown_hands_its_slot_on_at_once(tmp_path):
    """The teardown's offer held the one slot of its function; the retry frees it, as a hold would."""
    deploy_text(tmp_path, """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    functions:
      cluster: {max_running: 1}
    workflows:
      nightly:
        tasks:
          load: {function: load, output: Blob}
          teardown: {function: cluster, output: Blob, after: [load], trigger_rule: all_done}
      resize:
        tasks:
          grow: {function: cluster, output: Blob}
    """)
    night = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    fail_for_good(night, "load", _at(1), "table locked")
    resize = store.trigger("acme", "resize", actor="ann", now=_at(2))
    assert (states(night)["teardown"], states(resize)["grow"]) == ("available", "queued")
    store.retry_instance(instance(night, "load").id, actor="ann", now=_at(3))
    assert (states(night)["teardown"], states(resize)["grow"]) == ("pending", "available")
