"""A task's `max_running` under faults: the bridge killed mid-flight (a slot it freed may not have been
handed on) and the database crashed. Every run finishes, nothing succeeds twice, no acknowledged submit
is missing, and the ledger never shows more of the task's instances offered or running at once than its
limit allows."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flow45 import states as S
from flow45 import store
from flow45.models import Event, TaskInstance
from tests.faults.conftest import retrying

pytestmark = pytest.mark.integration
LIMIT = 2  # l2's max_running in the workload


def most_at_once(runs: list[int], task: str) -> int:
    """The most instances of the task offered or running at once, replaying the ledger in event order (a
    slot is freed by an event written before the commit the next count reads, so before its offer's)."""
    ids = retrying(lambda: [i.id for i in TaskInstance.select(TaskInstance.id)
                            .where(TaskInstance.run.in_(runs) & (TaskInstance.task == task))])
    moves = retrying(lambda: list(Event.select(Event.instance, Event.to_state)
                                  .where(Event.instance.in_(ids) & Event.to_state.is_null(False)).order_by(Event.id)))
    taking: set[int] = set()
    most = 0
    for move in moves:
        if move.to_state in S.TAKING_SLOTS:
            taking.add(move.instance)
        else:
            taking.discard(move.instance)
        most = max(most, len(taking))
    return most


def test_a_task_limit_holds_through_a_killed_bridge_and_a_crashed_database(system):
    bridge = system.installation(workers=3)  # twelve worker slots for a task that may take two
    runs = retrying(lambda: [store.trigger("reports", "limited", actor="ops") for _ in range(16)])
    system.wait_succeeded(runs, count=3)
    os.kill(bridge.pid, signal.SIGKILL)
    bridge.wait()
    bridge = system.bridge()
    system.wait_succeeded(runs, count=8)
    system.pg.crash()
    time.sleep(0.5)
    system.pg.start_again()
    system.check(runs, timeout=90)
    assert most_at_once(runs, "l2") == LIMIT, system.logs()  # reached, never passed
    assert bridge.poll() is None, system.logs()
