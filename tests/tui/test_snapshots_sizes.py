"""The main screens at 80x24, 120x40 and 180x50 (pytest-textual-snapshot): what matters is on screen at
every size. After a deliberate change of the look: `--snapshot-update`, then review the SVGs."""

from __future__ import annotations

import pytest

from tests.tui.conftest import OPERATOR, wait_until
from tests.tui.test_snapshots import pinned_now, scene, still  # noqa: F401  (fixtures)
from tui.app import Dashboard
from tui.screens.instance import InstanceScreen
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen

pytest.importorskip("pytest_textual_snapshot")

SIZES = [(80, 24), (120, 40), (180, 50)]


def snap_at(snap_compare, url: str, size: tuple[int, int], steps) -> bool:
    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await steps(pilot)
        await pilot.pause(0.2)
        still(pilot)

    return snap_compare(Dashboard(OPERATOR, database_url=url), terminal_size=size, run_before=run_before)


async def open_nightly(pilot) -> None:
    app = pilot.app
    await pilot.press("enter")  # the newest run: nightly_sales, a load running
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_runs(snap_compare, scene, size):  # noqa: F811
    async def steps(pilot):
        pass

    assert snap_at(snap_compare, scene[0], size, steps)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_run_with_timeline(snap_compare, scene, size):  # noqa: F811
    async def steps(pilot):
        await open_nightly(pilot)
        await pilot.press("g")

    assert snap_at(snap_compare, scene[0], size, steps)


@pytest.mark.parametrize("size", SIZES, ids=lambda s: f"{s[0]}x{s[1]}")
def test_instance(snap_compare, scene, size):  # noqa: F811
    async def steps(pilot):
        app = pilot.app
        await open_nightly(pilot)
        await pilot.press("enter")  # load_emea, running with progress
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)

    assert snap_at(snap_compare, scene[0], size, steps)


async def test_at_80x24_each_dag_row_keeps_state_progress_and_worker(scene):  # noqa: F811
    from tui.widgets.dag import DagView

    app = Dashboard(OPERATOR, database_url=scene[0])
    async with app.run_test(size=(80, 24)) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await open_nightly(pilot)
        dag = app.screen.query_one(DagView)
        await wait_until(pilot, lambda: dag.size.width > 0)
        await pilot.pause(0.1)
        shown = [dag.render_line(y).text for y in range(dag.size.height)]
        emea = next(line for line in shown if "load_emea" in line)
        assert all(words in emea for words in ("running", "#1", "loader-1", "40%", "1h49m")), emea
        assert len(emea.rstrip()) <= dag.size.width
