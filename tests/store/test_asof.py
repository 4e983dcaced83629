"""The run as it was (`flow45 show RUN --as-of`): rebuilt from the ledger at an event or a time, on
both databases. The property test (test_properties.py) checks the replay at every event of random
runs; these are the stories an operator reads."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from flow45 import store
from flow45.config import load_config
from flow45.errors import NotFound
from flow45.models import Event
from tests.store.helpers import BLOB, DIAMOND, T0, claim, complete, deploy_blob_tasks, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def tasks(view) -> dict[str, tuple]:
    return {i.task: (i.state, i.attempt, i.worker, i.progress_pct) for i in view.instances}


def last_event() -> int:
    return Event.select().order_by(Event.id.desc()).first().id


def test_a_run_replayed_at_each_point_shows_states_attempts_workers_and_progress(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=at(0))
    triggered = last_event()
    grant = claim(run, "a", worker="w1", now=at(10))
    store.progress(grant.instance, grant.token, 40, "halfway", now=at(15))
    store.fail(grant.instance, grant.token, "disk full", retryable=True, now=at(20))
    failed_once = last_event()
    store.release_due_retries(now=at(31))
    complete(run, "a", BLOB, worker="w2", now=at(40))
    a_done = last_event()
    complete(run, "b", BLOB, worker="w3", now=at(50))
    claim(run, "c", worker="w4", now=at(60))
    c_claimed = last_event()
    store.undo(instance(run, "a").id, "bad extract", actor="op", now=at(70))

    first = store.run_as_of(run, event=triggered)
    assert (first.status, first.started_at, first.finished_at) == ("running", at(0), None)
    assert tasks(first) == {"a": ("available", 1, None, None), "b": ("pending", 0, None, None),
                            "c": ("pending", 0, None, None), "d": ("pending", 0, None, None)}
    assert (first.as_of, first.as_of_at) == (triggered, at(0))

    assert tasks(store.run_as_of(run, event=failed_once))["a"] == ("retry_wait", 1, "w1", None)
    assert store.run_as_of(run, event=failed_once).waiting_for == "1 instance(s) waiting to retry"

    done = store.run_as_of(run, event=a_done)
    assert tasks(done)["a"] == ("succeeded", 2, "w2", 100.0)
    assert tasks(done)["b"][:2] == ("available", 1) and tasks(done)["c"][:2] == ("available", 1)

    # A running attempt's progress reports are not in the ledger: unknown, not a guess.
    assert tasks(store.run_as_of(run, event=c_claimed))["c"] == ("running", 1, "w4", None)
    assert store.run_as_of(run, event=c_claimed).counts == {"succeeded": 2, "running": 1, "pending": 1}

    # After the undo: a offered afresh (attempt 3), b and c back to pending, as the run is now.
    now, replayed = store.get_run(run), store.run_as_of(run, event=last_event())
    assert tasks(replayed) == {i.task: (i.state, i.attempt, i.worker, i.progress_pct) for i in now.instances}
    assert replayed.status == now.status == "running"


def test_as_of_a_time_takes_every_event_up_to_it(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=at(0))
    complete(run, "a", BLOB, worker="w1", now=at(10))
    complete(run, "b", BLOB, worker="w1", now=at(20))
    assert tasks(store.run_as_of(run, at=at(9)))["a"][0] == "available"
    assert tasks(store.run_as_of(run, at=at(10)))["a"][0] == "succeeded"
    between = store.run_as_of(run, at=at(15))
    assert (tasks(between)["b"][0], between.as_of_at) == ("available", at(15))
    assert between.as_of == Event.select().where(Event.at <= at(15)).order_by(Event.id.desc()).first().id


def test_the_run_as_it_was_has_the_notes_written_by_then_and_no_cancel_that_came_later(tmp_path):
    timed = DIAMOND.replace("a: {function: fa, output: Blob,", "a: {function: fa, output: Blob, timeout: 1h,")
    deploy_text(tmp_path, timed)
    run = store.trigger("acme", "diamond", actor="ann", now=at(0))
    claim(run, "a", now=at(5))
    assert store.get_instance(instance(run, "a").id).timeout_at == at(5) + dt.timedelta(hours=1)
    assert [i.timeout_at for i in store.run_as_of(run, at=at(7)).instances] == [None] * 4  # no lease nor timeout then
    store.note_run(run, "a is slow today", actor="ann", now=at(10))
    store.note_run(run, "giving up on it", actor="bob", now=at(20))
    store.cancel_run(run, actor="bob", reason="the source is broken", now=at(30))

    before = store.run_as_of(run, at=at(15))
    assert [(n.actor, n.text) for n in before.notes] == [("ann", "a is slow today")]
    assert (before.status, before.cancelled_by, before.cancel_reason) == ("running", None, None)
    assert tasks(before)["a"][0] == "running"
    after = store.run_as_of(run, at=at(30))
    assert [n.text for n in after.notes] == ["a is slow today", "giving up on it"]
    assert (after.status, after.cancelled_by, after.cancel_reason) == ("cancelled", "bob", "the source is broken")


def test_a_finished_run_replays_its_finish_and_a_queued_one_its_start(tmp_path):
    deploy_text(tmp_path, DIAMOND)  # max_active_runs: 1
    first = store.trigger("acme", "diamond", actor="ann", now=at(0))
    second = store.trigger("acme", "diamond", actor="ann", now=at(1))
    queued = last_event()
    for n, task in enumerate("abcd"):
        complete(first, task, BLOB, now=at(10 + n))
    assert store.run_as_of(second, event=queued).status == "queued"
    assert store.run_as_of(second, event=queued).started_at is None
    finished = store.run_as_of(first, event=last_event())
    assert (finished.status, finished.finished_at) == ("succeeded", at(13))
    started = store.run_as_of(second, event=last_event())
    assert (started.status, started.started_at) == ("running", at(13))


def test_a_queued_run_as_it_was_waits_for_the_max_active_runs_then_in_force(tmp_path):
    """A deploy's max_active_runs holds for every run from then on: before it, the one before."""
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 2"))
    runs = [store.trigger("acme", "diamond", actor="ann", now=at(n)) for n in range(3)]
    lowered = tmp_path / "lowered.yaml"
    lowered.write_text(textwrap.dedent(DIAMOND))
    store.deploy(load_config(lowered), actor="ann", now=at(60))
    assert store.run_as_of(runs[2], at=at(30)).waiting_for == "a free slot (max_active_runs: 2)"
    assert store.run_as_of(runs[2], at=at(90)).waiting_for == "a free slot (max_active_runs: 1)"
    assert store.get_run(runs[2]).waiting_for == "a free slot (max_active_runs: 1)"


