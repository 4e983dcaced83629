"""The workflows screen: every deployed workflow the operator may see, with its schedule and when its
next run is due (red when overdue: no scheduler has made it). A workflow's tools work here before it
has any run: `t` triggers it, `p` pauses or resumes it, `b` backfills it; enter lists its runs."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.widgets import DataTable, Footer, Header, Static

from flow45.clock import utcnow
from flow45.timing import last_run_text, next_run_text
from flow45.views import EventView, WorkflowView
from tui.screens.base import LiveScreen
from tui.widgets.progress import STATE_STYLES, cell

COLUMNS = [("workflow", "team/workflow", 30), ("tasks", "tasks", 5), ("schedule", "schedule", 30),
           ("next", "next run (UTC)", 44), ("last", "last run", 26), ("description", "description", 40)]
# What changes a workflow's row: its versions, its pause, its schedule's passed-over ticks, and its
# runs' moves (a run-level event: a trigger, a run starting, finishing, cancelled).
KINDS = {"deploy", "retire", "restore", "pause", "resume", "schedule_skip"}
RELATIVE_EVERY = 30.0  # seconds between redrawing "in 2h05m" without a read


class WorkflowsTable(DataTable):
    BINDINGS = [
        Binding("enter", "select_cursor", "Its runs"),
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last", show=False),
    ]


class WorkflowsScreen(LiveScreen):
    close_on_failure = False
    CSS_PATH = "workflows.tcss"
    AUTO_FOCUS = "#workflows-table"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("t", "trigger", "Trigger"),
                Binding("p", "pause", "Pause/resume"), Binding("b", "backfill", "Backfill"),
                Binding("v", "versions", "Versions")]

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[WorkflowView] = []

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="workflows-summary")
        yield WorkflowsTable(id="workflows-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#workflows-table", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)
        super().on_mount()
        self.set_interval(RELATIVE_EVERY, lambda: self.show(self.rows))

    def load(self) -> list[WorkflowView]:
        return self.app.client.workflows()

    def concerns(self, event: EventView) -> bool:
        return event.kind in KINDS or (event.run is not None and event.instance is None
                                       and event.from_state != event.to_state)

    def show(self, payload: list[WorkflowView]) -> None:
        from flow45.scheduler import on_time

        table = self.query_one("#workflows-table", DataTable)
        keep = self.selected
        self.rows, now, late = payload, utcnow(), on_time()
        table.clear()
        overdue = 0
        for view in payload:
            text, is_overdue = next_run_text(view, now, late)
            overdue += is_overdue
            if view.paused:
                text = view.paused_text()
            style = "bold red" if is_overdue else "yellow" if view.paused else ""
            table.add_row(cell(f"{view.team}/{view.name} v{view.version}", 30), Text(str(view.tasks), justify="right"),
                          cell(view.schedule or "-", 30), Text(text or "-", style=style),
                          Text(last_run_text(view, now) or "-", style=STATE_STYLES.get(view.last_run_status or "", "")),
                          cell(view.description or "", 40), key=f"{view.team}/{view.name}")
        keys = [f"{v.team}/{v.name}" for v in payload]
        if keep is not None and f"{keep.team}/{keep.name}" in keys:
            table.move_cursor(row=keys.index(f"{keep.team}/{keep.name}"), scroll=False)
        scheduled = sum(v.schedule is not None for v in payload)
        self.query_one("#workflows-summary", Static).update(
            f" {len(payload)} workflow(s), {scheduled} scheduled"
            + (f", {sum(v.paused is not None for v in payload)} paused" if any(v.paused for v in payload) else "")
            + (f"; {overdue} overdue: is a scheduler running?" if overdue else ""))

    @property
    def selected(self) -> WorkflowView | None:
        table = self.query_one("#workflows-table", DataTable)
        if not self.rows or not table.row_count:
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)]

    def _chosen(self) -> WorkflowView | None:
        if (view := self.selected) is None:
            self.app.notify("no workflow selected", severity="warning")
        return view

    def action_trigger(self) -> None:
        from tui.screens.trigger import TriggerModal

        if (view := self._chosen()) is not None:
            self.app.push_screen(TriggerModal(view.team, view.name))

    def action_pause(self) -> None:
        from tui.screens.workflow_tools import PauseModal

        if (view := self._chosen()) is not None:
            self.app.push_screen(PauseModal(view.team, view.name))

    def action_backfill(self) -> None:
        from tui.screens.workflow_tools import BackfillModal

        if (view := self._chosen()) is not None:
            self.app.push_screen(BackfillModal(view.team, view.name))

    def action_versions(self) -> None:
        from tui.screens.versions import VersionsScreen

        if (view := self._chosen()) is not None:
            self.app.push_screen(VersionsScreen(view.team, view.name))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        team, _, name = str(event.row_key.value).partition("/")
        self.runs_of(team, name)

    def runs_of(self, team: str, name: str) -> None:
        """Back to the runs, filtered to this workflow's."""
        from tui.screens.runs import RunsScreen

        self.app.pop_screen()
        if isinstance(self.app.screen, RunsScreen):
            self.app.screen.show_workflow(team, name)

    def commands(self) -> list[tuple[str, str, Any]]:
        view = self.selected
        if view is None:
            return []
        name = f"{view.team}/{view.name}"
        return [(f"Runs of {name}", "back to the runs, filtered to this workflow's",
                 lambda: self.runs_of(view.team, view.name)),
                (f"Trigger {name} (t)", "its params as a form", self.action_trigger),
                (f"Pause or resume {name} (p)", "paused: its schedule makes no runs", self.action_pause),
                (f"Backfill {name} (b)", "a run per schedule tick in a range, listed first", self.action_backfill),
                (f"Versions of {name} (v)", "who deployed each, when, and what it changed", self.action_versions)]
