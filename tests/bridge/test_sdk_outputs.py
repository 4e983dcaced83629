"""The SDK through the real bridge: an output the bridge refuses fails its task at once, naming why,
whichever check refuses it (the output's type, or the inbox's limits on the body)."""

from __future__ import annotations

import logging
import time

import pytest

from bridge.sdk import AmqpTransport, Worker
from flow45 import store
from flow45.config import load_config
from flow45.models import Attempt, TaskInstance
from tests.conftest import EXAMPLES

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]


def _nested(levels: int):
    value: object = "x"
    for _ in range(levels):
        value = [value]
    return value


@pytest.mark.parametrize(("output", "reason"), [
    ({"uri": "s3://x", "rows": -1}, "output is not a valid SalesExtract"),
    ({"uri": "s3://" + "x" * 300_000, "rows": 1}, "over the 262144 a message may have"),  # the inbox's body limit
    ({"uri": "s3://x", "rows": 1, "parts": _nested(70)}, "nests 72 levels deep, over 64"),
])
def test_an_output_the_bridge_refuses_fails_the_task_at_once_naming_why(bridge_env, output, reason):
    store.deploy(load_config(EXAMPLES), actor="ops")
    worker = Worker(AmqpTransport(bridge_env.url("reports-worker"), "reports", "w1"), rpc_timeout=5.0)
    calls = []

    @worker.handler("extract_sales")
    def extract(task):
        calls.append(task.attempt)
        return output

    run = store.trigger("reports", "monthly_report", actor="ops", params={"month": "2026-10"})
    worker.start(1)
    try:
        deadline = time.monotonic() + 30
        while (extract_row := TaskInstance.get(TaskInstance.run == run, TaskInstance.task == "extract")).state == "available" \
                or extract_row.state == "running":
            assert time.monotonic() < deadline, "the task was neither failed nor retried: its lease would run out"
            time.sleep(0.05)
    finally:
        worker.stop()
        assert worker.join(timeout=30)
    assert extract_row.state == "failed" and calls == [1]  # retries: 3, none used: the same output would come again
    [attempt] = Attempt.select().where(Attempt.instance == extract_row.id)
    assert attempt.error.startswith("output refused: ") and reason in attempt.error and attempt.output is None


def test_an_output_over_the_brokers_message_size_fails_without_closing_the_workers_channel(bridge_env, caplog):
    """With max_message_size set as the README advises, publishing it would close the channel: the
    worker would reconnect for each resend, failing every request in flight, then give up."""
    caplog.set_level(logging.INFO, logger="bridge.sdk")
    store.deploy(load_config(EXAMPLES), actor="ops")
    bridge_env.rabbit.ctl("eval", "application:set_env(rabbit, max_message_size, 1048576).")
    worker = Worker(AmqpTransport(bridge_env.url("reports-worker"), "reports", "w1"), rpc_timeout=5.0)
    worker.handler("extract_sales")(lambda task: {"uri": "s3://" + "x" * 2_000_000, "rows": 1})
    try:
        run = store.trigger("reports", "monthly_report", actor="ops", params={"month": "2026-10"})
        worker.start(1)
        deadline = time.monotonic() + 30
        while (extract_row := TaskInstance.get(TaskInstance.run == run, TaskInstance.task == "extract")).state != "failed":
            assert time.monotonic() < deadline, f"the task is {extract_row.state}"
            time.sleep(0.05)
    finally:
        worker.stop()
        assert worker.join(timeout=30)
        bridge_env.rabbit.ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).")
    [attempt] = Attempt.select().where(Attempt.instance == extract_row.id)
    assert attempt.error == "output refused: the output is 2000024 bytes of JSON, over the 262144 a message may have"
    assert "was closed" not in caplog.text
