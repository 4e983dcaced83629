"""A finished run an operator gives work again (undo, retry, skip or set the output of its failed
instance) runs again only if its workflow has a free slot of `max_active_runs`; else it waits `queued`,
as a triggered run would, its ready instances pending, and starts in its place when a slot frees. Attempts
of a failed run still running go on; what follows them waits for the start."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.models import Event
from tests.store.helpers import BLOB, claim, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

NIGHTLY = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      nightly:
        max_active_runs: 1
        tasks:
          load: {function: load, output: Blob}
          audit: {function: audit, output: Blob}
          report: {function: report, output: Blob, inputs: {src: load}}
          check: {function: check, output: Blob, inputs: {src: audit}}
"""
# load waits for its night before (depends_on_past) only once prep is done: a run can start, then wait.
PREP_THEN_LOAD = NIGHTLY.replace("load: {function: load, output: Blob}",
                                 "prep: {function: prep, output: Blob}\n"
                                 "          load: {function: load, output: Blob, after: [prep], depends_on_past: true}")
NEW_YEAR = dt.datetime(2027, 1, 1, 2, 30)


def _night(day: int) -> int:
    night = dt.datetime(2026, 12, day, 2, 30)
    return store.trigger("acme", "nightly", actor="scheduler", now=night, trigger_kind="schedule", logical_time=night)


def _status(run: int) -> str:
    return store.get_run(run).status


def _fail(run: int, task: str, at: dt.datetime = NEW_YEAR) -> None:
    grant = claim(run, task, now=at)
    store.fail(grant.instance, grant.token, "source file missing", retryable=False, now=at)


def _finish_all(run: int, at: dt.datetime = NEW_YEAR) -> None:
    while ready := [task for task, state in states(run).items() if state == "available"]:
        for task in ready:
            complete(run, task, BLOB, now=at)


