"""`flow45 callback` and `flow45 wait` as a script uses them, on SQLite and on PostgreSQL."""

from __future__ import annotations

import json

import pytest

from flow45 import store
from flow45.cli import flows
from tests.store.helpers import BLOB, DIAMOND, claim, deploy_text, instance


def _finish(run: int, outcome: str) -> None:
    """Drive a DIAMOND run to `outcome`: a fails for good, or every task succeeds."""
    if outcome == "cancelled":
        store.cancel_run(run, actor="ann")
        return
    for task in ("a", "b", "c", "d"):
        grant = claim(run, task)
        if outcome == "failed":
            store.fail(grant.instance, grant.token, "boom", retryable=False)
            return
        store.submit(grant.instance, grant.token, BLOB)


@pytest.mark.parametrize("outcome, code", [("succeeded", 0), ("failed", 3), ("cancelled", 4)])
def test_wait_blocks_until_the_run_finishes_and_exits_by_its_state(flow45, tmp_path, monkeypatch, outcome, code):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann")
    pauses = []

    def pause(seconds):  # the run finishes while `wait` sleeps for the second time
        pauses.append(seconds)
        if len(pauses) == 2:
            _finish(run, outcome)

    monkeypatch.setattr(flows, "_pause", pause)
    assert flow45("wait", str(run)) == (code, f"run {run} {outcome}\n", "")
    assert len(pauses) == 2 and pauses[1] > pauses[0], "looks further apart each time"


def test_wait_times_out_and_refuses_a_missing_run_or_a_bad_timeout_without_a_traceback(flow45, tmp_path, monkeypatch):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann")
    monkeypatch.setattr(flows, "_pause", lambda seconds: None)
    monkeypatch.setattr(flows.time, "monotonic", iter(range(0, 1000, 10)).__next__)  # 10 s per look
    code, out, err = flow45("wait", str(run), "--timeout", "25")
    assert (code, out, err) == (5, "", f"flow45: run {run} is still running after 25s\n")
    code, _, err = flow45("wait", "4242")
    assert code == 1 and err == "flow45: run 4242 not found\n"
    code, _, err = flow45("wait", "9223372036854775807")  # the largest id: the one after it is no id
    assert code == 1 and err == "flow45: run 9223372036854775807 not found\n"
    code, _, err = flow45("wait", str(run), "--timeout", "soon")
    assert code == 2 and "expected a number of seconds, got 'soon'" in err and "Traceback" not in err


def test_trigger_wait_starts_the_run_then_exits_as_wait_does(flow45, tmp_path, monkeypatch):
    deploy_text(tmp_path, DIAMOND)
    pauses = []

    def pause(seconds):  # the run fails while the trigger waits
        pauses.append(seconds)
        _finish(store.list_runs()[0].id, "failed")

    monkeypatch.setattr(flows, "_pause", pause)
    code, out, err = flow45("trigger", "acme/diamond", "--wait")
    [run] = store.list_runs()
    assert (code, out, err) == (3, f"run {run.id} of acme/diamond v1: running\nrun {run.id} failed\n", "")
    monkeypatch.setattr(flows, "_pause", lambda seconds: None)
    monkeypatch.setattr(flows.time, "monotonic", iter(range(0, 1000, 10)).__next__)  # 10 s per look
    code, out, err = flow45("trigger", "acme/diamond", "--wait", "--timeout", "15", "--json")
    assert (code, json.loads(out)["status"]) == (5, "running")
    assert err == f"flow45: run {json.loads(out)['run']} is still running after 15s\n"
    code, _, err = flow45("trigger", "acme/diamond", "--timeout", "15")
    assert code == 2 and "--timeout is for --wait" in err
    assert len(store.list_runs()) == 2, "a refused trigger starts no run"


def test_callback_complete_and_fail_by_key(flow45, tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann")
    grant = claim(run, "a")
    key = store.park(grant.instance, grant.token).callback_key
    code, _, err = flow45("callback", "complete", key, "--output", '{"uri": "x"}')
    assert code == 1 and "output is not a valid Blob: output.size: Field required" in err
    code, out, _ = flow45("callback", "complete", key, "--output", json.dumps(BLOB))
    assert (code, out) == (0, f"instance {grant.instance} succeeded\n")
    assert flow45("callback", "complete", key, "--output", json.dumps(BLOB))[2] == (
        "flow45: no parked task instance has this callback key\n")

    grant = claim(run, "b")
    key = store.park(grant.instance, grant.token).callback_key
    code, out, _ = flow45("callback", "fail", key, "--error", "service refused", "--no-retry")
    assert (code, out) == (0, f"instance {grant.instance} failed\n")
    assert instance(run, "b").state == "failed"


def test_a_second_trigger_for_a_logical_time_is_refused_naming_the_run_that_has_it(flow45, tmp_path, monkeypatch):
    from flow45.errors import RunExists
    from flow45.store import runs

    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 4"))
    first = flow45("trigger", "acme/diamond", "--logical-time", "2028-02-29T23:30:00+01:00", "--json")
    run = json.loads(first[1])["run"]
    code, out, err = flow45("trigger", "acme/diamond", "--logical-time", "2028-02-29T22:30:00Z")
    assert (code, out) == (1, "")
    assert err == (f"flow45: acme/diamond has a run for 2028-02-29 22:30:00Z already: run {run} (running); "
                   "undo its tasks to run it again\n")
    assert flow45("trigger", "acme/diamond", "--logical-time", "2028-03-01T00:00:00Z")[0] == 0  # another time is fine

    monkeypatch.setattr(runs, "_refuse_taken", lambda *args: None)  # as if another trigger committed meanwhile
    with pytest.raises(RunExists, match=r"has a run for 2028-02-29 22:30:00Z already \(made just now\)"):
        store.trigger("acme", "diamond", actor="ann", logical_time=store.get_run(run).logical_time)
    assert len(store.list_runs()) == 2
