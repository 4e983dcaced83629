"""Runs of one workflow that finish at once, each in a transaction of its own, do not wait for each
other's commit (on a slow disk, each waits for a flush); a trigger, which counts the workflow's
active runs, still waits for a finishing run's commit, and so does a run that finishes while runs
are queued, since it starts them."""

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


def _trigger():
    return store.trigger("acme", "pair", actor="ann", now=T0)


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


def test_a_run_finishes_while_another_run_of_its_workflow_finishes_uncommitted(pg):
    first, second = (_trigger() for _ in range(2))
    g1, g2 = claim(first, "t"), claim(second, "t")
    held = Held(_submit(g1))
    try:
        thread, done = _in_thread(_submit(g2))
        thread.join(3)
        assert "result" in done, "the second run waited for the first one's commit"
    finally:
        held.commit()
    assert [store.get_run(r).status for r in (first, second)] == ["succeeded", "succeeded"]


def test_a_trigger_waits_for_a_finishing_run_of_its_workflow(pg):
    first, second = (_trigger() for _ in range(2))
    g1 = claim(first, "t")
    held = Held(_submit(g1))
    try:
        thread, done = _in_thread(_trigger)
        time.sleep(0.5)
        assert "result" not in done, "the trigger counted the active runs before the finishing one committed"
    finally:
        held.commit()
    thread.join(10)
    assert store.get_run(done["result"]).status == "running", "queued although the first run had finished"
    assert store.get_run(second).status == "running"


def test_runs_finishing_while_runs_are_queued_start_them_one_after_another(pg):
    first, second, queued = (_trigger() for _ in range(3))
    also_queued = _trigger()
    assert [store.get_run(r).status for r in (queued, also_queued)] == ["queued", "queued"]
    g1, g2 = claim(first, "t"), claim(second, "t")
    held = Held(_submit(g1))
    try:
        thread, done = _in_thread(_submit(g2))
        time.sleep(0.5)
        assert "result" not in done, "two finishing runs started queued runs at once"
    finally:
        held.commit()
    thread.join(10)
    assert "result" in done
    assert [store.get_run(r).status for r in (queued, also_queued)] == ["running", "running"]


def test_a_run_queued_while_a_run_finishes_is_started_by_it(pg):
    first, second = (_trigger() for _ in range(2))
    g1 = claim(first, "t")
    held = Held(_trigger)  # the workflow is full: the new run queues, not yet committed
    thread, done = _in_thread(_submit(g1))
    time.sleep(0.3)  # the finishing run waits for the trigger's commit, then finds the run it queued
    held.commit()
    thread.join(10)
    assert "result" in done
    assert store.get_run(first).status == "succeeded"
    assert store.get_run(held.result).status == "running", "left queued with a free slot"


def test_two_runs_finishing_while_a_trigger_queues_a_run_both_succeed_and_start_it_once(pg):
    first, second = (_trigger() for _ in range(2))
    g1, g2 = claim(first, "t"), claim(second, "t")
    held = Held(_trigger)  # the workflow is full: the new run queues, not yet committed
    finishers = [_in_thread(_submit(g)) for g in (g1, g2)]
    time.sleep(0.3)  # both wait for the trigger's commit, then both find the run it queued
    held.commit()
    for thread, _ in finishers:
        thread.join(10)
    assert all("result" in done for _, done in finishers), "a finishing run failed (a deadlock between the two)"
    assert [store.get_run(r).status for r in (first, second)] == ["succeeded", "succeeded"]
    assert store.get_run(held.result).status == "running"
