"""Notes on a run: an operator adds one from the run screen (`n`); the summary shows it, the ledger
keeps it, and a note added elsewhere (another operator, the command line) appears live."""

from __future__ import annotations

from textual.widgets import Static

from flow45 import store
from flow45.models import Event
from tests.tui.conftest import OPERATOR, SIZE, instance, monthly_run, type_text, wait_until
from tests.tui.test_dashboard import open_run, text_of
from tui.app import Dashboard
from tui.screens.instance import InstanceScreen
from tui.screens.modals import InstanceNoteModal, NoteModal
from tui.screens.run import RunScreen


async def test_a_note_added_on_the_run_screen_or_elsewhere_shows_in_its_summary(tui_db, monkeypatch):
    from tui import data

    monkeypatch.setattr(data, "SMALL_RUN", 0)  # read as a wide run is: a change reads the run's row, not all of it
    run = monthly_run(("extract", "render"))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, NoteModal))
        modal = app.screen
        assert modal.title_text.startswith(f"Note on run {run} (reports/monthly_report v1")
        await pilot.press("ctrl+s")  # nothing typed: refused, nothing kept
        await wait_until(pilot, lambda: "a note needs some text" in text_of(modal.query_one("#refusal", Static)))
        await type_text(pilot, "the bank file came late; re-run render at 10")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        info = screen.query_one("#run-info", Static)
        await wait_until(pilot, lambda: "the bank file came late; re-run render at 10" in text_of(info))
        assert f"note by {OPERATOR} " in text_of(info)

        store.note_run(run, "checked with finance: fine", actor="kim")  # another operator, elsewhere
        await wait_until(pilot, lambda: "note by kim " in text_of(info) and "checked with finance: fine" in text_of(info))
        assert "the bank file came late" in text_of(info)
        store.hold(instance(run, "publish").id, actor="kim")  # a change the run's row alone is read for
        await wait_until(pilot, lambda: "held" in text_of(info))
        assert "checked with finance: fine" in text_of(info), "the notes stay after a read of the run's row"
    assert [(e.actor, e.detail["text"]) for e in Event.select().where(Event.kind == "note").order_by(Event.id)] == [
        (OPERATOR, "the bank file came late; re-run render at 10"), ("kim", "checked with finance: fine")]


async def test_a_note_on_an_instance_from_its_screen_shows_there_and_in_its_runs_summary(tui_db):
    run = monthly_run(("extract",))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        await pilot.press("down", "enter")  # render's instance
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)
        await pilot.press("n")
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceNoteModal))
        assert app.screen.title_text == f"Note on instance {instance(run, 'render').id} (render of run {run})"
        await type_text(pilot, "fonts missing on the render host")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen))
        info = app.screen.query_one("#inst-info", Static)
        await wait_until(pilot, lambda: "fonts missing on the render host" in text_of(info))
        await pilot.press("escape")
        run_info = screen.query_one("#run-info", Static)
        await wait_until(pilot, lambda: f"note on render by {OPERATOR} " in text_of(run_info))
    [event] = Event.select().where(Event.kind == "note")
    assert (event.instance, event.detail["task"]) == (instance(run, "render").id, "render")


async def test_the_instance_screen_says_when_a_task_runs_and_why_it_was_skipped(tui_db):
    run = monthly_run(("extract", "render"))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot)
        await pilot.press("down", "down", "down", "enter")  # publish's instance
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)
        info = app.screen.query_one("#inst-info", Static)
        assert app.screen.payload.instance.task == "publish"
        assert "runs when approval.approved is true" in text_of(info)
        store.submit_human(instance(run, "approve").id, {"approved": False, "reviewer": "kim"}, actor="demo-operator")
        await wait_until(pilot, lambda: "skipped: when approval.approved is true: it is false" in text_of(info))
        assert "runs when" not in text_of(info)


async def test_the_instance_screen_says_what_a_queued_instance_waits_for(tui_db):
    monthly_run(("extract",))  # its render takes the PDF service's one slot
    second = monthly_run(("extract",))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot)  # the newest run: the second
        await pilot.press("down", "enter")  # render's instance
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)
        assert app.screen.payload.instance.run == second
        info = app.screen.query_one("#inst-info", Static)
        assert ("queued, waiting for a free slot: at most 1 of render (max_running) offered or running at once"
                in text_of(info))
