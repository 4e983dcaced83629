"""The dashboard of a team's operator with only a broker URL: through the bridge, one team, live from
the team's event stream (no polling). One session goes through every screen and action: trigger,
human inbox and form, a run, an instance, undo (its dry run, then for real), hold, release, skip,
retry and cancel; each change shows up from the event stream and is the broker user's in the ledger."""

from __future__ import annotations

import asyncio

import pytest
from textual.widgets import Input, Select

from bridge.remote import RemoteClient
from flow45 import store
from flow45.client import LocalClient
from flow45.models import Event, Run, TaskInstance
from tests.client.two_teams import OUTPUTS, T0, deploy_two_teams
from tests.tui.conftest import SIZE, type_text, wait_until
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.inbox import InboxScreen
from tui.screens.instance import InstanceScreen
from tui.screens.modals import CancelRunModal, HoldModal, ReleaseModal, RetryModal, SkipModal, UndoModal
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.screens.trigger import TriggerModal
from tui.widgets.dag import DagView
from tui.widgets.ledger import Ledger

pytestmark = pytest.mark.integration


def test_a_team_operator_sees_its_team_and_acts_as_its_broker_user(bridge_env, tmp_path):
    asyncio.run(_operate(bridge_env, tmp_path))


async def _operate(bridge_env, tmp_path) -> None:
    teams = deploy_two_teams(tmp_path)
    ours = teams["reports"]
    client = RemoteClient(bridge_env.url("reports-ops"))
    assert bridge_env.bridge.events.ready.wait(10)
    app = Dashboard("whoever", client=client, poll_interval=3600)  # live only through the team's event stream
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        runs = app.screen
        assert runs.loaded == [ours.run] and app.sub_title == "operator reports-ops"
        assert runs.counts == {"running": 1}
        local = LocalClient("admin", team="reports")  # what a dashboard on the database would show
        assert client.runs() == local.runs() and client.run(ours.run) == local.run(ours.run)  # waiting for, times
        assert client.instance(ours.approve) == local.instance(ours.approve)

        # a run started elsewhere shows up live; another team's does not
        store.trigger("rival", "nightly_sales", None, actor="cron", now=T0)
        new = store.trigger("reports", "nightly_sales", None, actor="cron", now=T0)
        await wait_until(pilot, lambda: runs.loaded == [new, ours.run])

        # the trigger dialog: a second monthly run, triggered by the broker user
        await pilot.press("t")
        await wait_until(pilot, lambda: isinstance(app.screen, TriggerModal) and app.screen.is_mounted)
        app.screen.query_one("#trigger-workflow", Select).value = "reports/monthly_report"
        await pilot.pause()
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and len(runs.loaded) == 3)
        triggered = runs.loaded[0]
        assert Run.get_by_id(triggered).triggered_by == "reports-ops"

        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.rows)
        assert [item.instance.id for item in app.screen.rows] == [ours.approve]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
        form = app.screen
        form.query_one("#field-reviewer", Input).focus()
        await type_text(pilot, "kim")
        form.query_one("#field-approved", Select).value = True
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and not app.screen.rows)

        # retry, then cancel, on the triggered run, whose extract a worker reports failed
        extract = TaskInstance.get((TaskInstance.run == triggered) & (TaskInstance.task == "extract"))
        store.fail(extract.id, store.claim(extract.id, extract.token, "reports-worker").token, "disk full",
                   retryable=False)
        await pilot.press("escape", "home", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None
                         and _states(app.screen).get("extract") == "failed")
        assert app.screen.run.id == triggered
        await _confirm(pilot, "r", RetryModal)
        await wait_until(pilot, lambda: _states(app.screen)["extract"] == "available")
        await _confirm(pilot, "c", CancelRunModal)
        await wait_until(pilot, lambda: app.screen.run.status == "cancelled")
        await pilot.press("left_square_bracket")  # the run as it was one event earlier, rebuilt by the bridge
        await wait_until(pilot, lambda: (app.screen.dag.border_title or "").startswith("as it was"))

        # our first run's screen (its version and newest events read through the bridge), and an undo from it
        await pilot.press("escape", "home", "down", "down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None
                         and app.screen.run.id == ours.run)
        assert app.screen.query_one(Ledger).last_id
        await pilot.press("down", "u")
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan is not None)
        assert [a.task for a in app.screen.plan.affected] == ["render", "approve", "publish"]  # the dry run
        await type_text(pilot, "wrong logo")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen)
                         and _states(app.screen)["render"] == "available")

        # hold and release render, then open it and skip it from its own screen
        await _confirm(pilot, "h", HoldModal)
        await wait_until(pilot, lambda: _states(app.screen)["render"] == "held")
        await _confirm(pilot, "l", ReleaseModal)
        await wait_until(pilot, lambda: _states(app.screen)["render"] == "available")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)
        assert app.screen.payload.inputs.by_param == {"sales": ("extract", "succeeded", OUTPUTS["extract"])}
        await pilot.press("s")
        await wait_until(pilot, lambda: isinstance(app.screen, SkipModal))
        await type_text(pilot, "made by hand")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen)
                         and app.screen.payload.instance.state == "skipped")

    actors = {e.kind: e.actor for e in Event.select().where(Event.team == "reports", Event.actor != "cron")
              .order_by(Event.id) if e.kind in ("trigger", "undo", "hold", "release", "skip", "retry", "cancel")}
    assert actors == dict.fromkeys(("trigger", "undo", "hold", "release", "skip", "retry", "cancel"), "reports-ops")
    undo = Event.get((Event.kind == "undo") & Event.to_state.is_null())  # the summary, not a move
    assert undo.detail["reason"] == "wrong logo"
    done = store.get_instance(ours.approve)
    assert done.state == "available"  # undone, then offered again once render was skipped
    assert [a.worker for a in done.attempts if a.archived] == ["reports-ops"]
    assert {e.actor for e in Event.select().where(Event.instance == ours.approve, Event.kind == "submit")} == {"reports-ops"}
    assert TaskInstance.get_by_id(teams["rival"].approve).state == "available"


def _states(screen) -> dict[str, str]:
    return {v.task: v.state for v in screen.query_one(DagView).instances}


async def _confirm(pilot, key: str, modal: type) -> None:
    """Open an action's dialog with its key and confirm it as it is."""
    await pilot.press(key)
    await wait_until(pilot, lambda: isinstance(pilot.app.screen, modal))
    await pilot.press("ctrl+s")
    await wait_until(pilot, lambda: not isinstance(pilot.app.screen, modal))
