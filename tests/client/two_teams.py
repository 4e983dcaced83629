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


def deploy_two_teams(folder: Path) -> dict[str, TeamRun]:
    """Deploy the example config as `reports` and as `rival`; one monthly run each."""
    text = (EXAMPLES / "reports.yaml").read_text()
    rival = folder / "rival.yaml"
    rival.write_text(text.replace("team: reports", "team: rival").replace("reports/nightly_sales", "rival/nightly_sales"))
    store.deploy(load_config(EXAMPLES) + load_config(rival), actor="admin", now=T0)
    return {team: _monthly_run(team) for team in ("reports", "rival")}
