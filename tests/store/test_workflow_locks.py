"""Runs of one workflow that finish at once, each in a transaction of its own, do not wait for each
other's commit (on a slow disk, each waits for a flush); a trigger of a workflow with a run limit,
which counts the active runs, still waits for a finishing run's commit, and so does a run that
finishes while runs are queued, since it starts them. Without a limit, triggers and finishing runs
do not wait for each other."""

from __future__ import annotations

import threading
import time

import pytest

from flow45 import store
from flow45.db import atomic, database
from tests.store.helpers import BLOB, T0, claim, deploy_text

pytestmark = pytest.mark.integration

WORKFLOW = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      pair:
        max_active_runs: 2
        tasks:
          t: {function: ft, output: Blob}
      open:
        max_active_runs: null
        tasks:
          t: {function: ft, output: Blob}
"""


@pytest.fixture
def pg(pg_store, tmp_path):
    deploy_text(tmp_path, WORKFLOW)


class Held:
    """A transaction that does `work` and stays open until released; `result` is what `work` returned."""

    def __init__(self, work) -> None:
        self.result = None
        self.ready, self.release = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._hold, args=(work,))
        self.thread.start()
        assert self.ready.wait(10), "the held transaction did not do its work"

    def _hold(self, work) -> None:
        try:
            with atomic():
                self.result = work()
                self.ready.set()
                self.release.wait(10)
        finally:
            database.close()

    def commit(self) -> None:
        self.release.set()
        self.thread.join(10)


def _submit(grant):
    return lambda: store.submit(grant.instance, grant.token, BLOB, now=T0, team="acme")


def _trigger(workflow="pair"):
    return lambda: store.trigger("acme", workflow, actor="ann", now=T0)


def _in_thread(call) -> tuple[threading.Thread, dict]:
    done: dict = {}

    def body() -> None:
        try:
            done["result"] = call()
        finally:
            database.close()

    thread = threading.Thread(target=body)
    thread.start()
    return thread, done


def _went_past(held: Held, call) -> bool:
    """Whether `call`, in another session, finished within 3 s while `held` stayed open; then `held` commits."""
    try:
        thread, done = _in_thread(call)
        thread.join(3)
        return "result" in done
    finally:
        held.commit()


def _waited(held: Held, call) -> tuple[bool, dict]:
    """Whether `call`, in another session, was still waiting after 0.5 s while `held` stayed open,
    and what it returned once `held` committed."""
    try:
        thread, done = _in_thread(call)
        time.sleep(0.5)
        waited = "result" not in done
    finally:
        held.commit()
    thread.join(10)
    return waited, done


def test_a_run_finishes_while_another_run_of_its_workflow_finishes_uncommitted(pg):
    first, second = (_trigger()() for _ in range(2))
    g1, g2 = claim(first, "t"), claim(second, "t")
    assert _went_past(Held(_submit(g1)), _submit(g2)), "the second run waited for the first one's commit"
    assert [store.get_run(r).status for r in (first, second)] == ["succeeded", "succeeded"]


def test_a_trigger_waits_for_a_finishing_run_of_its_workflow(pg):
    first, second = (_trigger()() for _ in range(2))
    g1 = claim(first, "t")
    waited, done = _waited(Held(_submit(g1)), _trigger())
    assert waited, "the trigger counted the active runs before the finishing one committed"
    assert store.get_run(done["result"]).status == "running", "queued although the first run had finished"
    assert store.get_run(second).status == "running"


def test_runs_finishing_while_runs_are_queued_start_them_one_after_another(pg):
    first, second, queued = (_trigger()() for _ in range(3))
    also_queued = _trigger()()
    assert [store.get_run(r).status for r in (queued, also_queued)] == ["queued", "queued"]
    g1, g2 = claim(first, "t"), claim(second, "t")
    waited, done = _waited(Held(_submit(g1)), _submit(g2))
    assert waited, "two finishing runs started queued runs at once"
    assert "result" in done
    assert [store.get_run(r).status for r in (queued, also_queued)] == ["running", "running"]


def test_a_run_queued_while_a_run_finishes_is_started_by_it(pg):
    first, second = (_trigger()() for _ in range(2))
    g1 = claim(first, "t")
    held = Held(_trigger())  # the workflow is full: the new run queues, not yet committed
    thread, done = _in_thread(_submit(g1))
    time.sleep(0.3)  # the finishing run waits for the trigger's commit, then finds the run it queued
    held.commit()
    thread.join(10)
    assert "result" in done
    assert store.get_run(first).status == "succeeded"
    assert store.get_run(held.result).status == "running", "left queued with a free slot"


def test_two_runs_finishing_while_a_trigger_queues_a_run_both_succeed_and_start_it_once(pg):
    first, second = (_trigger()() for _ in range(2))
    g1, g2 = claim(first, "t"), claim(second, "t")
    held = Held(_trigger())  # the workflow is full: the new run queues, not yet committed
    finishers = [_in_thread(_submit(g)) for g in (g1, g2)]
    time.sleep(0.3)  # both wait for the trigger's commit, then both find the run it queued
    held.commit()
    for thread, _ in finishers:
        thread.join(10)
    assert all("result" in done for _, done in finishers), "a finishing run failed (a deadlock between the two)"
    assert [store.get_run(r).status for r in (first, second)] == ["succeeded", "succeeded"]
    assert store.get_run(held.result).status == "running"


def test_without_a_run_limit_triggers_and_finishing_runs_do_not_wait_for_each_other(pg):
    first, second = (_trigger("open")() for _ in range(2))
    g1, g2 = claim(first, "t"), claim(second, "t")
    assert _went_past(Held(_submit(g1)), _trigger("open")), "the trigger waited for a finishing run's commit"
    triggering = Held(_trigger("open"))
    assert _went_past(triggering, _submit(g2)), "the finishing run waited for the trigger's commit"
    assert store.get_run(triggering.result).status == "running"
    assert [store.get_run(r).status for r in (first, second)] == ["succeeded", "succeeded"]


def test_a_limit_deployed_while_a_trigger_looks_is_counted_under_an_exclusive_lock(pg, tmp_path, monkeypatch):
    from flow45.store import unit

    first = _trigger("open")()
    g1 = claim(first, "t")
    deploy_text(tmp_path, WORKFLOW.replace("max_active_runs: null", "max_active_runs: 1"))
    looks = []
    real = unit._limited
    monkeypatch.setattr(unit, "_limited", lambda row: bool(looks.append(row)) or (len(looks) > 1 and real(row)))

    def trigger_and_look():  # looks as if before the deploy, then finds the limit under the share lock
        run = _trigger("open")()
        return run, store.get_run(run).status

    held = Held(trigger_and_look)
    assert held.result[1] == "queued", "one run is active: the limit holds"
    waited, done = _waited(held, _submit(g1))
    assert waited, "the trigger kept a share lock: a finishing run went past it"
    assert "result" in done and len(looks) == 2
    assert store.get_run(held.result[0]).status == "running", "the finishing run started the queued one"
