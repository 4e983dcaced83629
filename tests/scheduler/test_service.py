"""The scheduler service: the single-scheduler lock on each backend, the loop, and clean shutdown."""

from __future__ import annotations

import datetime as dt
import os
import queue
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from flow45.clock import utcnow
from flow45.db import database
from flow45.models import Run, SchedulerLock
from flow45.scheduler import Scheduler, stop_on_signals
from tests import pinned
from tests.scheduler.helpers import deploy_at, logical_times, scheduled

ROOT = Path(__file__).resolve().parents[2]
T0 = dt.datetime(2026, 3, 2, 0, 0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


# The lock differs by backend: these two tests run on one each.
on_sqlite = pytest.mark.parametrize("backend", ["sqlite"], indirect=True)
on_postgresql = pytest.mark.parametrize(
    "backend", [pytest.param("postgresql", marks=pytest.mark.integration)], indirect=True
)


@on_sqlite
@pytest.mark.usefixtures("store_db")
def test_sqlite_lease_lets_one_scheduler_act_and_the_next_take_over_when_it_stops_renewing(db_url):
    one = Scheduler(db_url, holder="one", lease=30, clock=lambda: at(51))
    two = Scheduler(db_url, holder="two", lease=30)
    assert one.acquire(at(0)) and not two.acquire(at(0))
    assert one.acquire(at(20)), "renewed: now held until 50"
    assert not two.acquire(at(49))
    assert two.acquire(at(50)), "one stopped renewing (it died): two takes over"
    assert not one.acquire(at(51)) and one.step() is None, "one notices and no longer ticks"
    two.release()
    assert SchedulerLock.select().count() == 0
    assert one.acquire(at(52))


@on_postgresql
@pytest.mark.usefixtures("store_db")
def test_postgresql_advisory_lock_goes_to_the_waiting_scheduler_when_the_first_releases_or_dies(db_url):
    one, two = Scheduler(db_url, holder="one"), Scheduler(db_url, holder="two")
    try:
        assert one.acquire(T0) and not two.acquire(T0)
        assert one.acquire(T0), "still held: its session is alive"
        one.release()
        assert two.acquire(T0) and not one.acquire(T0)

        got: queue.Queue = queue.Queue()
        waiter = threading.Thread(target=lambda: got.put(one.acquire(T0, wait=60)))
        waiter.start()
        two.lock.conn.close()  # the process dies: its session ends and the lock goes
        waiter.join(timeout=60)
        assert got.get_nowait() is True
        assert not two.acquire(T0), "two finds its lock gone and one holding it"
    finally:
        one.lock.close()
        two.lock.close()


@pytest.mark.usefixtures("store_db")
def test_the_loop_ticks_until_stopped_and_releases_the_lock(tmp_path, db_url):
    deploy_at(tmp_path, scheduled("0 6 * * *"), T0)
    stop = threading.Event()
    moments = iter([dt.datetime(2026, 3, 2, 6, 0, 1), dt.datetime(2026, 3, 3, 6, 0, 1), dt.datetime(2026, 3, 4, 6, 0, 1)])

    def clock() -> dt.datetime:
        now = next(moments)
        if now.day == 4:
            stop.set()  # the last round still ticks, then the loop ends
        return now

    Scheduler(db_url, holder="loop", clock=clock, interval=0).run(stop)
    assert logical_times() == [dt.datetime(2026, 3, day, 6) for day in (2, 3, 4)]
    assert Scheduler(db_url, holder="next").acquire(T0), "the lock was released on the way out"


@pytest.mark.usefixtures("store_db")
def test_only_the_lock_holder_ticks(tmp_path, db_url):
    deploy_at(tmp_path, scheduled("0 6 * * *"), T0)
    now = dt.datetime(2026, 3, 2, 6, 0, 1)
    one = Scheduler(db_url, holder="one", clock=lambda: now)
    two = Scheduler(db_url, holder="two", clock=lambda: now)
    try:
        assert len(one.step().created) == 1
        assert two.step() is None
    finally:
        one.release()
        one.lock.close()
        two.lock.close()


def test_sigterm_and_sigint_set_the_stop_event():
    for sig in (signal.SIGTERM, signal.SIGINT):
        stop = threading.Event()
        before = signal.getsignal(sig)
        with stop_on_signals(stop):
            signal.raise_signal(sig)
        assert stop.is_set() and signal.getsignal(sig) is before


@pytest.mark.usefixtures("store_db")
def test_flow45_scheduler_process_logs_its_actions_and_stops_on_sigterm(tmp_path, db_url):
    deploy_at(tmp_path, scheduled("* * * * *"), utcnow() - dt.timedelta(minutes=5))
    database.close()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW45_")}
    env.update(FLOW45_DATABASE_URL=db_url, FLOW45_SWEEP_INTERVAL="100ms", PYTHONPATH=str(ROOT))
    process = subprocess.Popen(
        pinned.command([sys.executable, "-c", "from flow45.scheduler import run_scheduler; run_scheduler()"]),
        env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True,
    )
    lines: queue.Queue = queue.Queue()
    reader = threading.Thread(target=lambda: [lines.put(line) for line in process.stderr], daemon=True)
    reader.start()
    seen = []
    try:
        while not any("created for" in line for line in seen):
            seen.append(lines.get(timeout=60))
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=60) == 0
    finally:
        if process.poll() is None:
            process.kill()
    reader.join(timeout=10)
    while not lines.empty():
        seen.append(lines.get_nowait())
    text = "".join(seen)
    assert "holds the scheduler lock" in text and "of acme/nightly v1 created for" in text
    assert "SIGTERM received, stopping" in text and text.rstrip().endswith("stopped")
    # A minute may turn while the process runs (it keeps the real clock): one more tick, one more line.
    assert Run.select().where(Run.trigger == "schedule").count() == text.count("created for") >= 1
