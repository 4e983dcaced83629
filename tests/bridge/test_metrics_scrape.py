"""`flow45 bridge run --metrics-port` as a Prometheus server scrapes it: a run driven through the
broker, a bad message and a stale one, and the figures an operator or an autoscaler reads."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import uuid

import pytest

from bridge.rpc import BridgeRefused, call
from flow45 import store
from flow45.config import load_config
from tests import pinned
from tests.bridge.conftest import TEAMS, BridgeEnv, purge_all
from tests.bridge.broker_helpers import publish_raw, wait_offer
from tests.conftest import EXAMPLES, ROOT
from tests.harness.ports import free_port
from tests.metrics.helpers import eventually, scrape

pytestmark = pytest.mark.integration


@pytest.fixture
def bridge_process(broker_users, postgres_url, pg_store, tmp_path):
    """`flow45 bridge run` in a process of its own, serving metrics on a free port; the example
    config deployed first, so the bridge declares its queues."""
    purge_all(broker_users)
    store.deploy(load_config(EXAMPLES), actor="ops")
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOW45_DATABASE_URL": postgres_url,
           "FLOW45_AMQP_URL": broker_users.amqp_url, "FLOW45_TEAMS": json.dumps(TEAMS), "FLOW45_RELAY_INTERVAL": "0.2"}
    log = open(tmp_path / "bridge.log", "w")
    process = subprocess.Popen(pinned.command([sys.executable, "-m", "flow45", "bridge", "run", "--metrics-port", str(port)]),
                               env=env, stdout=log, stderr=log)

    def up() -> bool:
        assert process.poll() is None, (tmp_path / "bridge.log").read_text()
        try:
            scrape(port)
        except (urllib.error.URLError, ConnectionError):
            return False
        return "connected to the broker" in (tmp_path / "bridge.log").read_text()

    assert eventually(up, bool), (tmp_path / "bridge.log").read_text()
    yield port
    process.send_signal(signal.SIGTERM)
    process.wait(timeout=10)


def test_a_scrape_shows_batches_refusals_by_code_the_outbox_and_offers_waiting(bridge_process, broker_users):
    env, port = BridgeEnv(None, broker_users, None, None), bridge_process  # for the bridge tests' helpers
    before = scrape(port)
    assert before.value("flow45_store_up") == 1.0
    store.trigger("reports", "monthly_report", actor="ops", params={"month": "2026-10"})
    offer = wait_offer(env, "reports", "extract_sales")
    worker = env.url("reports-worker")
    call(worker, "reports", {"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w1"})
    call(worker, "reports", {"type": "submit", "instance": offer["instance"], "token": offer["token"],
                             "output": {"uri": "s3://sales.parquet", "rows": 10}})
    with pytest.raises(BridgeRefused):  # the same attempt again: its token is no longer live
        call(worker, "reports", {"type": "progress", "instance": offer["instance"], "token": offer["token"], "percent": 1})
    bad = publish_raw(env, "reports-worker", "flow45.in.reports", b"{not json", message_id=uuid.uuid4().hex,
                       user_id="reports-worker")
    assert bad["code"] == "invalid_message"

    # A batch's phases are observed once it is answered: the scrape waits for the last one's too.
    after = eventually(lambda: scrape(port), lambda s: s.value("flow45_outbox_backlog") == 0
                       and s.value("flow45_hop_latency_seconds_count") >= 1
                       and s.value("flow45_batch_phase_seconds_count", phase="answer")
                       == s.value("flow45_batch_size_count"))
    assert after.value("flow45_batch_size_count") - before.value("flow45_batch_size_count") >= 3, \
        "claim, submit and the stale progress were each applied in a batch (the bad message needs none)"
    assert after.value("flow45_refusals_total", code="invalid_message") == 1
    assert after.value("flow45_refusals_total", code="stale") == 1
    assert after.value("flow45_outbox_backlog") == 0 and after.value("flow45_outbox_oldest_age_seconds") == 0
    assert after.value("flow45_hop_latency_seconds_count") >= 1, "the submit's downstream offer was published"
    # render_pdf's offer is in its queue, published and not yet taken: what an autoscaler reads.
    assert after.value("flow45_offers_waiting", queue="flow45.tasks.reports.render_pdf", team="reports",
                       function="render_pdf") == 1
    assert after.value("flow45_instances", team="reports", function="render_pdf", state="available") == 1
    assert after.value("flow45_instances", team="reports", function="extract_sales", state="available") == 0
    assert after.value("flow45_inbox_lag_seconds_count") >= 3
    batches = after.value("flow45_batch_size_count") - before.value("flow45_batch_size_count")
    for phase in ("wait", "apply", "commit", "answer"):  # each batch's time in the bridge, by phase
        assert after.value("flow45_batch_phase_seconds_count", phase=phase) == after.value("flow45_batch_size_count")
        assert after.value("flow45_batch_phase_seconds_sum", phase=phase) > 0 or phase == "wait"
    assert batches >= 3
