"""The dashboard's form for a human task follows the wire format: a datetime needs an offset and is
stored in UTC with Z, a number must be finite; each error shows under its field."""

from __future__ import annotations

import textwrap

from textual.widgets import Input, Static

from flow45 import store
from flow45.config import load_config
from tests.tui.conftest import OPERATOR, SIZE, T0, instance, type_text, wait_until
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.inbox import InboxScreen
from tui.screens.runs import RunsScreen

DESK = """
    team: desk
    types:
      Check:
        fields: {seen_at: datetime, score: number}
    workflows:
      review:
        tasks:
          check: {function: check_by_hand, output: Check, human: true}
"""


def text_of(widget: Static) -> str:
    return str(widget.render())


def _check_waiting(tmp_path, config: str):
    """The `check` human task of a run of desk/review, deployed as `config`."""
    (tmp_path / "desk.yaml").write_text(textwrap.dedent(config))
    store.deploy(load_config(tmp_path / "desk.yaml"), actor="tester", now=T0)
    return instance(store.trigger("desk", "review", actor="ann", now=T0), "check")


async def _open_the_form(pilot, app) -> HumanTaskScreen:
    """The human task's form, opened from the inbox."""
    await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
    await pilot.press("i")
    await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.rows)
    await pilot.press("enter")
    await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
    return app.screen


async def test_a_datetime_without_offset_and_a_non_finite_number_are_refused_in_the_form(tui_db, tmp_path):
    check = _check_waiting(tmp_path, DESK)
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_the_form(pilot, app)
        form.query_one("#field-seen_at", Input).focus()
        await type_text(pilot, "2026-03-01T14:00:00")
        form.query_one("#field-score", Input).focus()
        await type_text(pilot, "1e400")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: "not valid" in text_of(form.query_one("#human-refusal")))
        errors = {row.path: text_of(row.query_one(".field-error")) for row in form.query("FieldRow")}
        assert "has no offset: add Z for UTC, or +HH:MM" in errors[("seen_at",)]
        assert "finite number" in errors[("score",)]
        assert store.get_instance(check.id).state == "available"
        form.query_one("#field-seen_at", Input).value = "2026-03-01T14:00:00+02:00"
        form.query_one("#field-score", Input).value = "0.5"
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, HumanTaskScreen))
    assert store.get_instance(check.id).attempts[-1].output == {"seen_at": "2026-03-01T12:00:00Z", "score": 0.5}


async def test_a_field_left_empty_takes_its_default_which_its_hint_shows(tui_db, tmp_path):
    check = _check_waiting(tmp_path, DESK.replace("score: number}", "score: {type: number, ge: 0, default: 1}}"))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        form = await _open_the_form(pilot, app)
        score = next(row for row in form.query("FieldRow") if row.path == ("score",))
        assert score.hint == "number, ≥ 0, default 1"
        form.query_one("#field-seen_at", Input).focus()
        await type_text(pilot, "2026-03-01T14:00:00Z")
        await pilot.press("ctrl+s")
        await wait_until(pilot, lambda: not isinstance(app.screen, HumanTaskScreen))
    assert store.get_instance(check.id).attempts[-1].output == {"seen_at": "2026-03-01T14:00:00Z", "score": 1.0}
