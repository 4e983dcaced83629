"""The relay takes the teams' waiting offers in turn: one team's backlog of thousands of offers holds
up another team's new offer by a page at most, not by the backlog. And a backlog larger than the
relay's in-flight budget goes on as soon as the broker confirms, not one budget per relay_interval."""

from __future__ import annotations

import threading
import time

import pytest

from bridge import relay
from bridge.service import Bridge
from flow45 import names, store
from flow45.config import load_config
from tests.bridge.conftest import waiting
from tests.bridge.test_team_inboxes import _stop

pytestmark = pytest.mark.integration

# The relay's budget made small, so that a backlog of four budgets (as a real one of 20,000 offers is)
# is written in a fraction of the time.
IN_FLIGHT, PAGE = 1000, 100
TASKS, RUNS = 1000, 4  # 4,000 offers waiting for reports


def _deploy(tmp_path) -> None:
    tasks = "\n".join(f"      t{i:04d}: {{function: bulk, output: Doc}}" for i in range(TASKS))
    (tmp_path / "reports.yaml").write_text("team: reports\ntypes:\n  Doc: {fields: {uri: string}}\n"
                                           f"workflows:\n  wide:\n    max_active_runs: null\n    tasks:\n{tasks}\n")
    (tmp_path / "rival.yaml").write_text("team: rival\ntypes:\n  Doc: {fields: {uri: string}}\n"
                                         "workflows:\n  one:\n    tasks:\n      t: {function: quick, output: Doc}\n")
    store.deploy(load_config(tmp_path / "reports.yaml"), actor="reports-admin")
    store.deploy(load_config(tmp_path / "rival.yaml"), actor="rival-admin")


def test_another_teams_offer_goes_out_ahead_of_a_teams_backlog(bridge_env, tmp_path, monkeypatch):
    monkeypatch.setattr(relay, "MAX_IN_FLIGHT", IN_FLIGHT)
    monkeypatch.setattr(relay, "RELAY_PAGE", PAGE)
    _stop(bridge_env.bridge, bridge_env.thread)  # the offers wait in the outbox meanwhile
    _deploy(tmp_path)
    for _ in range(RUNS):
        store.trigger("reports", "wide", actor="reports-admin")
    store.trigger("rival", "one", actor="rival-admin")  # after all of reports' offers
    # Polling the outbox once a minute: the backlog must not wait for the next poll.
    bridge = Bridge(bridge_env.settings.model_copy(update={"relay_interval": 60.0}), batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    backlog, theirs = names.offer_queue("reports", "bulk"), names.offer_queue("rival", "quick")
    try:
        deadline = time.monotonic() + 30
        while not bridge.consuming:  # the function queues declared
            assert time.monotonic() < deadline, "the bridge did not start consuming"
            time.sleep(0.01)
        while not waiting(bridge_env, theirs):
            assert time.monotonic() < deadline, "rival's offer never reached its queue"
            time.sleep(0.01)
        published_before = waiting(bridge_env, backlog)
        while waiting(bridge_env, backlog) < TASKS * RUNS:  # and the backlog follows, whole
            assert time.monotonic() < deadline, f"reports' offers: {waiting(bridge_env, backlog)} published"
            time.sleep(0.1)
    finally:
        _stop(bridge, thread)
    assert published_before < TASKS * RUNS / 2, f"rival's offer went out after {published_before} of reports'"
