"""`flow45 wait` and `flow45 callback` with nothing but an operator's broker URL: the same exit codes
and words as on the database, for the operator's own team."""

from __future__ import annotations

import pytest

from flow45 import store
from tests.bridge.test_operators import operator
from tests.client.two_teams import deploy_two_teams

pytestmark = pytest.mark.integration


def test_wait_and_callback_through_the_broker(bridge_env, tmp_path):
    teams = deploy_two_teams(tmp_path)
    ours, theirs = teams["reports"], teams["rival"]
    ops = bridge_env.url("reports-ops")
    waiting = operator(ops, "wait", str(ours.run), "--timeout", "0.5", cwd=tmp_path)
    assert (waiting.returncode, waiting.stderr) == (5, f"flow45: run {ours.run} is still running after 0.5s\n")
    store.cancel_run(ours.run, actor="admin")
    done = operator(ops, "wait", str(ours.run), cwd=tmp_path)
    assert (done.returncode, done.stdout) == (4, f"run {ours.run} cancelled\n")
    other = operator(ops, "wait", str(theirs.run), cwd=tmp_path)
    assert (other.returncode, other.stderr) == (1, f"flow45: run {theirs.run} not found for team reports\n")
    unknown = operator(ops, "callback", "fail", "k" * 43, "--error", "late", cwd=tmp_path)
    assert (unknown.returncode, unknown.stderr) == (
        1, "flow45: no parked task instance has this callback key for team reports\n")
