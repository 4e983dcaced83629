"""Fault tests: the real processes (`flow45 bridge run`, `flow45 scheduler`, SDK workers over AMQP)
against a PostgreSQL and a RabbitMQ of their own, which the tests restart, crash and kill.

After each fault the tests count as Jepsen does: every run finished, no instance succeeded twice,
no acknowledged write missing (every submit a worker was answered `ok` is in the store)."""

from __future__ import annotations

import contextlib
import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import peewee as pw
import pytest

from bridge.setup_broker import plan
from flow45 import store
from flow45.config import load_config
from flow45.db import CONNECTION_ERRORS, connect, drop_connection
from flow45.migrate import ensure_schema
from flow45.models import Attempt, Outbox, Run
from flow45.settings import Settings, use_settings
from tests import pinned
from tests.conftest import ROOT, _unavailable
from tests.harness import postgres, rabbitmq

PASSWORDS = {"reports-worker": "rw-secret", "reports-ops": "ro-secret"}
TEAMS = {"reports": {"users": {"reports-worker": "worker", "reports-ops": "operator"}}}
LEASE = 2.0  # seconds: a lost worker's task is offered again soon
RETRIED = f"retries: 5, retry_delay: 0.2s, lease: {LEASE}s"
STEPS = [f"s{n:03d}" for n in range(120)]  # past specs.WIDE: settled without being read whole
CONFIG = f"""
team: reports
types:
  Blob:
    fields: {{uri: string, size: {{type: integer, ge: 0}}}}
workflows:
  limited:
    max_active_runs: null
    tasks:
      l1: {{function: start, output: Blob, {RETRIED}}}
      l2: {{function: step, output: Blob, inputs: {{prev: l1}}, max_running: 2, {RETRIED}}}
  chain:
    max_active_runs: null
    tasks:
      t1: {{function: start, output: Blob, {RETRIED}}}
      t2: {{function: step, output: Blob, inputs: {{prev: t1}}, {RETRIED}}}
      t3: {{function: step, output: Blob, inputs: {{prev: t2}}, {RETRIED}}}
  wide:
    max_active_runs: null
    tasks:
      root: {{function: start, output: Blob, {RETRIED}}}
""" + "".join(f"      {s}: {{function: step, output: Blob, inputs: {{prev: root}}, {RETRIED}}}\n"
              for s in STEPS) + f"""\
      join: {{function: step, output: Blob, inputs: {{prev: s000}}, after: [{", ".join(STEPS)}], {RETRIED}}}
"""
_databases = itertools.count()


@pytest.fixture(scope="package")
def pg():
    """A PostgreSQL of the fault tests' own: they restart and crash it."""
    ok, reason = postgres.available()
    if not ok:
        _unavailable(reason)
    server = postgres.PostgresServer(durable=True).start()  # fsync on: a crash keeps what was committed
    yield server
    server.stop()


@pytest.fixture(scope="package")
def rabbit():
    """A RabbitMQ node of the fault tests' own, with the team's worker user: they kill it."""
    ok, reason = rabbitmq.available()
    if not ok:
        _unavailable(reason)
    server = rabbitmq.RabbitMQServer(management=True).start()  # users set over HTTP, not with rabbitmqctl
    commands, _ = plan(Settings(amqp_url=server.amqp_url, teams=TEAMS), PASSWORDS)
    for argv in commands:
        server.apply(argv)
    yield server
    server.stop()


