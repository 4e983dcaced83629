"""The local transport answers like the bridge: same checks, same codes, same idempotency."""

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from bridge.sdk import LocalTransport, Worker, run_forever, transport_from_settings
from bridge.sdk.amqp import AmqpTransport
from flow45 import states as S
from flow45 import store
from flow45.db import connect
from flow45.settings import Settings
from tests import pinned
from tests.conftest import ROOT
from tests.sdk.helpers import BLOB, wait_finished
from tests.store.helpers import deploy_text, instance


def claim_message(row, worker="w1"):
    return {"type": "claim", "instance": row.id, "token": row.token, "worker": worker}


def test_claim_is_idempotent_by_message_id(acme):
    transport = LocalTransport("acme", "w1")
    run = store.trigger("acme", "flaky", actor="tester")
    row = instance(run, "x")
    first = transport.request(claim_message(row), "m-1", timeout=5)
    again = transport.request(claim_message(row), "m-1", timeout=5)
    other = transport.request(claim_message(row, "w2"), "m-2", timeout=5)
    assert first.ok and first.result["token"] == row.token and first.result["duplicate"] is False
    assert first.result["state"] == S.RUNNING and first.result["inputs"] == {} and first.result["attempt"] == 1
    assert again.ok and again.result["duplicate"] is True and again.result["token"] == row.token
    assert (other.ok, other.code) == (False, "stale")
    assert "no longer open" in other.error


def test_refusals_carry_the_bridge_codes(acme, tmp_path):
    deploy_text(tmp_path, ACME_OTHER)
    transport = LocalTransport("acme", "w1")
    run = store.trigger("acme", "flaky", actor="tester")
    row = instance(run, "x")
    theirs = instance(store.trigger("other", "solo", actor="tester"), "t")

    bad = transport.request({"type": "claim", "instance": row.id}, "m-1", timeout=5)
    assert (bad.ok, bad.code) == (False, "invalid_message") and "token" in bad.error
    unknown = transport.request({**claim_message(row), "type": "explode"}, "m-2", timeout=5)
    assert unknown.code == "invalid_message"
    foreign = transport.request(claim_message(theirs), "m-3", timeout=5)
    assert (foreign.code, foreign.error) == ("not_found", f"task instance {theirs.id} not found for team acme")
    stale = transport.request({"type": "progress", "instance": row.id, "token": row.token}, "m-4", timeout=5)
    assert stale.code == "stale"  # not claimed yet

    grant = transport.request(claim_message(row), "m-5", timeout=5)
    token = grant.result["token"]
    wrong = transport.request({"type": "submit", "instance": row.id, "token": token, "output": {"uri": 1}}, "m-6", 5)
    assert wrong.code == "invalid_output"
    done = transport.request({"type": "submit", "instance": row.id, "token": token, "output": BLOB}, "m-7", 5)
    assert done.ok and done.result["state"] == S.SUCCEEDED
    late = transport.request({"type": "fail", "instance": row.id, "token": token, "error": "x"}, "m-8", 5)
    assert late.code == "stale"


LOOK_AROUND = """
    team: acme
    types:
      Path:
        fields: {path: {type: string, pattern: "^(?!/tmp/)"}}
    workflows:
      keep:
        tasks:
          k: {function: fk, output: Path}
"""


def test_a_pattern_stored_before_deploy_checked_it_refuses_the_submit_with_a_reason(store_db, tmp_path, monkeypatch):
    """A version deployed before deploy refused look-around: its outputs cannot be checked. The
    submit is answered with why, the attempt stays open for a new version's fix, nothing raises."""
    monkeypatch.setattr("flow45.config_check.pattern_problem", lambda pattern: None)  # as deploy was
    deploy_text(tmp_path, LOOK_AROUND)
    transport = LocalTransport("acme", "w1")
    row = instance(store.trigger("acme", "keep", actor="tester"), "k")
    token = transport.request(claim_message(row), "m-1", timeout=5).result["token"]
    submit = {"type": "submit", "instance": row.id, "token": token, "output": {"path": "/data"}}
    done = transport.request(submit, "m-2", timeout=5)
    assert (done.ok, done.code) == (False, "invalid_config")
    assert done.error == ("type Path cannot be checked (look-around, including look-ahead and look-behind, is not "
                          "supported): deploy a version without that pattern")
    assert store.get_run(row.run_id).instances[0].state == S.RUNNING


WORKER_STUCK_IN_A_TASK = """
import logging, sys, threading
from bridge.sdk import LocalTransport, Worker, run_forever
from flow45.db import connect
logging.basicConfig(level=logging.INFO, format="%(message)s")
connect(sys.argv[1])
worker = Worker(LocalTransport("acme", "w1", poll_interval=0.01))

@worker.handler("fx")
def fx(task):
    print("started", flush=True)
    threading.Event().wait()

run_forever(worker)
"""


@pytest.mark.timeout(60)
def test_a_second_signal_ends_a_worker_whose_task_does_not_finish(acme, db_url):
    store.trigger("acme", "flaky", actor="tester")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW45_")}
    env.update(PYTHONPATH=str(ROOT))
    process = subprocess.Popen(pinned.command([sys.executable, "-c", WORKER_STUCK_IN_A_TASK, db_url]), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "started\n"
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1)  # the first one waits for the running task
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    said = process.stderr.read()
    assert "SIGTERM: finishing running tasks" in said and "SIGTERM again: exiting now" in said


ACME_OTHER = """
    team: other
    types:
      Blob:
        fields: {uri: string}
    workflows:
      solo:
        tasks:
          t: {function: ft, output: Blob}
"""


def test_transport_from_settings_picks_by_amqp_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    connect(url, create=True)  # as `flow45 db upgrade` would: a worker never creates the store
    assert isinstance(transport_from_settings("acme", "w", Settings(database_url=url)), LocalTransport)
    amqp = transport_from_settings("acme", "w", Settings(database_url=url, amqp_url="amqp://u:p@localhost:5672/%2F"))
    assert isinstance(amqp, AmqpTransport) and amqp.user == "u" and amqp.exchange == "flow45.in.acme"


@pytest.mark.timeout(60)
def test_run_forever_stops_cleanly_on_sigterm(acme):
    worker = Worker(LocalTransport("acme", "w1", poll_interval=0.01))
    started = threading.Event()

    @worker.handler("fx")
    def fx(task):
        started.set()
        time.sleep(0.3)
        return BLOB

    run = store.trigger("acme", "flaky", actor="tester")
    killer = threading.Thread(target=lambda: started.wait(10) and os.kill(os.getpid(), signal.SIGTERM))
    killer.start()
    previous = signal.getsignal(signal.SIGTERM)
    run_forever(worker, concurrency=2)  # returns once stopped
    killer.join()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert wait_finished(run, timeout=1) == S.SUCCEEDED  # the running handler finished and submitted
