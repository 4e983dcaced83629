"""A task's `max_running`: at most that many of its instances, over all runs of the workflow, offered or
running at once (Airflow's max_active_tis_per_dag, Conductor's concurrentExecLimit). The rest wait as
`queued` and the scheduler's sweep offers them as slots free, the most urgent, then the longest waiting,
first."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.errors import IllegalTransition
from flow45.models import Event, Outbox
from flow45.store.batch import Item, apply_worker_batch
from tests.store.helpers import BLOB, claim, config_refusal, deploy_blob_tasks, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

FIRST_OF_MONTH = dt.datetime(2027, 3, 1, 0, 0)  # a month's calls start together at midnight
CALLS = ["call: {function: call_crm, output: Blob, max_running: 2}",
         "after: {function: tidy, output: Blob, inputs: {src: call}}"]


def _at(minutes: float) -> dt.datetime:
    return FIRST_OF_MONTH + dt.timedelta(minutes=minutes)


def _runs(n: int, minutes: float = 0, **given) -> list[int]:
    return [store.trigger("acme", "calls", actor="cron", now=_at(minutes), **given) for _ in range(n)]


def _call_states(runs: list[int]) -> list[str]:
    return [states(run)["call"] for run in runs]


def _finish(run: int, minutes: float) -> None:
    grant = claim(run, "call", now=_at(minutes))
    store.submit(grant.instance, grant.token, BLOB, now=_at(minutes))


def test_past_its_max_running_a_task_waits_queued_and_is_offered_oldest_first_as_slots_free(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(4)
    assert _call_states(runs) == ["available", "available", "queued", "queued"]
    queued = Event.get((Event.instance == instance(runs[2], "call").id) & (Event.to_state == "queued"))
    assert queued.detail["queued"] == "max_running 2 for call: 2 offered or running"
    assert instance(runs[2], "call").token is None and instance(runs[2], "call").attempt == 0
    assert Outbox.select().count() == 2  # no offer for a queued instance: no worker can claim it

    claim(runs[0], "call", now=_at(1))
    assert store.offer_queued(_at(2)) == []  # offered or running, both take a slot
    _finish(runs[1], 3)  # the submit hands its slot on at once, not at the scheduler's next tick
    assert _call_states(runs) == ["running", "succeeded", "available", "queued"]
    assert states(runs[1])["after"] == "available"  # another task: no limit of its own
    slotted = Event.get((Event.instance == instance(runs[2], "call").id) & (Event.to_state == "available"))
    assert (slotted.kind, slotted.actor, slotted.from_state) == ("slot", "flow45-scheduler", "queued")


def test_a_long_queue_of_one_task_keeps_no_other_tasks_queued_instance_waiting(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    deploy_blob_tasks(tmp_path, "mails", ["send: {function: send_mail, output: Blob, max_running: 1}"])
    _runs(6)  # two offered, four queued ahead of any mail
    mails = [store.trigger("acme", "mails", actor="cron", now=_at(1)) for _ in range(2)]
    store.cancel_run(mails[0], actor="ann", now=_at(2))  # an operator's change: the sweep hands its slot on
    assert store.offer_queued(_at(3), limit=2) == [instance(mails[1], "send").id]


def test_an_urgent_run_goes_ahead_of_those_queued_before_it(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(3)
    urgent = store.trigger("acme", "calls", actor="ann", now=_at(1), priority=9)
    _finish(runs[0], 2)
    assert _call_states([*runs, urgent]) == ["succeeded", "available", "queued", "available"]


def test_the_slots_are_the_workflows_over_its_versions_and_each_workflow_counts_its_own(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    deploy_blob_tasks(tmp_path, "others", CALLS)
    first = _runs(2)
    deploy_blob_tasks(tmp_path, "calls", [CALLS[0].replace("max_running: 2", "max_running: 3"), CALLS[1]])
    later = _runs(2, minutes=1)
    assert _call_states(first + later) == ["available", "available", "available", "queued"]
    assert states(store.trigger("acme", "others", actor="cron", now=_at(1)))["call"] == "available"


def test_a_queued_instance_can_be_held_released_skipped_and_its_run_cancelled(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(4)
    third, fourth = instance(runs[2], "call"), instance(runs[3], "call")
    store.hold(third.id, actor="ann", reason="wait for the CRM fix", now=_at(1))
    store.release(third.id, actor="ann", now=_at(2))
    assert _call_states(runs[2:]) == ["queued", "queued"]  # released with no free slot: queued again
    store.skip_instance(fourth.id, "done by hand", actor="ann", now=_at(3))
    store.cancel_run(runs[2], actor="ann", now=_at(4))
    _finish(runs[0], 5)
    assert store.offer_queued(_at(6)) == []  # nothing left queued to offer
    assert _call_states(runs) == ["succeeded", "available", "cancelled", "skipped"]


def test_undoing_what_a_queued_instance_waits_on_takes_it_back_to_pending(tmp_path):
    deploy_blob_tasks(tmp_path, "chain", [
        "load: {function: load, output: Blob}",
        "call: {function: call_crm, output: Blob, inputs: {src: load}, max_running: 1}"])
    runs = [store.trigger("acme", "chain", actor="cron", now=_at(0)) for _ in range(2)]
    for run in runs:
        grant = claim(run, "load", now=_at(1))
        store.submit(grant.instance, grant.token, BLOB, now=_at(1))
    assert [states(r)["call"] for r in runs] == ["available", "queued"]
    store.undo(instance(runs[1], "load").id, "wrong file", actor="ann", now=_at(2))
    assert states(runs[1]) == {"load": "available", "call": "pending"}
    with pytest.raises(IllegalTransition, match="is pending: it has not started"):
        store.undo(instance(runs[1], "call").id, "again", actor="ann", now=_at(3))


def test_a_failed_attempt_frees_its_slot_and_its_retry_queues_behind_the_instance_that_took_it(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", ["call: {function: call_crm, output: Blob, max_running: 1, retries: 2}"])
    runs = _runs(2)
    grant = claim(runs[0], "call", now=_at(1))
    store.fail(grant.instance, grant.token, "CRM busy", now=_at(2))  # retry_delay from settings
    assert _call_states(runs) == ["retry_wait", "available"]
    store.release_due_retries(now=_at(30))
    assert _call_states(runs) == ["queued", "available"]
    _finish(runs[1], 31)
    assert _call_states(runs) == ["available", "succeeded"] and instance(runs[0], "call").attempt == 2


def test_a_submit_through_the_bridges_batch_frees_the_slot_and_the_sweep_fills_it(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(3)
    grant = claim(runs[0], "call", now=_at(1))
    item = Item("acme", "m-1", m.Submit(type="submit", instance=grant.instance, token=grant.token, output=BLOB))
    with atomic():
        apply_worker_batch([item], _at(2))
    assert item.error is None
    assert store.offer_queued(_at(2)) == [instance(runs[2], "call").id]


@pytest.mark.parametrize("task, refused", [
    ("{function: decide, output: Blob, human: true, max_running: 2}", "max_running: a human task waits for a person"),
    ("{wait: 10m, max_running: 2}", "a timer (wait) has no worker and no output: remove max_running"),
    ("{function: call_crm, output: Blob, max_running: 0}", "greater than or equal to 1"),
])
def test_max_running_is_for_worker_tasks_and_at_least_one(tmp_path, task, refused):
    assert refused in config_refusal(tmp_path, f"{{w: {{tasks: {{t: {task}}}}}}}")