def retrying(action, timeout: float = 30):
    """Run a query of the test's own, riding out the restarts the test causes."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return action()
        except CONNECTION_ERRORS:
            drop_connection()
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


class System:
    """One fresh database, the workload's config deployed, and the processes of an installation."""

    def __init__(self, pg, rabbit, tmp_path: Path):
        self.pg, self.rabbit, self.dir = pg, rabbit, tmp_path
        self.url = pg.create_database(f"faults_{os.getpid()}_{next(_databases)}")
        parts = urlsplit(rabbit.amqp_url)
        self.worker_url = f"amqp://reports-worker:rw-secret@{parts.hostname}:{parts.port}/%2F"
        self.operator_url = f"amqp://reports-ops:ro-secret@{parts.hostname}:{parts.port}/%2F"
        self.heartbeat = tmp_path / "heartbeat.json"
        self.env = {
            **os.environ, "PYTHONPATH": str(ROOT), "FLOW45_DATABASE_URL": self.url,
            "FLOW45_AMQP_URL": rabbit.amqp_url, "FLOW45_TEAMS": json.dumps(TEAMS),
            "FLOW45_RELAY_INTERVAL": "0.2", "FLOW45_SWEEP_INTERVAL": "0.2", "FLOW45_RECONNECT_MAX": "1",
            "FLOW45_OFFER_QUIET_PERIOD": "3", "FLOW45_HEARTBEAT_FILE": str(self.heartbeat),
        }
        self.processes: list[subprocess.Popen] = []
        self.acks: list[Path] = []
        use_settings(Settings(database_url=self.url, amqp_url=rabbit.amqp_url, teams=TEAMS))
        connect(self.url)
        ensure_schema()
        (tmp_path / "workload.yaml").write_text(CONFIG)
        store.deploy(load_config(tmp_path / "workload.yaml"), actor="ops")

    # ---- processes -------------------------------------------------------------------------

    def spawn(self, *argv: str, name: str, env: dict | None = None) -> subprocess.Popen:
        log = open(self.dir / f"{name}-{len(self.processes)}.log", "w")
        process = subprocess.Popen(pinned.command([sys.executable, *argv]), env={**self.env, **(env or {})}, stderr=log,
                                   stdout=log, cwd=self.dir)
        process.log_path = log.name
        self.processes.append(process)
        return process

    def bridge(self) -> subprocess.Popen:
        return self.spawn("-m", "flow45", "bridge", "run", name="bridge")

    def scheduler(self) -> subprocess.Popen:
        return self.spawn("-m", "flow45", "scheduler", name="scheduler", env={"FLOW45_HEARTBEAT_FILE": ""})

    def worker(self, seconds: float = 0.02) -> subprocess.Popen:
        acks = self.dir / f"acks-{len(self.acks)}.jsonl"
        self.acks.append(acks)
        return self.spawn("-m", "tests.faults.worker_proc", self.worker_url, str(acks), str(seconds), name="worker")

    def installation(self, workers: int = 2) -> subprocess.Popen:
        """A bridge, a scheduler and `workers` worker processes; returns the bridge."""
        bridge = self.bridge()
        self.scheduler()
        for _ in range(workers):
            self.worker()
        return bridge

    def logs(self) -> str:
        return "\n".join(f"--- {Path(p.log_path).name} ---\n{Path(p.log_path).read_text()[-3000:]}"
                         for p in self.processes)

    def close(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
            process.wait()
        drop_connection()
        use_settings(None)

    # ---- workload and checks ---------------------------------------------------------------

    @contextlib.contextmanager
    def broker_away(self):
        """The broker node's app stopped for the block's length, then started and awaited."""
        self.rabbit.ctl("stop_app")
        yield
        self.rabbit.start_app()

    def trigger(self, runs: int) -> list[int]:
        return retrying(lambda: [store.trigger("reports", "chain", actor="ops") for _ in range(runs)])

    def succeeded(self, run_ids: list[int]) -> int:
        return retrying(lambda: Run.select().where(Run.id.in_(run_ids) & (Run.status == "succeeded")).count())

    def wait_succeeded(self, run_ids: list[int], count: int | None = None, timeout: float = 60) -> None:
        count = len(run_ids) if count is None else count
        deadline = time.monotonic() + timeout
        while self.succeeded(run_ids) < count:
            failed = retrying(lambda: Run.select().where(Run.id.in_(run_ids) & (Run.status != "running")
                                                         & (Run.status != "succeeded") & (Run.status != "queued")).count())
            if failed or time.monotonic() > deadline:
                left = retrying(lambda: {r.id: r.status for r in Run.select().where(Run.id.in_(run_ids))})
                raise AssertionError(f"only {self.succeeded(run_ids)} of {count} runs succeeded: {left}\n{self.logs()}")
            time.sleep(0.1)

    def check(self, run_ids: list[int], timeout: float = 60) -> None:
        """Every run finished, no instance succeeded twice, no acknowledged write missing."""
        self.wait_succeeded(run_ids, timeout=timeout)
        twice = retrying(lambda: list(
            Attempt.select(Attempt.instance, pw.fn.COUNT(Attempt.id).alias("n"))
            .where(Attempt.status == "succeeded").group_by(Attempt.instance)
            .having(pw.fn.COUNT(Attempt.id) > 1).tuples()
        ))
        assert twice == [], f"instances that succeeded more than once (instance, count): {twice}"
        acked = [json.loads(line) for path in self.acks if path.exists() for line in path.read_text().splitlines()]
        assert acked, "no worker was ever answered ok"
        stored = retrying(lambda: {
            (a.instance_id, a.token) for a in Attempt.select(Attempt.instance, Attempt.token).where(Attempt.status == "succeeded")
        })
        missing = [a for a in acked if (a["instance"], a["token"]) not in stored]
        assert missing == [], f"submits answered ok but not in the store: {missing}"
        deadline = time.monotonic() + 10
        while retrying(lambda: Outbox.select().where(Outbox.sent_at.is_null()).count()):
            assert time.monotonic() < deadline, "outbox rows never sent"
            time.sleep(0.1)


@pytest.fixture
def system(pg, rabbit, tmp_path):
    for server, down in ((pg, not (pg.data_dir / "postmaster.pid").exists()), (rabbit, rabbit.proc.poll() is not None)):
        if down:  # an earlier test failed while its server was away
            server.start_again()
    installation = System(pg, rabbit, tmp_path)
    yield installation
    installation.close()
    if not (pg.data_dir / "postmaster.pid").exists():
        pg.start_again()
    if rabbit.proc.poll() is not None:
        rabbit.start_again()
    elif not rabbit.serving():  # a test that stopped the app failed meanwhile
        rabbit.start_app()
