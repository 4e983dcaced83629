"""The dashboard while its client is slow (a hung bridge or broker answers only at its timeout): the
action goes on off the UI thread, the dashboard keeps handling keys and drawing, a second press of the
same action is refused, and the answer shows when it comes. On SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import threading

import pytest
from textual.widgets import Input, Select

from flow45 import store
from flow45.client.local import LocalClient
from flow45.config import load_config
from flow45.models import Event
from tests.conftest import EXAMPLES
from tests.tui.conftest import REVIEWER, SIZE, T0, instance, monthly_run, type_text, wait_until
from tests.tui.test_dashboard import dag_states, open_run, text_of
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.inbox import InboxScreen
from tui.screens.modals import UndoModal
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.dag import DagView


@pytest.fixture
def tui_store(store_db):
    """The store on each backend with examples/config deployed at a fixed time."""
    store.deploy(load_config(EXAMPLES), actor="tester", now=T0)
    return store_db


class Gated(LocalClient):
    """Its changes wait at a gate until the test opens it, as a call to a hung bridge waits; reads pass."""

    def __init__(self, actor: str):
        super().__init__(actor)
        self.gate = threading.Event()
        self.waiting: list[str] = []  # the changes that reached the gate, in order

    def _wait(self, name: str) -> None:
        self.waiting.append(name)
        assert self.gate.wait(30), "the test never opened the gate"

    def undo(self, *args, dry_run: bool = False, **kwargs):
        if not dry_run:
            self._wait("undo")
        return super().undo(*args, dry_run=dry_run, **kwargs)

    def take(self, *args, **kwargs):
        self._wait("take")
        return super().take(*args, **kwargs)

    def submit(self, *args, **kwargs):
        self._wait("submit")
        return super().submit(*args, **kwargs)


def told(app, words: str) -> bool:
    return any(words in n.message for n in app._notifications)


@contextlib.asynccontextmanager
async def dashboard_of(client: Gated):
    """The dashboard on `client`, and its pilot; the gate opened when done, so no call waits for ever."""
    app = Dashboard(REVIEWER, client=client)
    try:
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            yield app, pilot
    finally:
        client.gate.set()


async def undo_render_held(app, pilot, client) -> UndoModal:
    """From the run screen: the undo dialog of render, its reason given and confirmed, the answer held at
    the client's gate."""
    await pilot.press("down", "u")
    await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan)
    modal = app.screen
    await type_text(pilot, "wrong logo")
    await pilot.press("enter")
    await wait_until(pilot, lambda: client.waiting == ["undo"])
    return modal


async def test_an_undo_waiting_for_its_answer_leaves_the_dashboard_working(tui_store):
    run = monthly_run(("extract", "render"))
    render = instance(run, "render").id
    client = Gated(REVIEWER)
    async with dashboard_of(client) as (app, pilot):
        screen = await open_run(pilot)
        modal = await undo_render_held(app, pilot, client)
        await wait_until(pilot, lambda: "under way" in text_of(modal.query_one("#refusal")))
        await pilot.press("ctrl+s")  # again: the confirm button waits for the answer
        await type_text(pilot, "!")  # keys still reach the dialog
        await wait_until(pilot, lambda: modal.query_one("#reason").value == "wrong logo!")
        await pilot.press("escape")  # and it can be left meanwhile
        await wait_until(pilot, lambda: app.screen is screen)
        await pilot.press("up")
        await wait_until(pilot, lambda: screen.query_one(DagView).cursor_instance.task == "extract")
        await pilot.press("down", "u")  # the same undo again is refused while the first is under way
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan)
        await type_text(pilot, "again")
        await pilot.press("enter")
        await wait_until(pilot, lambda: told(app, "is under way"))
        assert client.waiting == ["undo"]
        await pilot.press("escape")
        client.gate.set()
        await wait_until(pilot, lambda: told(app, f"undid instance {render}"))
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and dag_states(app)["render"] == "available")
    assert store.get_instance(render).attempt == 2
    assert Event.select().where((Event.kind == "undo") & Event.to_state.is_null()).count() == 1


async def test_a_refused_undo_shows_in_its_dialog_when_the_answer_comes(tui_store):
    run = monthly_run(("extract", "render"))
    client = Gated(REVIEWER)
    async with dashboard_of(client) as (app, pilot):
        await open_run(pilot)
        modal = await undo_render_held(app, pilot, client)
        store.cancel_run(run, actor="ann", now=T0)  # meanwhile: nothing in it can change now
        client.gate.set()
        await wait_until(pilot, lambda: "Refused" in text_of(modal.query_one("#refusal")))
        assert app.screen is modal and not modal.query_one("#confirm").disabled


async def test_taking_and_submitting_a_human_task_wait_off_the_ui_thread(tui_store):
    run = monthly_run(("extract", "render"))
    approve = instance(run, "approve").id
    client = Gated(REVIEWER)
    async with dashboard_of(client) as (app, pilot):
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.rows)
        await pilot.press("t")
        await wait_until(pilot, lambda: client.waiting == ["take"] and told(app, f"taking human task {approve}"))
        await pilot.press("t")
        await wait_until(pilot, lambda: told(app, "is under way"))
        assert client.waiting == ["take"]
        client.gate.set()
        await wait_until(pilot, lambda: told(app, f"took human task {approve}"))
        await wait_until(pilot, lambda: app.screen.rows[0].instance.taken_by == REVIEWER)
        client.gate.clear()
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
        form = app.screen
        form.query_one("#field-approved", Select).value = True
        form.query_one("#field-reviewer", Input).focus()
        await type_text(pilot, "kim")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: client.waiting == ["take", "submit"])
        await wait_until(pilot, lambda: "under way" in text_of(form.query_one("#human-refusal")))
        await pilot.press("ctrl+s")
        await type_text(pilot, "!")  # keys still reach the form
        assert form.query_one("#field-reviewer", Input).value == "kim!"
        assert client.waiting == ["take", "submit"]
        client.gate.set()
        await wait_until(pilot, lambda: told(app, f"submitted human task {approve}"))
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen))
    assert store.get_instance(approve).state == "succeeded"


class SlowReads(Gated):
    """Its read of a whole run waits at the gate too, as a read through a hung bridge waits."""

    def run(self, *args, **kwargs):
        self._wait("run")
        return super().run(*args, **kwargs)


async def test_a_screen_reading_what_it_shows_says_so_and_keeps_handling_keys(tui_store):
    run = monthly_run(("extract", "render"))
    client = SlowReads(REVIEWER)
    async with dashboard_of(client) as (app, pilot):
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and client.waiting == ["run"])
        screen = app.screen
        assert screen.sub_title == "reading…" and screen.run is None
        shown = screen.timeline.display
        await pilot.press("g")  # keys reach it meanwhile
        await wait_until(pilot, lambda: screen.timeline.display is not shown)
        client.gate.set()
        await wait_until(pilot, lambda: screen.run is not None)
        assert screen.sub_title == f"run {run} · reports/monthly_report"
        assert dag_states(app) == {"extract": "succeeded", "render": "succeeded", "approve": "available",
                                   "publish": "pending"}
        client.gate.clear()
        await pilot.press("escape", "enter")  # left before the answer comes: it is not shown
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and client.waiting == ["run", "run"])
        await pilot.press("escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        client.gate.set()
        await wait_until(pilot, lambda: not app.workers)
        assert isinstance(app.screen, RunsScreen) and app.is_running
