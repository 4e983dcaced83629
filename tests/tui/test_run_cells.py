"""The dashboard's tables stay within their columns without cutting what they say: a progress count
cut short read 0/300 as 0/30, and a run id 12345678 as 123456."""

from __future__ import annotations

import datetime as dt

import pytest
from rich.text import Text
from textual.widgets import DataTable
from textual.widgets.data_table import ColumnKey

from flow45.db import database
from flow45.views import RunView
from tests.tui.conftest import REVIEWER, instance, monthly_run, wait_until
from tui.app import Dashboard
from tui.screens.inbox import InboxScreen
from tui.screens.runs import COLUMNS, RunsScreen, run_cells

T0 = dt.datetime(2026, 3, 1, 6)


def run_of(counts: dict[str, int]) -> RunView:
    return RunView(id=1, team="big", workflow="wide", version=1, status="running", trigger="manual",
                   triggered_by="ann", params={}, logical_time=None, created_at=T0, started_at=T0,
                   finished_at=None, counts=counts)


@pytest.mark.parametrize("layout", [0, 1, 2])
@pytest.mark.parametrize("counts, shown", [
    ({"pending": 4}, "0/4"),
    ({"available": 1, "pending": 299}, "0/300"),
    ({"succeeded": 1234, "pending": 8766}, "1234/10000"),
])
def test_the_progress_cell_keeps_its_whole_count_within_the_column(layout, counts, shown):
    width = dict((key, widths[layout]) for key, _, widths in COLUMNS)["progress"]
    cell = run_cells(run_of(counts), layout)[[key for key, _, _ in COLUMNS].index("progress")]
    assert cell.plain.endswith(" " + shown) and cell.cell_len <= width


async def test_run_ids_are_shown_whole_however_long_marked_or_not(tui_db):
    """Columns sized for five or six digits cut run 12345678 to 123456: two runs read as one, and the
    id an operator copies names another run."""
    first = monthly_run(("extract", "render"))  # its approval waits in the inbox
    database.execute_sql(
        "INSERT INTO run (id, team, workflow_id, version_id, status, params, trigger, triggered_by, created_at, "
        "updated_at) SELECT 12345677, team, workflow_id, version_id, 'cancelled', params, trigger, triggered_by, "
        "created_at, updated_at FROM run WHERE id = ?", (first,))
    big = monthly_run(("extract", "render"))
    assert big == 12_345_678
    app = Dashboard(REVIEWER, database_url=tui_db)
    async with app.run_test(size=(100, 30)) as pilot:  # the narrow layout: the run column's least width is 5
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        runs, table = app.screen, app.screen.query_one("#runs-table", DataTable)
        assert runs.loaded == [big, 12_345_677, first]
        assert _shown(table, str(big), "run") == str(big) and _shown(table, "12345677", "run") == "12345677"
        await pilot.press("m")  # the cursor is on the newest run
        await wait_until(pilot, lambda: big in runs.marked)
        assert _shown(table, str(big), "run") == f"✓ {big}"
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and len(app.screen.rows) == 2)
        inbox = app.screen.query_one("#inbox-table", DataTable)
        approve = str(instance(big, "approve").id)
        assert _shown(inbox, approve, "run") == str(big)


def _shown(table: DataTable, row: str, column: str) -> str:
    """The cell's text as far as its column shows it."""
    cell = table.get_cell(row, column)
    text = cell.plain if isinstance(cell, Text) else str(cell)
    return text[:table.columns[ColumnKey(column)].width].strip()


def test_a_cancelled_runs_summary_says_who_cancelled_it_and_why():
    from dataclasses import replace

    from tui.screens.run import run_summary

    run = replace(run_of({"cancelled": 4}), status="cancelled", finished_at=T0, cancelled_by="flow45-scheduler",
                  cancel_reason="timed out: running for 2h, longer than its workflow's timeout of 2h")
    assert ("\ncancelled by flow45-scheduler: timed out: running for 2h, longer than its workflow's timeout of 2h"
            in run_summary(run).plain)
    assert "cancelled by" not in run_summary(run_of({"pending": 4})).plain
