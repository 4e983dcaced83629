"""The workflows screen: schedules and their next runs, an overdue one in red, and a workflow's tools
(pause, backfill, its runs) before it has any run."""

from __future__ import annotations

import datetime as dt

import time_machine
from textual.widgets import DataTable, Static

from flow45 import scheduler, store
from flow45.config import load_config
from tests.conftest import EXAMPLES
from tests.tui.conftest import OPERATOR, SIZE, wait_until
from tests.tui.test_dashboard import text_of
from tui.app import Dashboard
from tui.screens.runs import RunsScreen
from tui.screens.workflow_tools import BackfillModal, PauseModal
from tui.screens.versions import VersionsScreen
from tui.screens.workflows import WorkflowsScreen

# The example config was deployed at 2026-03-01 12:00 UTC; nightly_sales's tick of 02:30 UTC on the
# 2nd came half an hour ago, and no scheduler has made its run.
NOW = dt.datetime(2026, 3, 2, 3, 0)


def rows(app: Dashboard) -> dict[str, list[str]]:
    table = app.screen.query_one("#workflows-table", DataTable)
    return {str(key.value): [str(c) for c in table.get_row(key)] for key in table.rows}


async def test_next_runs_an_overdue_schedule_and_a_workflows_tools_before_its_first_run(tui_db, tmp_path):
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        app = Dashboard(OPERATOR, database_url=tui_db)
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
            await pilot.press("w")
            await wait_until(pilot, lambda: isinstance(app.screen, WorkflowsScreen) and app.screen.rows)
            shown = rows(app)
            # 06:00 in Amsterdam on 1 April is 04:00 UTC: the clocks went forward on 29 March
            assert shown["reports/monthly_report"][3] == "2026-04-01 04:00:00 (in 30d01h)"
            assert shown["reports/nightly_sales"][3] == "2026-03-02 02:30:00 (overdue 30m00s: is a scheduler running?)"
            summary = app.screen.query_one("#workflows-summary", Static)
            assert text_of(summary) == "2 workflow(s), 2 scheduled; 1 overdue: is a scheduler running?"

            await pilot.press("p")  # on monthly_report, which has no run yet
            await wait_until(pilot, lambda: isinstance(app.screen, PauseModal))
            assert app.screen.title_text == "Pause reports/monthly_report"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, WorkflowsScreen)
                             and rows(app)["reports/monthly_report"][3] == "paused, triggers queued")
            assert {w.name: w.paused for w in store.list_workflows("reports")}["monthly_report"] == "queue"
            await pilot.press("b")
            await wait_until(pilot, lambda: isinstance(app.screen, BackfillModal))
            assert app.screen.title_text == "Backfill reports/monthly_report"
            await pilot.press("escape")
            changed = (EXAMPLES / "reports.yaml").read_text().replace("max_active_runs: 2", "max_active_runs: 1")
            (tmp_path / "reports.yaml").write_text(changed)
            store.deploy(load_config(tmp_path / "reports.yaml"), actor="kim", now=NOW)
            await pilot.press("v")
            await wait_until(pilot, lambda: isinstance(app.screen, VersionsScreen))
            listed = text_of(app.screen.query_one("#versions-list", Static)).splitlines()
            assert listed[0].startswith("v2  (current)  deployed 2026-03-02 03:00:00 by kim  runs 0  hash ")
            assert listed[1:3] == ["  max_active_runs: 2 -> 1", listed[2]] and listed[2].startswith("v1  deployed")
            assert listed[3] == "  the first version"
            await pilot.press("escape")

            scheduler.tick(NOW)  # the scheduler makes the overdue run: the screen follows the ledger
            await wait_until(pilot, lambda: isinstance(app.screen, WorkflowsScreen) and rows(app)[
                "reports/nightly_sales"][3] == "2026-03-03 02:30:00 (in 23h30m)")
            assert text_of(summary) == "2 workflow(s), 2 scheduled, 1 paused"
            [made] = [run.id for run in store.list_runs(team="reports", workflow="nightly_sales")]
            assert rows(app)["reports/nightly_sales"][4] == f"{made} running (0s ago)"
            assert rows(app)["reports/monthly_report"][4] == "-"
            store.cancel_run(made, actor="ops", reason="wrong day", now=NOW)  # its row follows the run
            await wait_until(pilot, lambda: rows(app)["reports/nightly_sales"][4] == f"{made} cancelled (0s ago)")

            await pilot.press("down", "enter")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            assert (app.screen.filter.team, app.screen.filter.workflow) == ("reports", "nightly_sales")
            assert [app.screen.views[run].logical_time for run in app.screen.loaded] == [dt.datetime(2026, 3, 2, 2, 30)]
