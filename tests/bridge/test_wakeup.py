"""The relay is woken by the commit that wrote an outbox row, not by its polling interval."""

from __future__ import annotations

import json
import time

import pytest

from bridge.topology import declare_with_new_connection
from flow45 import store
from flow45.config import load_config
from flow45.db import atomic
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration


@pytest.fixture
def relay_interval() -> float:
    return 30.0  # polling alone would take this long


def test_an_offer_written_elsewhere_is_published_at_once(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    declare_with_new_connection(bridge_env.rabbit.amqp_url, bridge_env.settings)  # queues of the new functions
    channel = bridge_env.channel("reports-worker")
    started = time.monotonic()
    run = store.trigger("reports", "monthly_report", actor="ops")  # another connection commits the offer
    while time.monotonic() - started < 5:
        method, _props, body = channel.basic_get("flow45.tasks.reports.extract_sales", auto_ack=True)
        if method:
            break
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert method is not None and json.loads(body)["run"] == run
    assert elapsed < 2.0, f"offer took {elapsed:.1f}s: the relay waited for its poll"


BACKLOG = """
team: reports
types:
  Blob:
    fields: {uri: string}
workflows:
  backlog:
    max_active_runs: null
    tasks:
      only: {function: drain, output: Blob}
"""


def test_a_backlog_of_many_pages_written_elsewhere_is_published_on_one_wake_up(bridge_env, tmp_path):
    (tmp_path / "backlog.yaml").write_text(BACKLOG)
    store.deploy(load_config(tmp_path), actor="ops")
    declare_with_new_connection(bridge_env.rabbit.amqp_url, bridge_env.settings)
    channel = bridge_env.channel("reports-worker")
    queue = "flow45.tasks.reports.drain"
    with atomic():  # one commit, one notification: 1,200 offers, over more than two pages of the relay
        runs = {store.trigger("reports", "backlog", actor="ops") for _ in range(1200)}
    deadline = time.monotonic() + 10
    while channel.queue_declare(queue, passive=True).method.message_count < len(runs):
        assert time.monotonic() < deadline, "the relay published one page and waited for its poll"
        time.sleep(0.05)
    offered = set()
    while (got := channel.basic_get(queue, auto_ack=True))[0]:
        offered.add(json.loads(got[2])["run"])
    assert offered == runs
