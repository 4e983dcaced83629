"""Helpers for the SDK tests: a test team, workers on the local transport, and waiting for the store."""

from __future__ import annotations

import time
from typing import Any, Callable

from flow45 import states as S
from flow45 import store

ACME = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
      Label:
        fields: {label: {type: string, optional: true}}
    workflows:
      chain:
        params: Label
        tasks:
          a: {function: fa, output: Blob}
          b: {function: fb, output: Blob, inputs: {src: a}, undo: notify}
      flaky:
        tasks:
          x: {function: fx, output: Blob, retries: 2, retry_delay: 0s}
      leasy:
        tasks:
          slow: {function: fslow, output: Blob, lease: 0.6s, retries: 3, retry_delay: 0s}
      skippy:
        tasks:
          s: {function: fs, output: Blob}
          t: {function: ft, output: Blob, inputs: {src: s}}
      fan:
        tasks:
          p1: {function: fp, output: Blob}
          p2: {function: fp, output: Blob}
          p3: {function: fp, output: Blob}
          p4: {function: fp, output: Blob}
          p5: {function: fp, output: Blob}
          p6: {function: fp, output: Blob}
"""

BLOB = {"uri": "s3://bucket/x", "size": 1}


def wait_for(predicate: Callable[[], Any], timeout: float = 15.0, what: str = "condition") -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}")


def run_status(run_id: int) -> str:
    return store.get_run(run_id).status


def wait_finished(run_id: int, timeout: float = 15.0) -> str:
    wait_for(lambda: run_status(run_id) in S.FINISHED_RUN, timeout, f"run {run_id} to finish")
    return run_status(run_id)


def fire_the_timer(run_id: int, task: str = "morning") -> None:
    """Once the run's timer waits (nothing here sweeps), let it fire at its due time, whatever the date."""
    timer = wait_for(lambda: (i := instance_of(run_id, task)).state == S.WAITING and i, what=f"timer {task} to wait")
    store.fire_due_timers(timer.not_before)


def instance_of(run_id: int, task: str):
    return next(i for i in store.get_run(run_id).instances if i.task == task)
