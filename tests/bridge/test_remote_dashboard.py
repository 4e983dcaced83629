"""The dashboard of a team's operator with only a broker URL: through the bridge, one team, live from
the team's event stream (no polling)."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Input, Select

from bridge.remote import RemoteClient
from flow45 import store
from flow45.models import Event, TaskInstance
from tests.client.two_teams import T0, deploy_two_teams
from tests.tui.conftest import SIZE, type_text, wait_until
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.inbox import InboxScreen
from tui.screens.modals import UndoModal
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.dag import DagView
from tui.widgets.ledger import Ledger

pytestmark = pytest.mark.integration


def test_a_team_operator_sees_its_team_and_acts_as_its_broker_user(bridge_env, tmp_path):
    asyncio.run(_operate(bridge_env, tmp_path))


async def _operate(bridge_env, tmp_path) -> None:
    teams = deploy_two_teams(tmp_path)
    ours = teams["reports"]
    client = RemoteClient(bridge_env.url("reports-ops"), timeout=10)
    assert bridge_env.bridge.events.ready.wait(10)
    app = Dashboard("whoever", client=client, poll_interval=3600)  # live only through the team's event stream
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=10)
        runs = app.screen
        assert runs.loaded == [ours.run] and app.sub_title == "operator reports-ops"
        assert runs.counts == {"running": 1}

        # a run started elsewhere shows up live; another team's does not
        store.trigger("rival", "nightly_sales", None, actor="cron", now=T0)
        new = store.trigger("reports", "nightly_sales", None, actor="cron", now=T0)
        await wait_until(pilot, lambda: runs.loaded == [new, ours.run], timeout=10)

        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.rows, timeout=10)
        assert [item.instance.id for item in app.screen.rows] == [ours.approve]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload, timeout=10)
        form = app.screen
        form.query_one("#field-reviewer", Input).focus()
        await type_text(pilot, "kim")
        form.query_one("#field-approved", Select).value = True
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and not app.screen.rows, timeout=10)

        # the run's screen (its version and newest events read through the bridge), and an undo from it
        await pilot.press("escape", "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None, timeout=10)
        assert app.screen.run.id == ours.run and app.screen.query_one(Ledger).last_id
        await pilot.press("down", "u")
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan is not None, timeout=10)
        assert [a.task for a in app.screen.plan.affected] == ["render", "approve", "publish"]
        await type_text(pilot, "wrong logo")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen)
                         and {v.task: v.state for v in app.screen.query_one(DagView).instances}["render"] == "available",
                         timeout=10)

    undo = Event.get(Event.kind == "undo")
    assert undo.actor == "reports-ops" and undo.detail["reason"] == "wrong logo"
    done = store.get_instance(ours.approve)
    assert done.state == "pending" and done.attempts[-1].worker == "reports-ops"  # undone since
    assert {e.actor for e in Event.select().where(Event.instance == ours.approve, Event.kind == "submit")} == {"reports-ops"}
    assert TaskInstance.get_by_id(teams["rival"].approve).state == "available"
