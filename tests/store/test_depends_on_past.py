"""A task's `depends_on_past` (Airflow's): its instance is offered only once the same task's instance in
the workflow's run before has succeeded, been skipped or been cancelled; meanwhile it waits `queued`, the
ledger and `show` saying for what. Nightly loads that must go in order, over New Year."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.graph import mermaid
from flow45.models import Event
from flow45.store.specs import current_spec
from tests.store.helpers import BLOB, claim, complete, deploy_blob_tasks, deploy_text, instance, states, task_refusal

pytestmark = pytest.mark.usefixtures("store_db")

NIGHTS = [dt.datetime(2026, 12, 30, 2, 30), dt.datetime(2026, 12, 31, 2, 30), dt.datetime(2027, 1, 1, 2, 30)]
LOADS = ["load: {function: load, output: Blob, depends_on_past: true, retries: 1, retry_delay: 1m}",
         "report: {function: report, output: Blob, inputs: {src: load}}"]


def _nights(tasks=LOADS, tmp_path=None) -> list[int]:
    deploy_blob_tasks(tmp_path, "nightly", tasks)
    return [store.trigger("acme", "nightly", actor="scheduler", now=night, trigger_kind="schedule", logical_time=night)
            for night in NIGHTS]


def _loads(runs: list[int]) -> list[str]:
    return [states(run)["load"] for run in runs]


def _finish(run: int, at: dt.datetime) -> None:
    grant = claim(run, "load", now=at)
    store.submit(grant.instance, grant.token, BLOB, now=at)


def test_each_night_loads_after_the_night_before_and_is_offered_as_soon_as_it_is_done(tmp_path):
    runs = _nights(tmp_path=tmp_path)
    assert _loads(runs) == ["available", "queued", "queued"]  # the first run has none before it
    queued = Event.get((Event.instance == instance(runs[1], "load").id) & (Event.to_state == "queued"))
    assert queued.detail["queued"] == f"depends_on_past: load of run {runs[0]} is available"
    assert store.get_instance(instance(runs[2], "load").id).queued_for == (
        "its instance in the run before to succeed (depends_on_past)")
    assert store.get_run(runs[2]).waiting_for == "1 instance(s) queued (depends_on_past)"
    _finish(runs[0], NIGHTS[2] + dt.timedelta(hours=1))  # the submit hands on at once
    assert _loads(runs) == ["succeeded", "available", "queued"]
    assert states(runs[0])["report"] == "available"  # the rest of the run goes on as ever
    _finish(runs[1], NIGHTS[2] + dt.timedelta(hours=2))
    assert _loads(runs) == ["succeeded", "succeeded", "available"]


def test_a_failed_night_holds_the_next_until_an_operator_skips_it_or_cancels_its_run(tmp_path):
    runs = _nights(tmp_path=tmp_path)
    at = NIGHTS[2]
    for attempt in range(2):  # its one retry fails too
        grant = claim(runs[0], "load", now=at)
        store.fail(grant.instance, grant.token, "source file missing", now=at)
        at += dt.timedelta(minutes=5)
        store.release_due_retries(now=at)
    assert _loads(runs) == ["failed", "queued", "queued"]
    assert store.offer_queued(at) == []  # nothing may go: the night before failed
    store.skip_instance(instance(runs[0], "load").id, "loaded by hand", actor="ann", now=at)
    assert _loads(runs) == ["skipped", "available", "queued"]  # the skip lets the next night go at once
    store.cancel_run(runs[1], actor="ann", reason="a duplicate night", now=at)
    assert _loads(runs) == ["skipped", "cancelled", "available"]


def test_a_night_skipped_in_the_middle_of_a_waiting_queue_lets_the_one_after_it_go(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", ["load: {function: load, output: Blob, depends_on_past: true}"])
    runs = [store.trigger("acme", "nightly", actor="scheduler", now=NIGHTS[0]) for _ in range(4)]
    grant = claim(runs[0], "load", now=NIGHTS[0])
    store.fail(grant.instance, grant.token, "source file missing", retryable=False, now=NIGHTS[0])
    assert _loads(runs) == ["failed", "queued", "queued", "queued"]
    store.skip_instance(instance(runs[2], "load").id, "loaded by hand", actor="ann", now=NIGHTS[1])
    # The second still waits for the failed first; the fourth's night before is skipped: it goes.
    assert _loads(runs) == ["failed", "queued", "skipped", "available"]


def test_a_queued_instance_that_waits_for_its_run_before_keeps_no_other_from_a_functions_free_slot(tmp_path):
    deploy_text(tmp_path, """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    functions:
      shared: {max_running: 1}
    workflows:
      nightly:
        max_active_runs: null
        tasks:
          a: {function: fa, output: Blob}
          load: {function: shared, output: Blob, inputs: {src: a}, depends_on_past: true}
          tidy: {function: shared, output: Blob, inputs: {src: a}}
    """)
    runs = [store.trigger("acme", "nightly", actor="scheduler", now=night) for night in NIGHTS[:2]]
    complete(runs[0], "a", BLOB, now=NIGHTS[0])
    assert [states(runs[0])[task] for task in ("load", "tidy")] == ["available", "queued"]
    store.hold(instance(runs[0], "load").id, actor="ann", now=NIGHTS[0])  # its slot goes to tidy
    complete(runs[1], "a", BLOB, now=NIGHTS[1])
    assert [states(runs[1])[task] for task in ("load", "tidy")] == ["queued", "queued"]
    complete(runs[0], "tidy", BLOB, now=NIGHTS[1])
    # The second night's load waits for the held first; its tidy takes the slot the first tidy freed.
    assert [states(runs[1])[task] for task in ("load", "tidy")] == ["queued", "available"]


def test_the_graph_says_a_task_goes_after_its_run_before(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", LOADS)
    nightly = current_spec(store.find_workflow("acme", "nightly")).workflow
    assert 'load["load<br/>load → Blob<br/>after its run before"]' in mermaid("acme/nightly", nightly)


def test_the_run_before_is_the_last_one_that_has_the_task(tmp_path):
    deploy_blob_tasks(tmp_path, "nightly", ["report: {function: report, output: Blob}"])
    older = store.trigger("acme", "nightly", actor="scheduler", now=NIGHTS[0])
    runs = _nights(tmp_path=tmp_path)  # a new version that adds the load
    assert states(older) == {"report": "available"}
    assert _loads(runs) == ["available", "queued", "queued"]


@pytest.mark.parametrize("task, refused", [
    ("{function: decide, output: Blob, human: true, depends_on_past: true}", "depends_on_past: a human task is offered"),
    ("{wait: 10m, depends_on_past: true}", "a timer (wait) has no worker and no output: remove depends_on_past"),
    ("{function: load, output: Blob, depends_on_past: yes}", "depends_on_past: 'yes' is not true or false"),
])
def test_depends_on_past_is_for_worker_tasks(tmp_path, task, refused):
    assert refused in task_refusal(tmp_path, task)


SCHEDULED = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      nightly:
        schedule: {cron: "30 2 * * *", timezone: UTC}
        max_active_runs: null
        tasks:
          load: {function: load, output: Blob, depends_on_past: true}
    """


