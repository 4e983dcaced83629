"""The dashboard as an operator uses it: keys pressed with the Pilot, the store checked afterwards."""

from __future__ import annotations

import io
import re

from rich.console import Console
from textual.widgets import Button, DataTable, Input, Select, Static

from flow45 import store
from flow45.models import Attempt, Event, Run
from tests.tui.conftest import (OPERATOR, REVIEWER, SIZE, T0, complete, instance, monthly_run, notices, type_text,
                                wait_until)
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.set_output import SetOutputScreen
from tui.screens.inbox import InboxScreen
from tui.screens.instance import InstanceScreen
from tui.screens.bulk import BulkModal
from tui.screens.modals import RetryModal, UndoModal
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.screens.trigger import TriggerModal
from tui.screens.workflow_tools import BackfillModal, PauseModal
from tui.widgets.dag import DagView
from tui.widgets.ledger import Ledger


def text_of(widget: Static) -> str:
    """What a Static shows, as plain text."""
    console = Console(width=200, file=io.StringIO(), record=True)
    console.print(widget.content)
    return console.export_text().strip()


def moves(plan: str) -> list[tuple[str, str]]:
    """The (from, to) states a plan lists, its state icons left out."""
    return re.findall(r"(\w+) → \W*(\w+)", plan)


def dag_states(app: Dashboard) -> dict[str, str]:
    return {v.task: v.state for v in app.screen.query_one(DagView).instances}


async def open_run(pilot, row: int = 0) -> RunScreen:
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
    for _ in range(row):
        await pilot.press("down")
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
    return app.screen


async def test_open_a_run_and_undo_an_instance_through_the_modal(tui_db):
    run = monthly_run(("extract", "render"))
    render = instance(run, "render")
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        assert screen.run.id == run
        assert dag_states(app) == {"extract": "succeeded", "render": "succeeded", "approve": "available",
                                   "publish": "pending"}
        await pilot.press("down", "u")
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal))
        modal = app.screen
        # The dry run's affected set is listed before anything changes.
        assert [(a.task, a.state, a.becomes) for a in modal.plan.affected] == [
            ("render", "succeeded", "available"), ("approve", "available", "pending")]
        assert Event.select().where(Event.kind == "undo").count() == 0
        # Without a reason the core is not even asked.
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "a reason is required" in text_of(modal.query_one("#refusal")))
        await type_text(pilot, "wrong logo")
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        await wait_until(pilot, lambda: dag_states(app)["render"] == "available")
        assert dag_states(app)["approve"] == "pending"
        assert screen.query_one(DagView).cursor_instance.task == "render"  # the cursor stayed

    after = store.get_instance(render.id)
    assert after.state == "available" and after.attempt == 2
    assert [a.archived for a in after.attempts] == [True]
    undo = Event.get((Event.kind == "undo") & Event.to_state.is_null())  # the summary, not a move
    assert undo.actor == OPERATOR and undo.detail["reason"] == "wrong logo"
    assert [a["task"] for a in undo.detail["affected"]] == ["render", "approve"]
    assert {e.actor for e in Event.select().where(Event.id >= undo.id)} == {OPERATOR}


async def test_a_refusal_from_the_core_is_shown_in_the_modal(tui_db):
    run = monthly_run(("extract",))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot)
        await pilot.press("r")  # retry a succeeded instance: the core refuses
        await wait_until(pilot, lambda: isinstance(app.screen, RetryModal))
        await pilot.click("#confirm")
        refusal = app.screen.query_one("#refusal", Static)
        await wait_until(pilot, lambda: "only a failed instance can be retried" in text_of(refusal))
        assert refusal.display and isinstance(app.screen, RetryModal)  # still open, nothing crashed
        await pilot.press("escape")
        # Undo of a pending instance: refused by the dry run, the button is disabled.
        await pilot.press("end", "u")
        await wait_until(pilot, lambda: isinstance(app.screen, UndoModal))
        assert "it has not started, there is nothing to undo" in text_of(app.screen.query_one("#refusal"))
        assert app.screen.query_one("#confirm", Button).disabled
        await pilot.press("escape")
    assert store.get_instance(instance(run, "extract").id).attempt == 1
    assert Event.select().where(Event.actor == OPERATOR).count() == 0


