"""Two teams with the same workflows in one store: `reports` and `rival`, each with a monthly run
whose approval (a human task) is available."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from flow45 import store
from flow45.config import load_config
from flow45.models import TaskInstance
from tests.conftest import EXAMPLES

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)
OUTPUTS = {"extract": {"uri": "s3://sales/2026-02.parquet", "rows": 48213},
           "render": {"uri": "s3://reports/2026-02.pdf", "pages": 12}}


@dataclass(frozen=True)
class TeamRun:
    run: int
    extract: int  # instance ids
    approve: int


def _instance(run_id: int, task: str) -> TaskInstance:
    return TaskInstance.get((TaskInstance.run == run_id) & (TaskInstance.task == task))


def _monthly_run(team: str) -> TeamRun:
    run = store.trigger(team, "monthly_report", {"month": "2026-02"}, actor=f"{team}-admin", now=T0)
    for task in ("extract", "render"):
        row = _instance(run, task)
        grant = store.claim(row.id, row.token, f"{team}-worker", now=T0)
        store.submit(grant.instance, grant.token, OUTPUTS[task], now=T0)
    return TeamRun(run, _instance(run, "extract").id, _instance(run, "approve").id)


def finish_nightly(team: str = "reports") -> tuple[int, int]:
    """A nightly_sales run of the example done (its 06:00 timer fires at once: T0 is past it), and the
    monthly_report run its success started (connected): (nightly, report)."""
    run = store.trigger(team, "nightly_sales", actor="cron", now=T0)
    summary = {"uri": "s3://sales/summary", "total_rows": 30, "partitions": [], "month": "2026-03"}
    for task, output in [*((f"load_{r}", {"region": r, "uri": f"s3://sales/{r}", "rows": 10})
                           for r in ("emea", "americas", "apac")), ("summarize", summary)]:
        row = _instance(run, task)
        grant = store.claim(row.id, row.token, f"{team}-worker", now=T0)
        store.submit(grant.instance, grant.token, output, now=T0)
    store.fire_due_timers(T0)
    row = _instance(run, "notify")
    grant = store.claim(row.id, row.token, f"{team}-worker", now=T0)
    store.submit(grant.instance, grant.token, {"uri": "s3://mail/1", "pages": 1}, now=T0)
    [report] = [r.id for r in store.list_runs(team=team) if r.trigger == "connected" and r.status == "running"]
    return run, report


def deploy_two_teams(folder: Path) -> dict[str, TeamRun]:
    """Deploy the example config as `reports` and as `rival`; one monthly run each."""
    text = (EXAMPLES / "reports.yaml").read_text()
    rival = folder / "rival.yaml"
    rival.write_text(text.replace("team: reports", "team: rival").replace("reports/nightly_sales", "rival/nightly_sales")
                     .replace("reports-ops", "rival-ops"))  # its reviewers are its own operators
    store.deploy(load_config(EXAMPLES) + load_config(rival), actor="admin", now=T0)
    return {team: _monthly_run(team) for team in ("reports", "rival")}
