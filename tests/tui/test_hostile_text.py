"""What workers, operators and a team's config write reaches the dashboard as text. Textual reads a
plain string as markup: a worker's error holding `[/]` ended the dashboard of every operator of the
team, and a pattern's `[a-z]` vanished from a form's hint."""

from __future__ import annotations

import io

from rich.console import Console
from textual.widgets import DataTable, Label, Select, Static

from flow45 import store
from flow45.models import TaskInstance
from tests.store.helpers import deploy_text
from tests.tui.conftest import OPERATOR, SIZE, T0, instance, wait_until
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.instance import InstanceScreen
from tui.screens.modals import TakeOverModal
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen
from tui.widgets.dag import DagView

BREAKS = "[/]"  # closes nothing: as markup, an error when drawn
ACTOR = f"{BREAKS} [bold]ann"
WORKER = f"w{BREAKS}1"
PROGRESS = f"{BREAKS} half [link=https://example.org]here[/link]"
ERROR = f"[/bold] boom {BREAKS}"

HOSTILE = """
    team: hostile
    types:
      Decision:
        fields:
          code: {type: string, pattern: "^[a-z]+$", description: "[/] not markup [red]"}
          pick: {type: enum, values: ["[/]", "[b]x"]}
    workflows:
      w:
        tasks:
          decide: {function: decide, output: Decision, human: true}
"""


def rendered(widget) -> str:
    """What the widget shows, as plain text: its content, or its Rich table drawn."""
    visual = widget.render()
    if hasattr(visual, "plain"):
        return visual.plain
    console = Console(file=io.StringIO(), width=400, color_system=None)
    console.print(visual._renderable, markup=False)
    return console.file.getvalue()


async def test_a_workers_and_an_operators_words_are_shown_as_written_on_every_screen(tui_db, tmp_path):
    run = store.trigger("reports", "monthly_report", {"month": "2026-09"}, actor=ACTOR, now=T0)
    offer = instance(run, "extract")
    grant = store.claim(offer.id, offer.token, WORKER, now=T0)
    store.progress(grant.instance, grant.token, 50, PROGRESS, now=T0)
    store.fail(grant.instance, grant.token, ERROR, retryable=False, now=T0)
    deploy_text(tmp_path, HOSTILE)
    decision = store.trigger("hostile", "w", actor="ann", now=T0)
    decide = TaskInstance.get(TaskInstance.run == decision)
    store.take(decide.id, actor=f"eve{BREAKS}", now=T0)

    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and len(app.screen.loaded) == 2)
        table = app.screen.query_one("#runs-table", DataTable)
        assert f"manual by {ACTOR}"[:20] in str(table.get_cell(str(run), "trigger"))

        await pilot.press("down", "enter")  # the older run: the failed one
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
        await pilot.pause(0.3)  # drawn
        assert app.screen.run.id == run and app.screen.query_one(DagView).cursor_instance.task == "extract"

        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload)
        await pilot.pause(0.3)
        attempts = app.screen.query_one("#inst-attempts", Static)
        shown = rendered(attempts)
        assert WORKER in shown and ERROR in shown

        app.notify(f"refused: {ERROR}")  # a refusal quotes what was written
        await pilot.pause(0.3)

        await pilot.press("escape", "escape")
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
        await pilot.press("up", "enter")  # the newest: the hostile team's human task, taken by eve[/]
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None
                         and app.screen.run.id == decision)
        await pilot.press("f")
        await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
        await pilot.pause(0.3)
        labels = " ".join(rendered(label) for label in app.screen.query(Label))
        assert "matching ^[a-z]+$" in labels and "[/] not markup [red]" in labels and "one of [/], [b]x" in labels
        app.screen.query_one("#field-pick", Select).focus()
        await pilot.press("enter")  # the enum's values drawn in its list
        await pilot.pause(0.3)
        await pilot.press("escape")
        await pilot.press("ctrl+t")  # eve[/] has it: taking it over asks why
        await wait_until(pilot, lambda: isinstance(app.screen, TakeOverModal))
        await pilot.pause(0.3)
        assert f"eve{BREAKS} has it" in " ".join(rendered(w) for w in app.screen.query(Static))


async def test_an_operator_named_with_brackets_opens_the_dashboard_and_the_trigger_form(tui_db):
    """The operator's own name is in the header and in the trigger form's words."""
    store.trigger("reports", "monthly_report", {"month": "2026-09"}, actor="ann", now=T0)
    app = Dashboard(f"ops{BREAKS}", database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await pilot.press("i")  # the inbox: nothing for this operator, drawn all the same
        await pilot.pause(0.3)
        await pilot.press("escape", "t")
        await wait_until(pilot, lambda: app.screen.query("#trigger-workflow") and app.screen.is_mounted)
        app.screen.query_one("#trigger-workflow", Select).value = "reports/monthly_report"
        await wait_until(pilot, lambda: f"triggered by ops{BREAKS}" in rendered(app.screen.query_one("#trigger-about")))


async def test_a_workers_control_characters_reach_the_screen_as_escapes(tui_db):
    """Textual draws a string's characters as they are: a progress message holding ESC [2J cleared the
    operator's screen, and a worker named with ESC ]2; retitled the terminal."""
    run = store.trigger("reports", "monthly_report", {"month": "2026-09"}, actor="ann", now=T0)
    offer = instance(run, "extract")
    grant = store.claim(offer.id, offer.token, "w\x1b]2;owned\x07", now=T0)
    store.progress(grant.instance, grant.token, 50, "\x1b[2J\x1b[Hcleared", now=T0)
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
        await pilot.press("enter")
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
        await pilot.pause(0.3)
        [extract] = [v for v in app.screen.query_one(DagView).instances if v.task == "extract"]
        assert extract.progress_message == "\\x1b[2J\\x1b[Hcleared" and extract.worker == "w\\x1b]2;owned\\x07"
        screen = app.export_screenshot()
        assert "x1b[2J" in screen and "\x1b" not in screen and "\x07" not in screen
