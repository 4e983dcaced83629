"""The human tasks inbox: available human tasks of the chosen team, most urgent first."""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, Select, Static

from flow45.errors import Flow45Error
from flow45.views import EventView, InstanceView, RunView
from tui import data
from tui.screens.base import LiveScreen
from tui.widgets.progress import short, when

COLUMNS = [("instance", "instance", 9), ("task", "task", 22), ("run", "run", 7), ("workflow", "team/workflow", 32),
           ("attempt", "attempt", 8), ("since", "available since", 19), ("priority", "priority", 8)]


class InboxTable(DataTable):
    BINDINGS = [
        Binding("enter", "select_cursor", "Open form"),
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last", show=False),
    ]


class InboxScreen(LiveScreen):
    close_on_failure = False
    CSS_PATH = "inbox.tcss"
    AUTO_FOCUS = "#inbox-table"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back")]

    def __init__(self, team: str | None = None):
        super().__init__()
        self.teams = sorted(data.teams_and_workflows(self.app.client))
        self.team = team if team in self.teams else (self.teams[0] if len(self.teams) == 1 else None)
        self.rows: list[tuple[InstanceView, RunView | None]] = []

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="inbox-bar"):
            yield Label("Team ", id="inbox-team-label")
            yield Select([(t, t) for t in self.teams], prompt="all teams", id="inbox-team",
                         value=self.team if self.team else Select.NULL)
            yield Static("", id="inbox-summary")
        yield InboxTable(id="inbox-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        table = self.query_one("#inbox-table", DataTable)
        for key, label, width in COLUMNS:
            table.add_column(label, key=key, width=width)

    def load(self) -> tuple[str | None, list[tuple[InstanceView, RunView | None]]]:
        team = self.team
        return team, self.app.client.human_inbox(team)

    def concerns(self, event: EventView) -> bool:
        return event.instance is not None and self.team in (None, event.team)

    def show(self, payload: tuple[str | None, list[tuple[InstanceView, RunView | None]]]) -> None:
        team, rows = payload
        if team != self.team:
            return  # read for a team since changed
        table = self.query_one("#inbox-table", DataTable)
        keep = self.selected.id if self.selected else None
        self.rows = rows
        table.clear()
        for view, run in rows:
            workflow = f"{run.team}/{run.workflow} v{run.version}" if run else view.team
            table.add_row(Text(str(view.id), justify="right"), short(view.task, 22), str(view.run),
                          short(workflow, 32), str(view.attempt), when(view.updated_at), str(view.priority),
                          key=str(view.id))
        ids = [view.id for view, _ in rows]
        if keep in ids:
            table.move_cursor(row=ids.index(keep), scroll=False)
        who = f"team {self.team}" if self.team else "all teams"
        self.query_one("#inbox-summary", Static).update(f"  {len(rows)} human task(s) waiting for an operator ({who})")

    @property
    def selected(self) -> InstanceView | None:
        table = self.query_one("#inbox-table", DataTable)
        if not self.rows or not table.row_count:
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)][0]

    def on_select_changed(self, event: Select.Changed) -> None:
        team = None if event.value is Select.NULL else event.value
        if team != self.team:
            self.team = team
            self.reload()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def _open(self, instance_id: int) -> None:
        from tui.screens.human import HumanTaskScreen

        try:
            self.app.push_screen(HumanTaskScreen(instance_id))
        except Flow45Error as exc:
            self.app.notify(exc.message, severity="error")

    def commands(self) -> list[tuple[str, str, Any]]:
        return [(f"Open human task {view.id} ({view.task} of run {view.run})", "fill in its form and submit it",
                 lambda view=view: self._open(view.id)) for view, _ in self.rows[:50]]