def test_an_undo_of_a_finished_night_waits_queued_while_another_runs_and_starts_after_it(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    done = _night(30)
    _finish_all(done)
    running = _night(31)
    assert (_status(done), _status(running)) == ("succeeded", "running")
    plan = store.undo(instance(done, "load").id, "loaded the wrong file", actor="ann", dry_run=True, now=NEW_YEAR)
    assert plan.run_waits == f"max_active_runs 1: run {running} running"
    assert [(a.task, a.becomes) for a in plan.affected] == [("load", "pending"), ("report", "pending")]
    plan = store.undo(instance(done, "load").id, "loaded the wrong file", actor="ann", now=NEW_YEAR)
    assert plan.run_waits == f"max_active_runs 1: run {running} running"
    assert _status(done) == "queued"
    assert states(done) == {"load": "pending", "audit": "succeeded", "report": "pending", "check": "succeeded"}
    moved = Event.get((Event.run == done) & Event.instance.is_null() & (Event.to_state == "queued"))
    assert (moved.kind, moved.from_state, moved.detail["queued"]) == (
        "undo", "succeeded", f"max_active_runs 1: run {running} running")
    _finish_all(running)  # its slot goes to the undone night
    assert _status(done) == "running" and states(done)["load"] == "available"
    _finish_all(done)
    assert _status(done) == "succeeded"


def test_retried_failed_nights_wait_queued_and_go_in_the_order_of_their_nights(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    nights = {}
    for day in (28, 29):
        nights[day] = _night(day)
        _fail(nights[day], "load")
        _finish_all(nights[day])  # its other branch ends too: the run is failed and done
    assert [_status(nights[day]) for day in (28, 29)] == ["failed", "failed"]
    running = _night(30)
    for day in (29, 28):  # retried newest first
        store.retry_instance(instance(nights[day], "load").id, actor="ann", now=NEW_YEAR)
    assert [_status(nights[day]) for day in (28, 29)] == ["queued", "queued"]
    assert [states(nights[day])["load"] for day in (28, 29)] == ["pending", "pending"]
    assert instance(nights[28], "load").failures == 0
    _finish_all(running)
    assert [_status(nights[day]) for day in (28, 29)] == ["running", "queued"]  # the 28th first, by its night
    _finish_all(nights[28])
    assert [_status(nights[day]) for day in (28, 29)] == ["succeeded", "running"]


def _failed_night_with_audit_offered() -> tuple[int, int]:
    """Night 30 failed (its load) while its audit was held, night 31 running in the slot it left, and the
    audit released: offered in the failed run, which stays failed."""
    failed = _night(30)
    store.hold(instance(failed, "audit").id, actor="ann", now=NEW_YEAR)
    _fail(failed, "load")
    running = _night(31)
    store.release(instance(failed, "audit").id, actor="ann", now=NEW_YEAR)
    assert (_status(failed), _status(running), states(failed)["audit"]) == ("failed", "running", "available")
    return failed, running


def test_a_run_with_a_failure_keeps_its_slot_until_its_other_branch_ends(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    night = _night(30)
    auditing = claim(night, "audit", now=NEW_YEAR)
    _fail(night, "load")
    assert _status(night) == "running"  # its audit is on its way
    next_night = _night(31)
    assert _status(next_night) == "queued"  # the two audits never overlap
    store.submit(auditing.instance, auditing.token, BLOB, now=NEW_YEAR)
    assert _status(night) == "running"  # check is offered now
    complete(night, "check", BLOB, now=NEW_YEAR)
    assert (_status(night), _status(next_night)) == ("failed", "running")  # report waits for good behind load
    assert states(night) == {"load": "failed", "audit": "succeeded", "report": "pending", "check": "succeeded"}


def test_holding_the_last_thing_on_its_way_fails_a_run_with_a_failure_and_frees_its_slot(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    night = _night(30)
    _fail(night, "load")
    next_night = _night(31)
    assert (_status(night), _status(next_night)) == ("running", "queued")  # night 30's audit is offered
    store.hold(instance(night, "audit").id, actor="ann", reason="audit tomorrow", now=NEW_YEAR)
    assert (_status(night), _status(next_night)) == ("failed", "running")


def test_a_failed_runs_attempt_running_goes_on_and_what_follows_it_waits_for_the_start(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    failed, offered_check = _failed_night_with_audit_offered()
    auditing = claim(failed, "audit", now=NEW_YEAR)
    store.skip_instance(instance(failed, "load").id, "loaded by hand", actor="ann", now=NEW_YEAR)
    assert _status(failed) == "queued"
    assert states(failed) == {"load": "skipped", "audit": "running", "report": "pending", "check": "pending"}
    store.submit(auditing.instance, auditing.token, BLOB, now=NEW_YEAR)  # accepted: its attempt went on
    assert states(failed)["check"] == "pending"  # nothing is offered in a queued run
    _finish_all(offered_check)
    assert _status(failed) == "running"
    assert (states(failed)["report"], states(failed)["check"]) == ("available", "available")


def test_an_output_set_on_a_failed_night_runs_it_again_at_once_when_a_slot_is_free(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    failed = _night(30)
    _fail(failed, "load")
    _finish_all(failed)
    store.set_output(instance(failed, "load").id, BLOB, reason="loaded by hand", actor="ann", now=NEW_YEAR)
    assert _status(failed) == "running" and states(failed)["report"] == "available"


def test_a_queued_run_given_work_again_offers_nothing_it_had_offered(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    failed, running = _failed_night_with_audit_offered()
    store.retry_instance(instance(failed, "load").id, actor="ann", now=NEW_YEAR)
    assert _status(failed) == "queued"
    assert (states(failed)["load"], states(failed)["audit"]) == ("pending", "pending")
    taken_back = Event.select().where((Event.instance == instance(failed, "audit").id) & (Event.to_state == "pending"))
    assert taken_back.order_by(Event.id.desc()).get().detail == {
        "queued": f"run {failed} is queued: max_active_runs 1: run {running} running"}
    _finish_all(running)
    assert (states(failed)["load"], states(failed)["audit"]) == ("available", "available")


def test_an_attempt_that_fails_while_its_run_waits_queued_is_retried_into_the_wait(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    failed, running = _failed_night_with_audit_offered()
    auditing = claim(failed, "audit", now=NEW_YEAR)
    store.retry_instance(instance(failed, "load").id, actor="ann", now=NEW_YEAR)
    store.fail(auditing.instance, auditing.token, "disk full", retryable=False, now=NEW_YEAR)
    assert (_status(failed), states(failed)["audit"]) == ("queued", "failed")
    store.retry_instance(auditing.instance, actor="ann", now=NEW_YEAR)
    assert _status(failed) == "queued"
    assert (states(failed)["load"], states(failed)["audit"]) == ("pending", "pending")  # offered when it starts
    _finish_all(running)
    assert _status(failed) == "running"
    assert (states(failed)["load"], states(failed)["audit"]) == ("available", "available")


def test_the_schedulers_tick_fires_the_due_timer_of_a_queued_run_its_run_timeout_started(tmp_path):
    from flow45.scheduler import tick

    deploy_text(tmp_path, """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      nightly:
        max_active_runs: 1
        timeout: 10m
        tasks:
          load: {function: load, output: Blob, lease: 1h}
          settle: {wait_until: "00:03", after: [load]}
    """)
    failed = _night(30)
    _fail(failed, "load")
    stuck = _night(31)
    claim(stuck, "load", now=NEW_YEAR)
    store.skip_instance(instance(failed, "load").id, "loaded by hand", actor="ann", now=NEW_YEAR)
    assert (_status(failed), states(failed)["settle"]) == ("queued", "pending")
    # The stuck night times out; its slot starts the skipped night, whose timer (00:03 on the 30th) is due.
    report = tick(NEW_YEAR + dt.timedelta(minutes=11))
    assert report.timed_out == [stuck] and report.timers == [instance(failed, "settle").id]
    assert (_status(failed), states(failed)["settle"]) == ("succeeded", "succeeded")


def test_a_retried_night_that_a_running_night_waits_for_runs_at_once_instead_of_waiting_for_its_slot(tmp_path):
    deploy_text(tmp_path, NIGHTLY.replace("load: {function: load, output: Blob}",
                                          "load: {function: load, output: Blob, depends_on_past: true}"))
    failed = _night(30)
    _fail(failed, "load")
    _finish_all(failed)
    waiting = _night(31)
    assert (_status(failed), _status(waiting), states(waiting)["load"]) == ("failed", "running", "queued")
    store.retry_instance(instance(failed, "load").id, actor="ann", now=NEW_YEAR)
    assert (_status(failed), states(failed)["load"]) == ("running", "available")  # else neither could ever go on
    reopened = Event.select().where((Event.run == failed) & Event.instance.is_null() & (Event.to_state == "running"))
    assert reopened.order_by(Event.id.desc()).get().detail == {
        "over_max_active_runs": f"run {waiting} waits for it (depends_on_past: load)"}
    complete(failed, "load", BLOB, now=NEW_YEAR)
    assert states(waiting)["load"] == "available"


def test_a_night_backfilled_before_a_running_one_starts_past_the_limit_once_that_one_waits_for_it(tmp_path):
    deploy_text(tmp_path, PREP_THEN_LOAD)
    later = _night(31)
    earlier = _night(30)  # backfilled: the run before in place, queued while the slot is taken
    assert (_status(later), _status(earlier)) == ("running", "queued")
    complete(later, "prep", BLOB, now=NEW_YEAR)  # its load now waits for night 30's: night 30 must start
    assert (states(later)["load"], _status(earlier)) == ("queued", "running")
    started = Event.get((Event.run == earlier) & (Event.kind == "start"))
    assert (started.actor, started.detail) == (
        "flow45", {"over_max_active_runs": f"run {later} waits for it (depends_on_past: load)"})
    for task in ("prep", "load"):
        complete(earlier, task, BLOB, now=NEW_YEAR)
    assert states(later)["load"] == "available"


def test_a_night_queued_with_its_task_held_starts_past_the_limit_once_a_running_night_waits_for_it(tmp_path):
    """Held in a run still queued, the task's release would leave it pending in a run that never starts."""
    deploy_text(tmp_path, PREP_THEN_LOAD)
    later = _night(31)
    earlier = _night(30)
    store.hold(instance(earlier, "load").id, actor="ann", reason="check the source first", now=NEW_YEAR)
    complete(later, "prep", BLOB, now=NEW_YEAR)
    assert (states(later)["load"], _status(earlier), states(earlier)["load"]) == ("queued", "running", "held")
    store.release(instance(earlier, "load").id, actor="ann", now=NEW_YEAR)
    complete(earlier, "prep", BLOB, now=NEW_YEAR)
    complete(earlier, "load", BLOB, now=NEW_YEAR)
    assert states(later)["load"] == "available"