async def test_submit_a_human_task_through_the_form_with_a_field_error(tui_db):
    run = monthly_run(("extract", "render"))
    approve = instance(run, "approve")
    app = Dashboard(REVIEWER, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("i")
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.rows)
        assert [item.instance.task for item in app.screen.rows] == ["approve"]
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
        form = app.screen
        assert "s3://reports/2026-02.pdf" in text_of(form.query_one("#human-inputs-table"))
        form.query_one("#field-reviewer", Input).focus()
        await type_text(pilot, "kim")
        await pilot.press("ctrl+s")  # `approved` left unset
        await wait_until(pilot, lambda: "not valid" in text_of(form.query_one("#human-refusal")))
        errors = {row.path: text_of(row.query_one(".field-error")) for row in form.query("FieldRow")}
        assert errors == {("approved",): "required", ("reviewer",): "", ("comment",): ""}
        assert store.get_instance(approve.id).state == "available"
        form.query_one("#field-approved", Select).value = True
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, HumanTaskScreen))
        await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and not app.screen.rows)

    done = store.get_instance(approve.id)
    assert done.state == "succeeded" and done.worker == REVIEWER
    assert done.attempts[-1].output == {"approved": True, "reviewer": "kim", "comment": None}
    assert {e.actor for e in Event.select().where(Event.instance == approve.id, Event.kind.in_(["claim", "submit"]))} \
        == {REVIEWER}


async def monthly_trigger_form(pilot, month: str) -> TriggerModal:
    """`t` on the runs screen, monthly_report chosen and its month written."""
    app = pilot.app
    await pilot.press("t")
    await wait_until(pilot, lambda: isinstance(app.screen, TriggerModal) and app.screen.is_mounted)  # its Select too
    modal = app.screen
    modal.query_one("#trigger-workflow", Select).value = "reports/monthly_report"
    await wait_until(pilot, lambda: bool(modal.query("#field-month")))
    modal.query_one("#field-month", Input).value = month
    return modal


async def test_a_constraint_error_shows_under_the_field_then_the_trigger_goes_through(tui_db):
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        modal = await monthly_trigger_form(pilot, "last month")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "params have errors" in text_of(modal.query_one("#refusal")))
        month_error = text_of(modal.query_one("FieldRow .field-error"))
        assert "String should match pattern" in month_error
        assert Run.select().count() == 0
        modal.query_one("#field-month", Input).value = "2026-04"
        modal.query_one("#trigger-priority", Select).value = 9  # urgent
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await wait_until(pilot, lambda: app.screen.query_one(DataTable).row_count == 1)
    run = Run.get()
    assert run.triggered_by == OPERATOR and run.params == {"month": "2026-04"}
    assert {i.priority for i in store.get_run(run.id).instances} == {9}


async def test_a_trigger_with_a_key_the_workflow_has_a_run_for_starts_nothing_and_says_so(tui_db):
    app = Dashboard(OPERATOR, database_url=tui_db)
    said = notices(app)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        for _ in range(2):
            modal = await monthly_trigger_form(pilot, "2028-02")
            modal.query_one("#trigger-key", Input).value = "Feb 2028 report"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        run = Run.get()
        assert [message for _, message in said] == [f"triggered run {run.id} of reports/monthly_report, key Feb 2028 report",
                        f"run {run.id} of reports/monthly_report has key Feb 2028 report already (running): "
                        "nothing new started"]
    assert run.key == "Feb 2028 report" and Run.select().count() == 1


