"""The runs screen's cells stay within their columns without cutting what they say: a progress count
cut short read 0/300 as 0/30."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45.views import RunView
from tui.screens.runs import COLUMNS, run_cells

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
