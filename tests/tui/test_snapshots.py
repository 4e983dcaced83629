"""Snapshots of the main screens (pytest-textual-snapshot). Deterministic: fixed times, fixed size.

After a deliberate change of the look: `pytest tests/tui/test_snapshots.py --snapshot-update`, then
review the SVGs under `__snapshots__/` before committing them.
"""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine
from textual.widgets import Input, Select

from flow45 import store
from tests.tui.conftest import OPERATOR, REVIEWER, SIZE, T0, complete, instance, monthly_run, wait_until
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.instance import InstanceScreen
from tui.screens.modals import UndoModal
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen

pytest.importorskip("pytest_textual_snapshot")


def minutes(n: int) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


@pytest.fixture(autouse=True)
def pinned_now():
    """Run times still going are measured up to now: the same now in every snapshot."""
    with time_machine.travel(dt.datetime(2026, 3, 1, 14, 0, 30, tzinfo=dt.timezone.utc), tick=False):
        yield


@pytest.fixture
def scene(tui_db):
    """A finished monthly run, one waiting for approval, and a nightly run with a load in progress."""
    done = monthly_run(("extract", "render"))
    store.submit_human(instance(done, "approve").id, {"approved": True, "reviewer": "kim"}, actor=REVIEWER,
                       now=minutes(5))
    complete(done, "publish", {"uri": "s3://published/2026-01.pdf", "pages": 12}, now=minutes(6))
    waiting = monthly_run(("extract", "render"))
    render = instance(waiting, "render")
    store.undo(render.id, "wrong logo", actor="ann", now=minutes(7))
    complete(waiting, "render", {"uri": "s3://reports/2026-02-v2.pdf", "pages": 13}, worker="w2", now=minutes(8))
    nightly = store.trigger("reports", "nightly_sales", None, actor="scheduler", now=minutes(10),
                            trigger_kind="schedule", logical_time=T0)
    emea = instance(nightly, "load_emea")
    grant = store.claim(emea.id, emea.token, "loader-1", now=minutes(11))
    store.progress(emea.id, grant.token, 40, "rows 400/1000", now=minutes(12))
    complete(nightly, "load_apac", {"region": "apac", "uri": "s3://apac", "rows": 10}, now=minutes(12))
    return tui_db, {"done": done, "waiting": waiting, "nightly": nightly}


def still(pilot) -> None:
    """No blinking cursor in a snapshot."""
    for field in pilot.app.screen.query(Input):
        field.cursor_blink = False


def snap(snap_compare, url: str, steps) -> bool:
    async def run_before(pilot) -> None:
        app = pilot.app
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await steps(pilot)
        await pilot.pause(0.2)
        still(pilot)

    return snap_compare(Dashboard(OPERATOR, database_url=url), terminal_size=SIZE, run_before=run_before)


def test_runs_screen(snap_compare, scene):
    async def steps(pilot):
        pass

    assert snap(snap_compare, scene[0], steps)


def test_run_screen_dag(snap_compare, scene):
    async def steps(pilot):
        app = pilot.app
        await pilot.press("enter")  # the newest run: nightly_sales
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run)
        await pilot.press("down", "down", "down")  # summarize: ▲ its three loads, ▼ notify

    assert snap(snap_compare, scene[0], steps)


def test_instance_screen_with_an_archived_attempt(snap_compare, scene):
    async def steps(pilot):
        app = pilot.app
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run)
        await pilot.press("down", "enter")  # render
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)

    assert snap(snap_compare, scene[0], steps)


def test_undo_modal(snap_compare, scene):
    async def steps(pilot):
        app = pilot.app
        await pilot.press("down", "down", "enter")  # the finished monthly run
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run)
        await pilot.press("down", "u")
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan)

    assert snap(snap_compare, scene[0], steps)


def test_human_task_form_with_a_field_error(snap_compare, scene):
    async def steps(pilot):
        app = pilot.app
        await pilot.press("i", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
        app.screen.query_one("#field-approved", Select).value = False
        await pilot.press("ctrl+s")  # reviewer missing

    assert snap(snap_compare, scene[0], steps)


def test_help_screen(snap_compare, scene):
    async def steps(pilot):
        await pilot.press("question_mark")

    assert snap(snap_compare, scene[0], steps)