async def test_a_workers_change_appears_without_a_keypress(tui_db):
    run = monthly_run(())
    second = monthly_run(())
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot, row=1)  # the older run
        assert screen.run.id == run
        await pilot.press("down")  # the cursor on `render`; it must stay there
        dag = screen.query_one(DagView)
        ledger = screen.query_one(Ledger)
        seen = ledger.last_id
        extract = instance(run, "extract")
        grant = store.claim(extract.id, extract.token, "worker-7", now=T0)
        store.progress(extract.id, grant.token, 50, "half of the rows", now=T0)

        def shows_progress():
            view = {v.task: v for v in dag.instances}["extract"]
            return view.state == "running" and view.progress_pct == 50 and view.worker == "worker-7"

        await wait_until(pilot, shows_progress)  # with no key pressed: the screen follows the ledger by itself
        assert ledger.last_id > seen  # the claim event is in the run's ledger
        assert dag.cursor_instance.task == "render"
        store.submit(extract.id, grant.token, {"uri": "s3://x", "rows": 1}, now=T0)
        await wait_until(pilot, lambda: dag_states(app)["render"] == "available")
        # Another run's events leave this screen alone; the runs screen under it keeps up.
        complete(second, "extract", {"uri": "s3://y", "rows": 2})
        await pilot.press("escape")
        runs = app.screen
        await wait_until(pilot, lambda: isinstance(runs, RunsScreen) and runs.views[second].counts.get("succeeded"))
        assert runs.views[run].counts == {"succeeded": 1, "available": 1, "pending": 2}


async def test_instance_screen_shows_every_attempt_and_its_ledger(tui_db):
    run = monthly_run(("extract", "render"))
    render = instance(run, "render")
    store.undo(instance(run, "extract").id, "first try", actor="someone", now=T0)
    complete(run, "extract", {"uri": "s3://sales/2026-02-v2.csv", "rows": 12})
    grant = store.claim(render.id, instance(run, "render").token, "w1", now=T0)
    store.progress(render.id, grant.token, 90, checkpoint={"page": 12}, now=T0)
    store.submit(render.id, grant.token, {"uri": "s3://reports/2026-02-v2.pdf", "pages": 13}, now=T0,
                 log_url="https://logs.example.org/render/2", log_tail="fonts embedded\n12 pages\n")
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot)
        await pilot.press("down", "enter")
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)
        screen = app.screen
        attempts = screen.payload.instance.attempts
        assert [(a.number, a.archived) for a in attempts] == [(1, True), (2, False)]
        shown = text_of(screen.query_one("#inst-attempts"))
        assert "archived" in shown  # and what each attempt was built on, the undone source marked
        assert "built on attempt 2 of extract as sales" in shown
        assert "built on attempt 1 of extract (undone) as sales" in shown
        output = text_of(screen.query_one("#inst-output"))
        assert "2026-02-v2.pdf" in output and "log https://logs.example.org/render/2" in output
        assert "│ 12 pages" in output and "│ 12 pages" in shown  # the attempt's log tail, in both places
        assert 'checkpoint {"page": 12}' in shown  # where it got to
        ledger = screen.query_one(Ledger)
        assert ledger.last_id == Event.select().where(Event.instance == render.id).order_by(Event.id.desc()).get().id
        assert Attempt.select().where(Attempt.instance == render.id).count() == 2


