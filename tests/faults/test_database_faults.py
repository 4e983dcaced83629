"""PostgreSQL goes away under a running installation: restarted (fast, immediate) or crashed, with
the bridge idle or busy, and while the broker is down too. Nothing is restarted by hand."""

from __future__ import annotations

import time

import peewee as pw
import pytest

from bridge.sdk import LocalTransport, Worker
from flow45.models import Attempt
from tests.faults.conftest import retrying

pytestmark = pytest.mark.integration


def test_idle_bridge_relays_again_after_a_fast_restart(system):
    bridge = system.installation()
    first = system.trigger(2)
    system.check(first)
    system.pg.restart("fast")
    time.sleep(1)  # several relay ticks meet the dead connection before anything is written
    # Written by another process (this test), so only the bridge's relay can send the offers.
    later = system.trigger(3)
    system.check(first + later, timeout=30)
    assert bridge.poll() is None, system.logs()


@pytest.mark.parametrize("fault", ["immediate", "crash"])
def test_busy_installation_survives_an_immediate_restart_or_a_crash(system, fault):
    bridge = system.installation(workers=3)
    runs = system.trigger(12)
    system.wait_succeeded(runs, count=3)
    if fault == "crash":
        system.pg.crash()
        time.sleep(0.5)
        system.pg.start_again()
    else:
        system.pg.restart("immediate", downtime=0.5)
    system.check(runs + system.trigger(2))
    assert bridge.poll() is None, system.logs()


def test_database_restarted_while_the_broker_is_down(system):
    """The compound fault: the bridge is reconnecting to the broker when its database restarts."""
    bridge = system.installation()
    runs = system.trigger(6)
    system.wait_succeeded(runs, count=2)
    with system.broker_away():
        time.sleep(0.5)
        system.pg.restart("fast")
        time.sleep(1)
    system.check(runs + system.trigger(2))
    assert bridge.poll() is None, system.logs()


def test_a_worker_on_the_local_transport_works_again_after_a_restart(system):
    """The embedded default pointed at PostgreSQL: the worker's threads drop the connections the
    restart closed (peewee never reconnects), rather than meet `connection already closed` forever."""
    worker = Worker(LocalTransport("reports", "local", poll_interval=0.05), rpc_timeout=2.0, rpc_attempts=60)
    worker.handler("start")(lambda task: {"uri": "noop://start", "size": 0})
    worker.handler("step")(lambda task, prev: {"uri": "noop://step", "size": prev["size"] + 1})
    first = system.trigger(2)
    worker.start(concurrency=2)
    try:
        system.wait_succeeded(first)
        system.pg.restart("fast")
        later = system.trigger(3)
        system.wait_succeeded(first + later, timeout=30)
    finally:
        worker.stop()
        assert worker.join(timeout=30), "the worker did not stop"
    twice = retrying(lambda: Attempt.select(Attempt.instance).where(Attempt.status == "succeeded")
                     .group_by(Attempt.instance).having(pw.fn.COUNT(Attempt.id) > 1).count())
    assert twice == 0, "an instance succeeded twice"


def test_scheduler_expires_leases_again_after_a_restart(system):
    """The scheduler's lock connection and its ticks come back: a worker killed after the restart
    has its lease expired and its task done by another worker."""
    system.bridge()
    scheduler = system.scheduler()
    slow = system.worker(seconds=60)
    system.pg.restart("fast")
    runs = system.trigger(1)
    deadline = time.monotonic() + 30
    while not (running := retrying(lambda: list(Attempt.select().where(Attempt.status == "running")))):
        assert time.monotonic() < deadline, system.logs()
        time.sleep(0.05)
    slow.kill()
    slow.wait()
    system.worker()
    system.check(runs)
    statuses = retrying(lambda: sorted(a.status for a in Attempt.select().where(Attempt.instance == running[0].instance_id)))
    assert statuses == ["expired", "succeeded"], statuses
    assert scheduler.poll() is None, system.logs()


def test_services_started_while_the_database_is_down_wait_for_it(system):
    system.pg.shut_down("fast")
    bridge = system.bridge()
    scheduler = system.scheduler()
    time.sleep(1.5)  # a few failed attempts to reach it
    assert bridge.poll() is None and scheduler.poll() is None, system.logs()
    system.pg.start_again()
    system.worker()
    system.check(system.trigger(2))
    # The scheduler tries again on its own backoff (up to reconnect_max apart), which may come after the runs finished.
    deadline = time.monotonic() + 30
    while "holds the scheduler lock" not in open(scheduler.log_path).read():
        assert time.monotonic() < deadline and scheduler.poll() is None, system.logs()
        time.sleep(0.1)
