"""`flow45 scheduler` with `metrics_port` in its settings: a scrape shows what its ticks did and the
store's live work, against the harness's PostgreSQL."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys

import pytest

from flow45 import store
from flow45.clock import utcnow
from tests import pinned
from tests.conftest import ROOT
from tests.harness.ports import free_port
from tests.metrics.helpers import eventually, scrape
from tests.store.helpers import DIAMOND, deploy_text, instance

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("store_db")]


@pytest.fixture
def backend():
    return "postgresql"


def test_a_scrape_shows_the_lease_the_scheduler_expired(db_url, tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("retry_delay: 10s", "retry_delay: 1d"))  # it stays in retry_wait
    # A claim whose lease ran out a day before the scheduler's clock, whatever that clock says.
    long_ago = utcnow() - dt.timedelta(days=1)
    run = store.trigger("acme", "diamond", actor="ops", now=long_ago)
    row = instance(run, "a")
    store.claim(row.id, row.token, "w", now=long_ago)
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "FLOW45_DATABASE_URL": db_url, "FLOW45_METRICS_PORT": str(port),
           "FLOW45_SWEEP_INTERVAL": "0.2"}
    log = open(tmp_path / "scheduler.log", "w")
    process = subprocess.Popen(pinned.command([sys.executable, "-m", "flow45", "scheduler"]), env=env,
                               stdout=log, stderr=log)
    try:
        def read():
            assert process.poll() is None, (tmp_path / "scheduler.log").read_text()
            try:
                return scrape(port)
            except OSError:
                return None

        scraped = eventually(read, lambda s: s is not None and s.value("flow45_scheduler_actions_total", action="expired") == 1)
        assert scraped is not None, (tmp_path / "scheduler.log").read_text()
        assert scraped.value("flow45_scheduler_actions_total", action="expired") == 1
        assert scraped.value("flow45_instances", team="acme", function="fa", state="retry_wait") == 1, \
            "its one retry waits for its delay"
        assert scraped.value("flow45_instances", team="acme", function="fa", state="running") == 0
        assert scraped.value("flow45_store_up") == 1
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=10)
