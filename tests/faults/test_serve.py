"""`flow45 serve` as a supervisor sees it: it stops within 2 s of SIGTERM even while waiting to
reconnect, exits non-zero when a part of it cannot work, and `flow45 health` tells which."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests import pinned
from tests.harness import commands
from tests.harness.ports import free_port

pytestmark = pytest.mark.integration


def _wait_for(process: subprocess.Popen, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while text not in Path(process.log_path).read_text():
        assert process.poll() is None, Path(process.log_path).read_text()
        assert time.monotonic() < deadline, f"no {text!r} in:\n{Path(process.log_path).read_text()}"
        time.sleep(0.05)


def _health(system, *args: str, **env: str) -> subprocess.CompletedProcess:
    return commands.run(pinned.command([sys.executable, "-m", "flow45", "health", *args]), env={**system.env, **env},
                        timeout=60)


def test_sigterm_stops_serve_within_2s_while_it_waits_for_the_broker(system):
    nobody = f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F"  # nothing listens there
    serve = system.spawn("-m", "flow45", "serve", name="serve",
                         env={"FLOW45_AMQP_URL": nobody, "FLOW45_RECONNECT_MAX": "60"})
    _wait_for(serve, "reconnecting in 4.0s")  # a wait longer than the promise
    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=2) == 0, Path(serve.log_path).read_text()


def test_serve_exits_non_zero_when_its_bridge_cannot_log_in(system):
    wrong = system.rabbit.amqp_url.replace("guest:guest", "guest:wrong")
    serve = system.spawn("-m", "flow45", "serve", name="serve", env={"FLOW45_AMQP_URL": wrong})
    assert serve.wait(timeout=60) == 1
    log = Path(serve.log_path).read_text()
    shown = wrong.replace("guest:wrong", "guest:***")
    assert f"flow45: bridge: cannot connect to {shown}: access refused: wrong user name or password" in log
    assert "scheduler" in log and "holds the scheduler lock" in log  # the scheduler part was fine


def test_serve_exits_non_zero_when_its_database_does_not_exist(system):
    missing = system.url.rsplit("/", 1)[0] + "/no_such_database"
    serve = system.spawn("-m", "flow45", "serve", name="serve", env={"FLOW45_DATABASE_URL": missing})
    assert serve.wait(timeout=60) == 1
    assert 'database "no_such_database" does not exist' in Path(serve.log_path).read_text()


def test_health_follows_a_running_serve(system):
    assert not system.heartbeat.exists()
    missing = _health(system)
    assert missing.returncode == 1 and "heartbeat file" in missing.stderr and "missing" in missing.stderr
    serve = system.spawn("-m", "flow45", "serve", name="serve")
    _wait_for(serve, "connected to the broker")
    deadline = time.monotonic() + 30
    while (done := _health(system)).returncode != 0:
        assert time.monotonic() < deadline, done.stderr
        time.sleep(0.2)
    assert done.stdout.strip() == "ok"
    parts = json.loads(system.heartbeat.read_text())["parts"]
    assert set(parts) == {"bridge", "bridge.reads", "bridge.events", "scheduler"}

    down = _health(system, FLOW45_AMQP_URL=f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F")
    assert down.returncode == 1 and "connection refused" in down.stderr and "guest:***" in down.stderr
    db_down = _health(system, FLOW45_DATABASE_URL=f"postgresql://nobody:pw@127.0.0.1:{free_port()}/flow45")
    assert db_down.returncode == 1 and "cannot connect to postgresql://nobody:***@" in db_down.stderr
    assert "connection refused (is PostgreSQL running there?)" in db_down.stderr and "Traceback" not in db_down.stderr

    serve.send_signal(signal.SIGTERM)
    assert serve.wait(timeout=10) == 0
    assert not system.heartbeat.exists(), "a clean stop removes the heartbeat file"


def test_health_refuses_a_stale_or_orphaned_heartbeat(system, tmp_path):
    stale = tmp_path / "stale.json"
    stale.write_text(json.dumps({"pid": os.getpid(), "parts": {"bridge": {"at": 0, "error": None}}}))
    old = _health(system, FLOW45_HEARTBEAT_FILE=str(stale))
    assert old.returncode == 1 and "bridge: no heartbeat for" in old.stderr
    gone = subprocess.Popen([sys.executable, "-c", ""])
    gone.wait()
    orphan = tmp_path / "orphan.json"
    orphan.write_text(json.dumps({"pid": gone.pid, "parts": {"scheduler": {"at": time.time(), "error": None}}}))
    dead = _health(system, FLOW45_HEARTBEAT_FILE=str(orphan))
    assert dead.returncode == 1 and f"process {gone.pid} is not running" in dead.stderr
    failing = tmp_path / "failing.json"
    failing.write_text(json.dumps({"pid": os.getpid(), "parts": {"bridge": {"at": time.time(), "error": "database x: gone"}}}))
    told = _health(system, FLOW45_HEARTBEAT_FILE=str(failing))
    assert told.returncode == 1 and "bridge: database x: gone" in told.stderr
