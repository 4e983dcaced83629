"""The undo dialog's choices: hold, said in words (its mark's colour is lost in plain text), and cancelling
the runs the undone run started (connected workflows)."""

from __future__ import annotations

from textual.widgets import Checkbox

from flow45 import store
from flow45.models import TaskInstance
from tests.client.two_teams import finish_nightly
from tests.tui.conftest import OPERATOR, REVIEWER, SIZE, T0, monthly_run, notices, type_text, wait_until
from tests.tui.test_dashboard import open_run
from tui.app import Dashboard
from tui.screens.modals import RetryModal, UndoModal


async def test_the_hold_checkbox_reads_on_and_off_in_words(tui_db):
    monthly_run(("extract", "render"))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot)
        await pilot.press("down", "u")  # undo render
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan)
        modal = app.screen
        box = modal.query_one("#hold", Checkbox)
        assert str(box.label) == "[ ] Hold it instead of offering it again (off: offered again)"
        assert [a.becomes for a in modal.plan.affected][0] == "available"
        await pilot.click("#hold")
        await wait_until(pilot, lambda: box.value)
        assert str(box.label) == "[x] Hold it: it stays held after the undo"
        await wait_until(pilot, lambda: modal.plan.affected[0].becomes == "held")


def nightly_run_that_started_a_report() -> tuple[int, int]:
    nightly, report = finish_nightly()
    assert store.get_run(report).params == {"month": "2026-03"}
    return nightly, report


async def test_the_undo_dialog_lists_the_connected_runs_and_can_cancel_them(tui_db):
    nightly, report = nightly_run_that_started_a_report()
    app = Dashboard(REVIEWER, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, row=[r.id for r in store.list_runs()].index(nightly))
        await pilot.press("end", "u")  # undo notify, the last task
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan)
        modal = app.screen
        assert [(c.run, c.workflow, c.status, c.cancel) for c in modal.plan.connected] == [
            (report, "monthly_report", "running", True)]
        box = modal.query_one("#cancel-connected", Checkbox)
        assert box.display and str(box.label) == "[ ] Cancel the 1 unfinished connected run(s) too (off: they go on)"
        await pilot.click("#cancel-connected")
        await wait_until(pilot, lambda: modal.plan.cancel_connected)
        assert str(box.label) == "[x] Cancel the 1 unfinished connected run(s) with the undo"
        assert store.get_run(report).status == "running", "the dialog's plan is a dry run"
        modal.query_one("#reason").focus()
        await type_text(pilot, "mail went to the wrong list")
        await pilot.press("enter")
        await wait_until(pilot, lambda: not isinstance(app.screen, UndoModal))
    assert store.get_run(report).status == "cancelled"
    assert store.get_run(nightly).status == "running"
    [undo] = [e for e in store.list_events(team="reports", limit=1000) if e.kind == "undo" and "affected" in e.detail]
    assert undo.actor == REVIEWER and undo.detail["cancel_connected"] is True
    assert undo.detail["reason"] == "mail went to the wrong list"


async def test_without_unfinished_connected_runs_there_is_nothing_to_cancel(tui_db):
    _, report = nightly_run_that_started_a_report()
    store.cancel_run(report, actor="ann", now=T0)
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, row=1)
        await pilot.press("end", "u")
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan)
        assert [(c.run, c.status, c.cancel) for c in app.screen.plan.connected] == [(report, "cancelled", False)]
        assert not app.screen.query_one("#cancel-connected", Checkbox).display


async def test_the_undo_dialog_says_a_finished_run_waits_queued_while_its_workflows_slot_is_taken(tui_db):
    nightly, _ = nightly_run_that_started_a_report()
    running = store.trigger("reports", "nightly_sales", actor="ann", now=T0)  # max_active_runs: 1
    app = Dashboard(REVIEWER, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, row=[r.id for r in store.list_runs()].index(nightly))
        await pilot.press("end", "u")
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal) and app.screen.plan)
        plan = app.screen.plan
        assert plan.run_waits == f"max_active_runs 1: run {running} running"
        assert [a.becomes for a in plan.affected] == ["pending"]
        caption = str(UndoModal._describe(plan).renderables[0].caption)
        assert caption.endswith(f"Run {nightly} waits queued for a slot (max_active_runs 1: run {running} running).")


async def test_a_retry_whose_failed_run_waits_queued_for_its_slot_says_so(tui_db):
    failed = store.trigger("reports", "nightly_sales", actor="ann", now=T0)
    load = TaskInstance.get((TaskInstance.run == failed) & (TaskInstance.task == "load_emea"))
    grant = store.claim(load.id, load.token, "w", now=T0)
    for other in TaskInstance.select().where((TaskInstance.run == failed) & (TaskInstance.state == "available")):
        store.hold(other.id, actor="ann", now=T0)  # nothing else of the run on its way: the failure fails it
    store.fail(grant.instance, grant.token, "source file missing", retryable=False, now=T0)
    running = store.trigger("reports", "nightly_sales", actor="ann", now=T0)  # the failed run left the slot
    assert store.get_run(running).status == "running"
    app = Dashboard(OPERATOR, database_url=tui_db)
    said = notices(app)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot, row=[r.id for r in store.list_runs()].index(failed))
        await pilot.press("r")  # retry load_emea, the first task
        await wait_until(pilot, lambda: isinstance(app.screen, RetryModal))
        await pilot.click("#confirm")
        await wait_until(pilot, lambda: not isinstance(app.screen, RetryModal))
    assert said[-1][1] == f"retried instance {load.id} (load_emea of run {failed}): run {failed} waits queued for a slot"
    assert store.get_run(failed).status == "queued"
