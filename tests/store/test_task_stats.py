"""`flow45 stats TEAM/WF`: per-task p50/p95 duration and failure rate over a workflow's newest runs,
on both databases."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from flow45 import store
from flow45.cli import main
from flow45.errors import NotFound
from flow45.settings import Settings, use_settings
from flow45.store.task_stats import percentile, workflow_stats
from tests.store.helpers import BLOB, T0, claim, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

CHAIN = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      chain:
        tasks:
          a: {function: fa, output: Blob, retries: 1, retry_delay: 0s}
          b: {function: fb, output: Blob, inputs: {src: a}}
"""


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def work(run: int, task: str, start: float, took: float, fail: bool = False) -> None:
    grant = claim(run, task, now=at(start))
    if fail:
        store.fail(grant.instance, grant.token, "boom", retryable=True, now=at(start + took))
    else:
        store.submit(grant.instance, grant.token, BLOB, now=at(start + took))


def four_runs(tmp_path) -> list[int]:
    """a takes 10, 20, 30, 40 s (the third run's a fails once first); b takes 5 s; the last run is still going."""
    deploy_text(tmp_path, CHAIN)
    runs = []
    for n in range(4):
        base = n * 1000
        run = store.trigger("acme", "chain", actor="ann", now=at(base))
        if n == 2:
            work(run, "a", base, 3, fail=True)
        work(run, "a", base + 5, 10 * (n + 1))
        if n < 3:
            work(run, "b", base + 100, 5)
        runs.append(run)
    return runs


def test_per_task_percentiles_and_failure_rate_over_the_newest_runs(tmp_path):
    four_runs(tmp_path)
    stats = workflow_stats("acme", "chain", runs=50)
    assert (stats.runs, stats.finished, stats.failed, stats.since) == (4, 3, 0, T0)
    a, b = stats.tasks
    assert (a.task, a.attempts, a.failed, a.failure_rate, a.p50, a.p95) == ("a", 5, 1, 0.2, 20.0, 40.0)
    assert (b.task, b.attempts, b.failed, b.failure_rate, b.p50, b.p95) == ("b", 3, 0, 0.0, 5.0, 5.0)
    assert (stats.run_p50, stats.run_p95) == (105.0, 105.0)  # start to finish of each succeeded run

    newest_two = workflow_stats("acme", "chain", runs=2)
    assert newest_two.runs == 2 and newest_two.since == at(2000)
    assert [(t.task, t.attempts, t.failed, t.p50) for t in newest_two.tasks] == [("a", 3, 1, 30.0), ("b", 1, 0, 5.0)]


def test_a_workflow_without_runs_has_nothing_to_measure_and_a_missing_one_is_named(tmp_path):
    deploy_text(tmp_path, CHAIN)
    stats = workflow_stats("acme", "chain")
    assert stats.runs == 0 and [(t.task, t.attempts, t.failure_rate, t.p50) for t in stats.tasks] == [
        ("a", 0, None, None), ("b", 0, None, None)]
    with pytest.raises(NotFound, match="workflow acme/chains is not deployed"):
        workflow_stats("acme", "chains")


def test_the_stats_command(tmp_path, db_url, capsys):
    four_runs(tmp_path)
    use_settings(Settings(database_url=db_url))
    assert main(["stats", "acme/chain"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == ("acme/chain: the newest 4 run(s) since 2026-03-01 12:00:00, 3 finished, 0 failed; "
                        "a succeeded run took p50 1m45s, p95 1m45s")
    assert lines[2].split() == ["a", "5", "1", "20%", "20s", "40s"]
    assert main(["stats", "acme/chain", "--runs", "1", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["tasks"][0]["p50"] == 40.0
    with pytest.raises(SystemExit) as exit_:
        main(["stats", "acme/chain", "--runs", "501"])
    assert exit_.value.code == 2 and "--runs is at most 500, got 501" in capsys.readouterr().err


def test_percentile_is_the_nearest_rank():
    assert [percentile(list(range(1, 101)), p) for p in (50, 95, 100)] == [50, 95, 100]
    assert percentile([7.0], 95) == 7.0 and percentile([], 50) is None