def _scheduled(night: dt.datetime) -> int:
    return store.trigger("acme", "nightly", actor="scheduler", now=night, trigger_kind="schedule", logical_time=night)


def test_a_backfill_of_earlier_nights_goes_in_date_order_and_holds_no_later_night(tmp_path):
    deploy_text(tmp_path, SCHEDULED)
    nights = [_scheduled(night) for night in NIGHTS]  # 30 December to New Year's Day
    for run, night in zip(nights, NIGHTS):
        _finish(run, night)
    at = NIGHTS[2] + dt.timedelta(hours=3)
    plan = store.backfill("acme", "nightly", dt.datetime(2026, 12, 27), dt.datetime(2026, 12, 29, 12), actor="ops",
                          now=at)
    backfilled = [item.run for item in plan.items]
    # Made after New Year's night, they stand before the 30th: the 27th has no night before it.
    assert _loads(backfilled) == ["available", "queued", "queued"]
    assert store.get_instance(instance(backfilled[1], "load").id).state == "queued"
    queued = Event.get((Event.instance == instance(backfilled[1], "load").id) & (Event.to_state == "queued"))
    assert queued.detail["queued"] == f"depends_on_past: load of run {backfilled[0]} is available"
    # The next scheduled night's run before is New Year's, done: it does not wait for the backfill.
    next_night = _scheduled(dt.datetime(2027, 1, 2, 2, 30))
    assert _loads([next_night]) == ["available"]
    _finish(backfilled[0], at)
    assert _loads(backfilled) == ["succeeded", "available", "queued"]


def test_a_run_without_a_logical_time_stands_where_it_was_made_among_the_nights(tmp_path):
    deploy_text(tmp_path, SCHEDULED)
    first = _scheduled(NIGHTS[0])
    by_hand = store.trigger("acme", "nightly", actor="ann", now=NIGHTS[1] + dt.timedelta(hours=18))
    # The scheduler was down: the 31st's run is made on New Year's Day, after ann's, yet stands before it.
    late = store.trigger("acme", "nightly", actor="scheduler", now=NIGHTS[2] + dt.timedelta(hours=8),
                         trigger_kind="schedule", logical_time=NIGHTS[1])
    assert _loads([first, late, by_hand]) == ["available", "queued", "queued"]
    _finish(first, NIGHTS[2])
    assert _loads([first, late, by_hand]) == ["succeeded", "available", "queued"]
    _finish(late, NIGHTS[2])
    assert _loads([first, late, by_hand]) == ["succeeded", "succeeded", "available"]
