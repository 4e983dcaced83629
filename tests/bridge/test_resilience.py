"""Crashes mid-run: the bridge killed with SIGKILL, RabbitMQ restarted. Every run completes, no
instance succeeds twice, no outbox row is lost."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import peewee as pw
import pytest

from bridge.sdk import AmqpTransport, Worker
from flow45 import store
from flow45.config import load_config
from flow45.models import Attempt, Outbox, Run
from tests import pinned
from tests.bridge.conftest import TEAMS, purge_all
from tests.conftest import ROOT

pytestmark = pytest.mark.integration

CONFIG = (ROOT / "benchmarks" / "bench_config.yaml").read_text().replace("team: bench", "team: reports")


@pytest.fixture
def bridge_process(broker_users, postgres_url, pg_store, tmp_path):
    """`flow45 bridge run` as its own process; returns a function that (re)starts it."""
    purge_all(broker_users)
    env = {**os.environ, "FLOW45_DATABASE_URL": postgres_url, "FLOW45_AMQP_URL": broker_users.amqp_url,
           "FLOW45_TEAMS": json.dumps(TEAMS), "FLOW45_RELAY_INTERVAL": "0.2", "PYTHONPATH": str(ROOT),
           "FLOW45_RECONNECT_MAX": "1"}  # back within a second of the broker, not up to 10 s later
    processes: list[subprocess.Popen] = []

    def start() -> subprocess.Popen:
        log = open(tmp_path / f"bridge-{len(processes)}.log", "w")
        process = subprocess.Popen(pinned.command([sys.executable, "-m", "flow45", "bridge", "run"]), env=env, stderr=log)
        processes.append(process)
        return process

    yield start
    for process in processes:
        if process.poll() is None:
            process.kill()
            process.wait()


def _workers(env_url: str) -> Worker:
    worker = Worker(AmqpTransport(env_url, "reports", "resilient", reconnect_max=1.0), rpc_timeout=2.0, rpc_attempts=30,
                    claim_attempts=30)

    @worker.handler("start")
    def start(task):
        time.sleep(0.01)
        return {"uri": "noop://start", "size": 0}

    @worker.handler("step")
    def step(task, prev):
        time.sleep(0.01)
        return {"uri": "noop://step", "size": 1}

    @worker.handler("join")
    def join(task, **parts):
        return {"uri": "noop://join", "size": len(parts)}

    return worker


def _deploy_and_trigger(tmp_path, runs: int) -> list[int]:
    path = tmp_path / "bench.yaml"
    path.write_text(CONFIG)
    store.deploy(load_config(path), actor="ops")
    return [store.trigger("reports", name, actor="ops") for _ in range(runs) for name in ("chain", "fanout")]


def _wait_all_succeeded(run_ids: list[int], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if Run.select().where(Run.id.in_(run_ids) & (Run.status != "succeeded")).count() == 0:
            return
        time.sleep(0.2)
    left = {r.id: r.status for r in Run.select().where(Run.id.in_(run_ids) & (Run.status != "succeeded"))}
    raise AssertionError(f"runs not finished: {left}")


def _check_promises(timeout: float = 20) -> None:
    twice = (Attempt.select(Attempt.instance).where(Attempt.status == "succeeded")
             .group_by(Attempt.instance).having(pw.fn.COUNT(Attempt.id) > 1).count())
    assert twice == 0, "an instance succeeded twice"
    deadline = time.monotonic() + timeout
    while Outbox.select().where(Outbox.sent_at.is_null()).count() and time.monotonic() < deadline:
        time.sleep(0.2)
    assert Outbox.select().where(Outbox.sent_at.is_null()).count() == 0, "an outbox row was never sent"


def _wait_progress(run_ids: list[int], done_at_least: int) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if Run.select().where(Run.id.in_(run_ids) & (Run.status == "succeeded")).count() >= done_at_least:
            return
        time.sleep(0.05)
    raise AssertionError("no progress before the crash")


def test_bridge_killed_mid_run(bridge_process, broker_users, tmp_path):

    run_ids = _deploy_and_trigger(tmp_path, 15)
    first = bridge_process()
    worker = _workers(broker_users.amqp_url.replace("guest:guest", "reports-worker:rw-secret"))
    worker.start(concurrency=8)
    try:
        _wait_progress(run_ids, 3)
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        time.sleep(1)
        bridge_process()
        _wait_all_succeeded(run_ids, timeout=90)
        _check_promises()
    finally:
        worker.stop()
        worker.join(timeout=20)


def test_rabbitmq_restarted_mid_run(bridge_process, broker_users, tmp_path):
    run_ids = _deploy_and_trigger(tmp_path, 15)
    bridge = bridge_process()
    worker = _workers(broker_users.amqp_url.replace("guest:guest", "reports-worker:rw-secret"))
    worker.start(concurrency=8)
    try:
        _wait_progress(run_ids, 3)
        broker_users.restart(downtime=1.0)
        _wait_all_succeeded(run_ids, timeout=120)
        _check_promises()
        assert bridge.poll() is None, "the bridge survived the restart"
    finally:
        worker.stop()
        worker.join(timeout=20)


def test_sigterm_stops_the_bridge_cleanly(bridge_process, tmp_path):
    bridge = bridge_process()
    deadline = time.monotonic() + 60  # a loaded machine can take seconds to import and connect
    while "bridge: connected to the broker" not in (tmp_path / "bridge-0.log").read_text():
        assert bridge.poll() is None and time.monotonic() < deadline, "the bridge never connected"
        time.sleep(0.1)
    bridge.send_signal(signal.SIGTERM)
    assert bridge.wait(timeout=20) == 0
