"""A bulk plan through the broker reads a page of runs at a time (`run_instances`), each with only the
instances of the task and state asked for, where it read every run whole, one read a run: thousands of
reads for a month of nightly runs. The plan is the one the database gives, for the sender's team alone."""

from __future__ import annotations

import logging

import pytest

from bridge import reads
from bridge.remote import RemoteClient
from flow45 import bulk, store
from flow45 import messages as m
from flow45.client import Client, LocalClient, RunFilter
from flow45.config import load_config
from flow45.errors import NotFound
from flow45.models import TaskInstance
from tests.bridge.test_operators import operator
from tests.client.two_teams import T0

pytestmark = pytest.mark.integration

CONFIG = """team: {team}
types:
  Rows: {{fields: {{rows: integer}}}}
workflows:
  nightly:
    max_active_runs: null
    tasks:
      extract: {{function: extract, output: Rows}}
      load: {{function: load, output: Rows, inputs: {{rows: extract}}}}
      report: {{function: report, output: Rows, inputs: {{rows: load}}}}
"""
NIGHTLY = RunFilter(team="reports", workflow="nightly")


class Counted(RemoteClient):
    """A remote client that keeps the type of each read it sends."""

    def __init__(self, url: str):
        super().__init__(url, timeout=20)
        self.sent: list[str] = []
        self.team  # who we are, asked once for the client's life: not counted
        self.sent.clear()

    def _read(self, message: dict):
        self.sent.append(message["type"])
        return super()._read(message)


class WholeRuns(LocalClient):
    """The plan as it was made before `run_instances`: each run read whole."""

    run_instances = Client.run_instances


def _step(run: int, task: str, fail: bool = False) -> None:
    row = TaskInstance.get((TaskInstance.run == run) & (TaskInstance.task == task))
    grant = store.claim(row.id, row.token, "w", now=T0)
    if fail:
        store.fail(grant.instance, grant.token, "source gone", retryable=False, now=T0)
    else:
        store.submit(grant.instance, grant.token, {"rows": 1}, now=T0)


def nights(tmp_path, count: int, team: str = "reports") -> list[int]:
    """`count` runs of `team`'s nightly, by turns: load failed; load running; extract not taken; load
    failed and the run cancelled."""
    path = tmp_path / f"{team}.yaml"
    if not path.exists():
        path.write_text(CONFIG.format(team=team))
        store.deploy(load_config(path), actor="admin", now=T0)
    runs = []
    for n in range(count):
        run = store.trigger(team, "nightly", actor="cron", now=T0)
        if n % 4 != 2:
            _step(run, "extract")
            if n % 4 == 1:
                row = TaskInstance.get((TaskInstance.run == run) & (TaskInstance.task == "load"))
                store.claim(row.id, row.token, "w", now=T0)
            else:
                _step(run, "load", fail=True)
        if n % 4 == 3:
            store.cancel_run(run, actor="admin", reason="a bad night", now=T0)
        runs.append(run)
    return runs


def test_a_plan_through_the_broker_is_the_databases_for_the_team_alone(bridge_env, tmp_path):
    ours, theirs = nights(tmp_path, 9), nights(tmp_path, 5, team="rival")
    remote = Counted(bridge_env.url("reports-ops"))
    admin, operator_on_db, whole = LocalClient("admin"), LocalClient("ann", team="reports"), WholeRuns("admin")
    asked = [("retry", NIGHTLY, "load", None, []), ("retry", NIGHTLY, None, None, []),
             ("undo", NIGHTLY, "extract", "succeeded", []), ("skip", NIGHTLY, "report", None, []),
             ("retry", RunFilter(team="reports", workflow="nightly", status="failed"), "load", "failed", []),
             ("retry", None, None, None, [ours[0], ours[3], ours[3]]), ("skip", NIGHTLY, None, "pending", [ours[2]])]
    for action, where, task, state, named in asked:
        plans = [bulk.select(client, action, runs=named, where=where, task=task, state=state)
                 for client in (remote, operator_on_db, admin, whole)]
        assert plans[0] == plans[1] == plans[2] == plans[3], (action, where, task, state, named)
        assert {i.run for i in plans[0].items} <= set(ours)
    retry = bulk.select(remote, "retry", where=NIGHTLY, task="load")
    # Loads failed in runs 0, 4 and 8; left out: those of the cancelled runs 3 and 7, and the running
    # (1, 5) and pending (2, 6) ones. All 9 runs chosen.
    assert [i.run for i in retry.items] == [ours[0], ours[4], ours[8]]
    assert (retry.runs, retry.left_out) == (9, 6)
    assert set(remote.sent) == {"run_instances"}

    # Another team's runs are never seen, named or matched, in the plan or in the read itself.
    for client in (remote, operator_on_db):
        with pytest.raises(NotFound) as refused:
            bulk.select(client, "retry", runs=[theirs[0]], task="load")
        assert refused.value.message == f"run {theirs[0]} not found for team reports"
        with pytest.raises(NotFound) as refused:
            bulk.select(client, "retry", where=RunFilter(team="rival", workflow="nightly"), task="load")
        assert refused.value.message == "workflow rival/nightly is not deployed"
    assert remote.run_instances(RunFilter(workflow="nightly"), ids=[*theirs, ours[0]]) == \
        operator_on_db.run_instances(RunFilter(workflow="nightly"), ids=[ours[0]])
    done = operator(bridge_env.url("reports-ops"), "bulk", "retry", "--workflow", "rival/nightly", "--task", "load",
                    "--dry-run", cwd=tmp_path)
    assert done.returncode == 1 and "workflow rival/nightly is not deployed" in done.stderr, done.stderr


