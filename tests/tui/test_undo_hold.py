"""The undo dialog's hold checkbox says in words whether it is on: its mark's colour is lost in plain text."""

from __future__ import annotations

from textual.widgets import Checkbox

from tests.tui.conftest import OPERATOR, SIZE, monthly_run, wait_until
from tests.tui.test_dashboard import open_run
from tui.app import Dashboard
from tui.screens.modals import UndoModal


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