def test_before_the_run_or_an_unknown_event_or_another_team_is_refused_by_name(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    store.trigger("acme", "diamond", actor="ann", now=at(0))
    run = store.trigger("acme", "diamond", actor="ann", now=at(30))
    with pytest.raises(NotFound, match=rf"run {run} had not been triggered at 2026-03-01 12:00:10 UTC"):
        store.run_as_of(run, at=at(10))
    with pytest.raises(NotFound, match=rf"run {run} had not been triggered at ledger event 1 "):
        store.run_as_of(run, event=1)
    with pytest.raises(NotFound, match="ledger event 9999 not found"):
        store.run_as_of(run, event=9999)
    with pytest.raises(NotFound, match=f"run {run} not found for team rival"):
        store.run_as_of(run, event=1, team="rival")


def test_the_run_as_it_was_says_what_its_instances_waited_for_and_who_had_them_then_not_now(tmp_path):
    deploy_blob_tasks(tmp_path, "w", [
        "a: {function: fa, output: Blob}",
        "b: {function: fb, output: Blob, inputs: {src: a}, max_running: 1}",
        "h: {function: approve, output: Blob, human: true, inputs: {src: a}}",
        "p: {function: fp, output: Blob, inputs: {src: a}}",
    ])
    first = store.trigger("acme", "w", actor="ann", now=at(0))
    run = store.trigger("acme", "w", actor="ann", now=at(0))
    complete(first, "a", BLOB, now=at(10))
    claim(first, "b", now=at(11))  # b's one slot taken
    complete(run, "a", BLOB, now=at(20))
    store.take(instance(run, "h").id, actor="ann", now=at(21))
    grant = claim(run, "p", now=at(22))
    store.park(grant.instance, grant.token, now=at(23))
    now = {i.task: i for i in store.get_run(run).instances}
    assert (now["b"].state, now["h"].taken_by, now["p"].parked) == ("queued", "ann", True)

    def waits(seconds: int) -> dict[str, tuple]:
        view = store.run_as_of(run, at=at(seconds))
        return {i.task: (i.state, i.queued_for, i.taken_by, i.parked) for i in view.instances}

    assert waits(15) == {"a": ("available", None, None, False), "b": ("pending", None, None, False),
                         "h": ("pending", None, None, False), "p": ("pending", None, None, False)}
    assert waits(20)["b"] == ("queued", now["b"].queued_for, None, False)
    assert (waits(20)["h"], waits(21)["h"]) == (("available", None, None, False), ("available", None, "ann", False))
    assert (waits(22)["p"], waits(23)["p"]) == (("running", None, None, False), ("running", None, None, True))