async def test_runs_screen_pages_filters_and_counts(tui_db):
    for month in range(1, 4):
        store.trigger("reports", "monthly_report", {"month": f"2026-0{month}"}, actor="ann", now=T0)
    for _ in range(3):
        store.trigger("reports", "nightly_sales", None, actor="cron", now=T0)
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        screen = app.screen
        assert screen.loaded == [6, 5, 4, 3, 2, 1]  # newest first
        assert screen.counts == {"running": 3, "queued": 3}
        assert "3 queued" in text_of(screen.query_one("#runs-counts")) and "total 6" in text_of(
            screen.query_one("#runs-counts"))
        await pilot.press("slash")
        await type_text(pilot, "2026-02")
        await pilot.press("enter")
        await wait_until(pilot, lambda: screen.loaded == [2])
        await pilot.press("escape")
        await wait_until(pilot, lambda: len(screen.loaded) == 6)
        screen.query_one("#runs-status", Select).value = "queued"
        await wait_until(pilot, lambda: screen.loaded == [6, 5, 3])
        assert screen.counts == {"running": 3, "queued": 3}  # counts ignore the status filter
        await pilot.press("escape", "down")
        await wait_until(pilot, lambda: screen.selected_run and screen.selected_run.id == 5)
        # A run triggered elsewhere appears at the top without a key; the cursor stays on run 5.
        new = store.trigger("reports", "nightly_sales", None, actor="cron", now=T0)
        await wait_until(pilot, lambda: screen.loaded[0] == new)
        assert screen.selected_run.id == 5 and screen.counts == {"running": 3, "queued": 4}


async def test_a_run_that_cannot_be_read_is_a_notice_not_a_crash(tui_db):
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE, notifications=True) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await app.push_screen(RunScreen(4242))
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen)
                         and any("run 4242 not found" in n.message for n in app._notifications))


async def test_runs_are_read_a_page_at_a_time(tui_db, monkeypatch):
    from tui import data
    from tui.screens import runs as runs_module

    monkeypatch.setattr(data, "PAGE", 5)
    monkeypatch.setattr(runs_module, "NEAR_END", 1)
    for _ in range(12):
        store.trigger("reports", "nightly_sales", None, actor="cron", now=T0)
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        screen = app.screen
        assert screen.loaded == [12, 11, 10, 9, 8] and not screen.exhausted
        await pilot.press("end")
        await wait_until(pilot, lambda: len(screen.loaded) == 10)
        await pilot.press("end")
        await wait_until(pilot, lambda: screen.loaded == list(range(12, 0, -1)) and screen.exhausted)
        assert screen.query_one(DataTable).row_count == 12 and screen.selected_run.id == 3


async def test_clicking_a_row_of_the_dag_moves_the_cursor(tui_db):
    monthly_run(("extract",))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        dag = screen.query_one(DagView)
        point = dag.region.offset + (10, 6)  # border, level 0, extract, level 1, render, level 2, approve
        await wait_until(pilot, lambda: app.get_widget_at(*point)[0] is dag)  # a click lands where it was drawn
        await pilot.click(DagView, offset=(10, 6))
        await wait_until(pilot, lambda: dag.cursor_instance.task == "approve")


async def test_set_a_failed_worker_tasks_output_through_the_form_with_a_reason(tui_db):
    run = monthly_run(())
    extract = instance(run, "extract")
    grant = store.claim(extract.id, extract.token, "w1", now=T0)
    store.fail(grant.instance, grant.token, "source down", retryable=False, now=T0)
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await open_run(pilot)
        await pilot.press("o")
        await wait_until(pilot, lambda: isinstance(app.screen, SetOutputScreen) and app.screen.payload)
        form = app.screen
        form.query_one("#field-uri", Input).focus()
        await type_text(pilot, "s3://sales/by-hand.parquet")
        form.query_one("#field-rows", Input).focus()
        await type_text(pilot, "12")
        await pilot.press("ctrl+s")  # no reason yet: the core is not asked
        await wait_until(pilot, lambda: "a reason is required" in text_of(form.query_one("#human-refusal")))
        assert store.get_instance(extract.id).state == "failed"
        form.query_one("#set-output-reason", Input).focus()
        await type_text(pilot, "loaded from the backup")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
        await wait_until(pilot, lambda: dag_states(app)["render"] == "available")

    done = store.get_instance(extract.id)
    assert (done.state, done.worker) == ("succeeded", OPERATOR)
    assert done.attempts[-1].output == {"uri": "s3://sales/by-hand.parquet", "rows": 12}
    event = Event.get(Event.kind == "set_output")
    assert (event.actor, event.detail["reason"]) == (OPERATOR, "loaded from the backup")