def test_a_plan_reads_a_page_of_runs_at_a_time_and_runs_triggered_meanwhile_do_not_join(bridge_env, tmp_path,
                                                                                        monkeypatch):
    monkeypatch.setattr(bulk, "RUNS_PAGE", 10)
    runs = nights(tmp_path, 25)

    class TriggeringMeanwhile(Counted):
        def _read(self, message: dict):
            answer = super()._read(message)
            if self.sent == ["run_instances"]:  # after the first page: a newer run, and its load failed
                nights(tmp_path, 1)
            return answer

    remote = TriggeringMeanwhile(bridge_env.url("reports-ops"))
    plan = bulk.select(remote, "retry", where=NIGHTLY, task="load")
    assert remote.sent == ["run_instances"] * 3  # 25 runs in pages of 10, where 25 runs were 25 reads and 3 pages
    assert plan.runs == 25 and [i.run for i in plan.items] == runs[0:25:4]
    assert plan == bulk.select(LocalClient("ann", team="reports"), "retry", runs=runs, task="load")


def test_a_bridge_older_than_the_read_is_read_run_by_run(bridge_env, tmp_path, monkeypatch, caplog):
    """An older bridge refuses `run_instances` as an unknown read: the client says so once and plans
    as it did before, the same plan."""
    monkeypatch.setattr(reads.m, "READ_TYPES", m.READ_TYPES - {"run_instances"})
    runs = nights(tmp_path, 5)
    remote = Counted(bridge_env.url("reports-ops"))
    with caplog.at_level(logging.WARNING, logger="flow45.client"):
        plans = [bulk.select(remote, "retry", where=NIGHTLY, task="load") for _ in range(2)]
    assert plans[0] == plans[1] == bulk.select(LocalClient("ann", team="reports"), "retry", where=NIGHTLY, task="load")
    assert [i.run for i in plans[0].items] == [runs[0], runs[4]]
    assert remote.sent == ["run_instances"] + (["runs"] + ["run"] * 5) * 2
    assert caplog.text.count("does not know the `run_instances` read") == 1


def test_a_cancel_plan_reads_the_rows_of_a_page_of_runs_at_a_time(bridge_env, tmp_path, monkeypatch):
    monkeypatch.setattr(bulk, "RUNS_PAGE", 10)
    runs, theirs = nights(tmp_path, 25), nights(tmp_path, 1, team="rival")
    remote = Counted(bridge_env.url("reports-ops"))
    named = bulk.select(remote, "cancel", runs=runs)
    assert remote.sent == ["runs"] * 3  # 25 named runs in pages of 10, where they were 25 reads of whole runs
    remote.sent.clear()
    matched = bulk.select(remote, "cancel", where=NIGHTLY)
    assert remote.sent == ["runs"] * 3  # the last page is short: no empty read after it
    assert named == matched == bulk.select(LocalClient("ann", team="reports"), "cancel", runs=runs)
    assert (len(named.items), named.left_out) == (19, 6)  # every fourth run was cancelled already
    with pytest.raises(NotFound, match=f"run {theirs[0]} not found for team reports"):
        bulk.select(remote, "cancel", runs=[runs[0], theirs[0]])
