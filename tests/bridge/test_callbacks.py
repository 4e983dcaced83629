"""Callbacks through the real bridge: a worker on the SDK parks its attempt and returns; whoever
holds the key completes it over the broker, as a member of the attempt's team."""

from __future__ import annotations

import queue
import time

import pytest

from bridge.rpc import BridgeRefused, call
from bridge.sdk import AmqpTransport, Worker
from flow45 import store
from flow45.config import load_config
from tests.bridge.test_hostile_messages import drain
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _eventually(check, timeout: float = 15.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if (found := check()) is not None:
            return found
        time.sleep(0.05)
    raise AssertionError("not reached in time")


def test_a_worker_parks_via_the_sdk_and_the_key_completes_it_through_the_broker(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    keys: queue.Queue[str] = queue.Queue()
    worker = Worker(AmqpTransport(bridge_env.url("reports-worker"), "reports", "w1"), rpc_timeout=5.0)

    @worker.handler("extract_sales")
    def extract(task):
        keys.put(task.park(deadline_seconds=3600))  # handed to the service that finishes the work
        return None  # not sent: the key's holder answers

    worker.start(1)
    try:
        run = store.trigger("reports", "monthly_report", actor="ops", params={"month": "2026-10"})
        key = keys.get(timeout=20)
        view = _eventually(lambda: v if (v := store.get_run(run)).waiting_for else None)
        assert view.waiting_for.startswith("extract (callback, deadline ")
        assert view.instances[0].state == "running"

        with pytest.raises(BridgeRefused) as caught:  # another team holding the key is told it is unknown
            call(bridge_env.url("rival-worker"), "rival", {"type": "callback_submit", "key": key, "output": {}})
        with pytest.raises(BridgeRefused) as unknown:
            call(bridge_env.url("rival-worker"), "rival", {"type": "callback_submit", "key": "k" * 43, "output": {}})
        assert (caught.value.code, caught.value.message) == (unknown.value.code, unknown.value.message) == (
            "not_found", "no parked task instance has this callback key for team rival")

        ops = bridge_env.url("reports-ops")
        with pytest.raises(BridgeRefused, match="output is not a valid SalesExtract"):
            call(ops, "reports", {"type": "callback_submit", "key": key, "output": {"uri": "s3://x"}})
        [(headers, copy)] = drain(bridge_env, "flow45.dead.reports", expect=1)  # read by every operator of the team
        assert headers["x-flow45-code"] == "invalid_output" and key.encode() not in copy, "the key still works"
        done = call(ops, "reports", {"type": "callback_submit", "key": key,
                                     "output": {"uri": "s3://sales.parquet", "rows": 10}})
        assert done == {"instance": view.instances[0].id, "state": "succeeded"}
        after = store.get_run(run)
        assert [(i.task, i.state) for i in after.instances][:2] == [("extract", "succeeded"), ("render", "available")]
        [event] = [e for e in store.list_events(run=run) if e.kind == "callback"]
        assert (event.actor, event.from_state, event.to_state) == ("reports-ops", "running", "succeeded")
    finally:
        worker.stop()
        assert worker.join(timeout=30)
