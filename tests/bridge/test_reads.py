"""Operators' reads through the bridge (flow45.read): one team's rows only, another team's ids
answered `not_found` in the words a missing id gets, pages capped."""

from __future__ import annotations

import threading
import time

import pytest

from bridge import reads
from bridge.rpc import BridgeRefused, Rpc
from flow45 import heartbeat
from flow45 import messages as m
from flow45.errors import Flow45Error, NotFound
from flow45.heartbeat import Heartbeat
from flow45.wire import INT64_MAX
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
    unnamed = refused(lambda: ops.read({"type": "runs", "version": 1}))
    assert unnamed.code == "invalid_message" and "`version` needs `workflow`" in unnamed.message
    first = ops.read({"type": "events", "limit": 3})["events"]
    assert len(first) == 3
    second = ops.read({"type": "events", "after": first[-1]["id"], "limit": 3})["events"]
    assert second and second[0]["id"] > first[-1]["id"]
    change = refused(lambda: ops.read({"type": "trigger", "workflow": "monthly_report"}))
    assert change.code == "invalid_message" and "flow45.in.reports" in change.message
    misplaced = refused(lambda: ops.change("reports", {"type": "runs"}))  # a read sent to the inbox
    assert misplaced.code == "invalid_message" and "flow45.read.reports" in misplaced.message
    inbox = ops.read({"type": "inbox"})["tasks"]
    assert [t["instance"]["id"] for t in ops.read({"type": "inbox", "tasks_from": 1})["tasks"]] == [
        t["instance"]["id"] for t in inbox[1:]]
    assert ops.read({"type": "inbox", "tasks_from": INT64_MAX - m.MAX_PAGE})["tasks"] == []
    past = refused(lambda: ops.read({"type": "inbox", "tasks_from": INT64_MAX}))  # with limit, past 64 bits
    assert past.code == "invalid_message" and "tasks_from" in past.message


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


def test_a_stuck_reader_shows_in_the_heartbeat_while_the_event_stream_beats_on(bridge_env, monkeypatch, tmp_path):
    beats = Heartbeat(tmp_path / "heartbeat.json")
    bridge_env.bridge.reads.heartbeat = bridge_env.bridge.events.heartbeat = beats

    def parts() -> dict:
        return heartbeat.read(beats.path)["parts"] if beats.path.exists() else {}

    _until(lambda: {"bridge.reads", "bridge.events"} <= set(parts()))
    assert heartbeat.problems(heartbeat.read(beats.path), time.time(), max_age=30) == []
    held, release = threading.Event(), threading.Event()

    def stuck(*_args):
        held.set()
        release.wait(30)
        raise NotFound("let go")

    monkeypatch.setattr(reads, "answer_read", stuck)
    threading.Thread(target=_ask_once, args=(bridge_env.url("reports-ops"),), daemon=True).start()
    try:
        assert held.wait(10)
        _until(lambda: parts()["bridge.events"]["at"] > parts()["bridge.reads"]["at"] + 1.5)
        data = heartbeat.read(beats.path)
        stuck_since = data["parts"]["bridge.reads"]["at"]
        found = heartbeat.problems(data, stuck_since + 31, max_age=30)
        assert [line.split(" (")[0] for line in found] == ["bridge.reads: no heartbeat for 31s"]
    finally:
        release.set()
    _until(lambda: parts()["bridge.reads"]["at"] > stuck_since)  # answering again


def _ask_once(url: str) -> None:
    rpc = Rpc(url, timeout=5)
    try:
        rpc.read({"type": "runs"})
    except Flow45Error:  # no answer while the reader is stuck: expected
        pass
    finally:
        rpc.close()


def _until(predicate, timeout: float = 10.0) -> None:
    """Waits for what the bridge's threads do; the timeout only bounds a hang."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)
