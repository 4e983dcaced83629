"""Operators' reads through the bridge (flow45.read): one team's rows only, another team's ids
answered `not_found` in the words a missing id gets, pages capped."""

from __future__ import annotations

import threading

import pytest

from bridge.rpc import BridgeRefused, Rpc
from flow45 import messages as m
from tests.client.two_teams import deploy_two_teams

pytestmark = pytest.mark.integration

MISSING = 999_999


def refused(call) -> BridgeRefused:
    with pytest.raises(BridgeRefused) as caught:
        call()
    return caught.value


@pytest.fixture
def ops(bridge_env):
    rpc = Rpc(bridge_env.url("reports-ops"), timeout=10)
    yield rpc
    rpc.close()


def test_an_operator_reads_its_own_team_only(bridge_env, ops, tmp_path, wire_log):
    teams = deploy_two_teams(tmp_path)
    ours, theirs = teams["reports"], teams["rival"]
    assert ops.read({"type": "whoami"}) == {"user": "reports-ops", "team": "reports"}
    workflows = ops.read({"type": "workflows"})["workflows"]
    assert sorted((w["team"], w["name"]) for w in workflows) == [("reports", "monthly_report"), ("reports", "nightly_sales")]
    assert [r["id"] for r in ops.read({"type": "runs"})["runs"]] == [ours.run]
    assert ops.read({"type": "runs", "text": "rival"})["runs"] == []
    run = ops.read({"type": "run", "run": ours.run})
    assert run["team"] == "reports" and [i["task"] for i in run["instances"]][:2] == ["extract", "render"]
    assert ops.read({"type": "instance", "instance": ours.approve})["state"] == "available"
    events = ops.read({"type": "events", "limit": 500})["events"]
    assert events and {e["team"] for e in events} == {"reports"}
    assert ops.read({"type": "events", "run": theirs.run})["events"] == []

    for kind, theirs_id in (("run", theirs.run), ("instance", theirs.approve)):
        other = refused(lambda: ops.read({"type": kind, kind: theirs_id}))
        missing = refused(lambda: ops.read({"type": kind, kind: MISSING}))
        assert other.code == missing.code == "not_found"
        assert other.message == missing.message.replace(str(MISSING), str(theirs_id))
        assert "rival" not in other.message
    assert not wire_log.check()  # every read and its reply as `flow45 schema` says
    assert wire_log.checked["OperatorRead"] >= 10 and wire_log.checked["ReadRunReply"] >= 3


def test_reads_come_in_capped_pages(bridge_env, ops, tmp_path):
    deploy_two_teams(tmp_path)
    too_many = refused(lambda: ops.read({"type": "events", "limit": m.MAX_PAGE + 1}))
    assert too_many.code == "invalid_message" and "limit" in too_many.message and str(m.MAX_PAGE) in too_many.message
    assert refused(lambda: ops.read({"type": "runs", "limit": m.MAX_PAGE + 1})).code == "invalid_message"
    first = ops.read({"type": "events", "limit": 3})["events"]
    assert len(first) == 3
    second = ops.read({"type": "events", "after": first[-1]["id"], "limit": 3})["events"]
    assert second and second[0]["id"] > first[-1]["id"]
    change = refused(lambda: ops.read({"type": "trigger", "workflow": "monthly_report"}))
    assert change.code == "invalid_message" and "flow45.in.reports" in change.message


def test_reads_are_answered_while_the_workers_path_is_stuck(bridge_env, ops, tmp_path):
    """The inbox's IO loop held (as by a long batch): reads still come back, from their own reader."""
    teams = deploy_two_teams(tmp_path)
    held, release = threading.Event(), threading.Event()

    def hold_the_io_loop() -> None:
        held.set()
        release.wait(30)

    bridge_env.bridge._connection.ioloop.add_callback_threadsafe(hold_the_io_loop)
    try:
        assert held.wait(10)
        assert [r["id"] for r in ops.read({"type": "runs"})["runs"]] == [teams["reports"].run]
        assert ops.read({"type": "instance", "instance": teams["reports"].approve})["state"] == "available"
    finally:
        release.set()