async def test_the_runs_screens_workflow_and_bulk_tools_in_one_session(tui_db):
    """p pauses the selected run's workflow refusing triggers, then resumes it; two marked runs get a
    bulk retry, skip, undo and cancel, each planned in full before its one confirmation; b backfills
    the workflow after its dry run lists the ticks."""
    failed = []
    for _ in range(2):
        run = monthly_run(())
        extract = instance(run, "extract")
        grant = store.claim(extract.id, extract.token, "w1", now=T0)
        store.fail(grant.instance, grant.token, "source down", retryable=False, now=T0)
        failed.append(extract.id)

    def paused():
        return {w.name: w.paused for w in store.list_workflows("reports")}["monthly_report"]

    def extract_states():
        return [store.get_instance(i).state for i in failed]

    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PauseModal) and app.screen.is_mounted)
        app.screen.query_one("#pause-triggers", Select).value = "refuse"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: paused() == "refuse")
        await pilot.press("p")
        await wait_until(pilot, lambda: isinstance(app.screen, PauseModal))
        assert "triggers meanwhile are refused" in text_of(app.screen.query_one("#body Static"))
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: paused() is None)

        async def bulk(key: str, task: str | None = None, reason: str | None = None) -> str:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
            await pilot.press("up", "m", "down", "m", key)
            await wait_until(pilot, lambda: isinstance(app.screen, BulkModal) and app.screen.is_mounted)
            modal = app.screen
            if task:
                assert modal.query_one("#confirm", Button).disabled  # no plan before the task is chosen
                modal.query_one("#bulk-task", Select).value = task
                await pilot.pause(0.1)
            if reason:
                modal.query_one("#reason", Input).focus()
                await type_text(pilot, reason)
            plan = text_of(modal.query_one("#bulk-plan"))
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and not app.screen.marked)
            return plan

        plan = await bulk("R")
        assert f"extract (instance {failed[0]})" in plan and f"extract (instance {failed[1]})" in plan
        assert extract_states() == ["available", "available"]
        plan = await bulk("S", "extract", "source gone for good")
        assert moves(plan) == [("available", "skipped")] * 2 and extract_states() == ["skipped", "skipped"]
        plan = await bulk("U", "extract", "it is back")
        assert moves(plan) == [("skipped", "available")] * 2 and extract_states() == ["available", "available"]
        plan = await bulk("X")
        assert moves(plan) == [("running", "cancelled")] * 2
        assert [store.get_run(store.get_instance(i).run).status for i in failed] == ["cancelled", "cancelled"]

        await pilot.press("b")
        await wait_until(pilot, lambda: isinstance(app.screen, BackfillModal))
        await type_text(pilot, "2025-10-01")
        app.screen.query_one("#backfill-to", Input).focus()
        await type_text(pilot, "2025-12-31")
        await wait_until(pilot, lambda: "3 run(s) to create" in text_of(app.screen.query_one("#backfill-plan")))
        assert Run.select().where(Run.trigger == "backfill").count() == 0  # listed, not made
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
    made = Run.select().where(Run.trigger == "backfill").order_by(Run.logical_time)
    assert [(r.logical_time.month, r.status) for r in made] == [(10, "running"), (11, "running"), (12, "queued")]
    kinds = ["pause", "resume", "retry", "skip", "undo", "cancel"]
    assert {(e.kind, e.actor) for e in Event.select().where(Event.kind.in_(kinds))} == {(k, OPERATOR) for k in kinds}


async def test_ledger_events_that_arrive_while_the_dashboard_closes_are_dropped(tui_db):
    from tui.live import LedgerEvents
    from tui.screens.run import RunChanges

    run = monthly_run(("extract",))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        changed = RunChanges(store.get_run(run), [])
        app.exit()
        await screen.query_one("#run-info").remove()  # as closing removes the screens' widgets, the stack kept
        app.on_ledger_events(LedgerEvents([], [(screen, changed, None)]))
