"""A task's `optional` (Conductor's): once its retries are spent it fails, and is skipped at once, so that
the run goes on without it: its downstream tasks get null for it and the run may succeed."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.graph import mermaid
from flow45.models import Event
from flow45.store.batch import Item, apply_worker_batch
from flow45.store.specs import current_spec
from tests.store.helpers import BLOB, claim, complete, deploy_blob_tasks, instance, offered_inputs, states, task_refusal

pytestmark = pytest.mark.usefixtures("store_db")

LEAP_DAY = dt.datetime(2028, 2, 29, 23, 50)  # the night's enrichment runs into March
TASKS = ["load: {function: load, output: Blob}",
         "enrich: {function: enrich, output: Blob, inputs: {src: load}, optional: true, retries: 1, retry_delay: 0s, "
         "lease: 5m}",
         "report: {function: report, output: Blob, inputs: {base: load, extra: enrich}}"]


def _at(minutes: float) -> dt.datetime:
    return LEAP_DAY + dt.timedelta(minutes=minutes)


def _run(tmp_path) -> int:
    deploy_blob_tasks(tmp_path, "nightly", TASKS)
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    complete(run, "load", BLOB, now=_at(1))
    return run


def _moves(run: int, task: str) -> list[tuple[str, str, str]]:
    return [(e.kind, e.from_state, e.to_state) for e in
            Event.select().where(Event.instance == instance(run, task).id).order_by(Event.id) if e.to_state]


def test_an_optional_task_that_fails_for_good_is_skipped_and_the_run_succeeds_without_it(tmp_path):
    run = _run(tmp_path)
    for minutes in (2, 3):  # its one retry fails too
        grant = claim(run, "enrich", now=_at(minutes))
        store.fail(grant.instance, grant.token, "enrichment service down", now=_at(minutes))
    assert states(run) == {"load": "succeeded", "enrich": "skipped", "report": "available"}
    assert _moves(run, "enrich")[-2:] == [("fail", "running", "failed"), ("skip", "failed", "skipped")]
    assert store.get_run(run).status == "running"  # never failed
    assert offered_inputs(run, "report") == {"base": BLOB, "extra": None}
    shown = next(i for i in store.get_run(run).instances if i.task == "enrich")
    assert shown.skip_reason == "optional, failed: enrichment service down"
    complete(run, "report", BLOB, now=_at(15))  # on 1 March
    assert store.get_run(run).status == "succeeded"
    assert [a.error for a in store.get_instance(instance(run, "enrich").id).attempts] == [
        "enrichment service down", "enrichment service down"]


def test_a_task_that_is_not_optional_fails_its_run(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", [TASKS[0], TASKS[1].replace("optional: true, ", ""), TASKS[2]])
    run = store.trigger("acme", "nightly", actor="cron", now=_at(0))
    complete(run, "load", BLOB, now=_at(1))
    for minutes in (2, 3):
        grant = claim(run, "enrich", now=_at(minutes))
        store.fail(grant.instance, grant.token, "enrichment service down", now=_at(minutes))
    assert states(run)["enrich"] == "failed" and store.get_run(run).status == "failed"


def test_an_optional_tasks_expired_lease_and_the_bridges_batch_skip_it_too(tmp_path):
    run = _run(tmp_path)
    claim(run, "enrich", now=_at(2))
    assert store.expire_leases(now=_at(8)) == [instance(run, "enrich").id]  # its retry: offered again
    grant = claim(run, "enrich", now=_at(9))
    item = Item("acme", "m-1", m.Fail(type="fail", instance=grant.instance, token=grant.token, error="bad key",
                                      retryable=True))
    with atomic():
        apply_worker_batch([item], _at(10))
    assert item.error is None and states(run)["enrich"] == "skipped"
    assert store.get_run(run).status == "running"


def test_undo_offers_a_skipped_optional_task_again_and_the_run_as_it_was_shows_both_moves(tmp_path):
    run = _run(tmp_path)
    grant = claim(run, "enrich", now=_at(2))
    store.fail(grant.instance, grant.token, "no such customer", retryable=False, now=_at(2))
    failed_at = Event.select().where(Event.to_state == "failed").get().id
    assert {i.task: i.state for i in store.run_as_of(run, event=failed_at).instances}["enrich"] == "failed"
    assert {i.task: i.state for i in store.run_as_of(run, event=failed_at + 1).instances}["enrich"] == "skipped"
    store.undo(instance(run, "enrich").id, "customer added", actor="ann", now=_at(20))
    assert states(run) == {"load": "succeeded", "enrich": "available", "report": "pending"}


@pytest.mark.parametrize("task, refused", [
    ("{function: decide, output: Blob, human: true, optional: true}", "optional: a human task fails only when overdue"),
    ("{wait: 10m, optional: true}", "a timer (wait) has no worker and no output: remove optional"),
])
def test_optional_is_for_worker_tasks(tmp_path, task, refused):
    assert refused in task_refusal(tmp_path, task)


def test_the_graph_marks_an_optional_task(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", TASKS)
    nightly = current_spec(store.find_workflow("acme", "nightly")).workflow
    assert 'enrich["enrich (optional)<br/>enrich → Blob"]' in mermaid("acme/nightly", nightly)
