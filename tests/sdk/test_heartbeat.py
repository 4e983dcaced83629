"""Lease renewal bookkeeping (no servers): a worker that runs many short tasks under a long lease
keeps nothing of the finished ones, and still beats for the running ones."""

import gc
import threading
import weakref

from bridge.sdk.heartbeat import Heartbeat
from tests.sdk.helpers import wait_for


class _Task:
    def __init__(self, instance: int, lease_seconds: float):
        self.instance, self.lease_seconds = instance, lease_seconds
        self.cancelled = threading.Event()


def test_finished_tasks_are_not_kept_and_running_ones_still_beat():
    now = [0.0]
    beats = []
    heartbeat = Heartbeat(beats.append, clock=lambda: now[0])
    running = _Task(0, lease_seconds=3.0)
    heartbeat.add(running)
    finished = []
    for instance in range(1, 5001):  # short tasks under a 10-minute lease: due long after they end
        task = _Task(instance, lease_seconds=600.0)
        heartbeat.add(task)
        heartbeat.remove(task)
        finished.append(weakref.ref(task))
    del task
    gc.collect()
    assert all(ref() is None for ref in finished)
    now[0] = 1.5  # past the running task's interval (lease / 3), and long before the others' would be
    heartbeat.start()
    try:
        wait_for(lambda: beats, timeout=5, what="the running task's beat")
        assert beats == [running]
    finally:
        heartbeat.close()
