"""RabbitMQ and the processes around it fail: the node killed, the bridge killed while the broker is
down, the bridge frozen longer than a lease, a worker killed in the middle of a task."""

from __future__ import annotations

import os
import signal
import time

import pytest

from flow45.models import Attempt
from tests.faults.conftest import LEASE, retrying
from tests.harness.ports import free_port
from tests.metrics.helpers import scrape

pytestmark = pytest.mark.integration


def test_rabbitmq_node_killed_and_started(system):
    port = free_port()
    bridge = system.spawn("-m", "flow45", "bridge", "run", "--metrics-port", str(port), name="bridge")
    system.scheduler()
    for _ in range(3):
        system.worker()
    runs = system.trigger(10)
    system.wait_succeeded(runs, count=3)
    time.sleep(1)  # the inbox is a quorum queue: let it settle before its node dies
    system.rabbit.kill()
    time.sleep(0.5)
    system.rabbit.start_again()
    system.check(runs + system.trigger(2))
    assert bridge.poll() is None, system.logs()
    scraped = scrape(port)  # what an operator's dashboard shows of it
    assert scraped.value("flow45_reconnects_total", part="bridge", server="broker") >= 1
    assert scraped.value("flow45_reconnects_total", part="bridge", server="database") == 0


def test_bridge_killed_while_the_broker_is_down(system):
    first = system.installation()
    runs = system.trigger(8)
    system.wait_succeeded(runs, count=2)
    with system.broker_away():
        os.kill(first.pid, signal.SIGKILL)
        first.wait()
        second = system.bridge()  # starts while the broker is away: it waits for it
        time.sleep(1)
    system.check(runs + system.trigger(2))
    assert second.poll() is None, system.logs()


def test_bridge_stopped_longer_than_a_lease(system):
    """SIGSTOP: workers' progress goes unanswered, the scheduler (another process) expires their
    leases and retries; after SIGCONT the late submits are refused as stale and each task counts once."""
    bridge = system.bridge()
    system.scheduler()
    for _ in range(2):
        system.worker(seconds=0.6)
    runs = system.trigger(6)
    deadline = time.monotonic() + 30
    while not retrying(lambda: Attempt.select().where(Attempt.status == "running").exists()):
        assert time.monotonic() < deadline, system.logs()
        time.sleep(0.05)
    bridge.send_signal(signal.SIGSTOP)
    time.sleep(2 * LEASE + 1)
    bridge.send_signal(signal.SIGCONT)
    system.check(runs)
    assert retrying(lambda: Attempt.select().where(Attempt.status == "expired").exists()), \
        "no lease expired while the bridge was stopped"
    assert bridge.poll() is None, system.logs()


def test_worker_killed_mid_task(system):
    system.bridge()
    system.scheduler()
    slow = system.worker(seconds=60)
    runs = system.trigger(2)
    deadline = time.monotonic() + 30
    while not (running := retrying(lambda: list(Attempt.select().where(Attempt.status == "running")))):
        assert time.monotonic() < deadline, system.logs()
        time.sleep(0.05)
    os.kill(slow.pid, signal.SIGKILL)
    slow.wait()
    system.worker()
    system.check(runs)
    killed = {a.instance_id for a in running}
    for instance in killed:
        statuses = retrying(lambda: sorted(a.status for a in Attempt.select().where(Attempt.instance == instance)))
        assert statuses.count("succeeded") == 1 and "expired" in statuses, (instance, statuses)
