"""The human tasks inbox: available human tasks of the chosen team, overdue first, with what deciding
them needs (the run's params, who has it, when it is due); filters mine, my groups, overdue, all.
`t` takes the selected task (from someone else: with a reason), `b` hands it back."""

from __future__ import annotations

import datetime as dt
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Label, Select, Static

from flow45 import wire
from flow45.clock import shown, utcnow
from flow45.store.rules_human import due_text
from flow45.views import EventView, InboxItem, InstanceView
from tui import data
from tui.screens import base
from tui.background import off_ui
from tui.screens.base import LiveScreen, notify_refusal
from tui.widgets.progress import cell, id_width

COLUMNS = [("instance", "instance", 9), ("task", "task", 16), ("run", "run", 6), ("workflow", "team/workflow", 26),
           ("due", "due", 20), ("taken", "taken by", 14), ("params", "params", 24), ("since", "available since", 19)]
SHOWS = [("all", "all"), ("mine", "mine"), ("my groups", "groups"), ("overdue", "overdue")]
SHOWN = 500  # human tasks read at most, overdue first


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
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("t", "take", "Take"),
                Binding("g", "give", "Give"), Binding("b", "hand_back", "Hand back")]

    def __init__(self, team: str | None = None, show: str = "all"):
        super().__init__()
        self.teams = sorted(data.teams_and_workflows(self.app.client))
        self.team = team if team in self.teams else (self.teams[0] if len(self.teams) == 1 else None)
        self.show_filter = show
        self.rows: list[InboxItem] = []
        self.rows_for: tuple[str | None, str] | None = None  # (team, filter) `rows` were read for
        self._read_at: dt.datetime | None = None  # this dashboard's clock when `rows` were read
        self._shown_widths: dict[str, int] = {}

    def compose(self) -> ComposeResult:
        yield Header()
        with Horizontal(id="inbox-bar"):
            yield Label("Team ", id="inbox-team-label")
            yield Select([(t, t) for t in self.teams], prompt="all teams", id="inbox-team",
                         value=self.team if self.team else Select.NULL)
            yield Label(" Show ", id="inbox-show-label")
            yield Select(SHOWS, allow_blank=False, value=self.show_filter, id="inbox-show")
            yield Static("", id="inbox-summary")
        yield InboxTable(id="inbox-table", cursor_type="row", zebra_stripes=True)
        yield Footer()

    def on_mount(self) -> None:
        self._add_columns(self.query_one("#inbox-table", DataTable), self._widths([]))
        self.set_interval(base.RECOUNT_EVERY, lambda: self._read_at and self._draw())  # while no event brings a read

    def _add_columns(self, table: DataTable, widths: dict[str, int]) -> None:
        self._shown_widths = widths
        for key, label, _ in COLUMNS:
            table.add_column(label, key=key, width=widths[key])

    @staticmethod
    def _widths(rows: list[InboxItem]) -> dict[str, int]:
        """Each id column wide enough for its largest id."""
        ids = {"instance": [i.instance.id for i in rows], "run": [i.instance.run for i in rows]}
        return {key: id_width(width, ids.get(key, ())) for key, _, width in COLUMNS}

    def load(self) -> tuple[tuple[str | None, str], list[InboxItem]]:
        asked = (self.team, self.show_filter)
        return asked, self.app.client.human_inbox(asked[0], SHOWN, show=asked[1])

    def concerns(self, event: EventView) -> bool:
        return event.instance is not None and self.team in (None, event.team)

    def show(self, payload: tuple[tuple[str | None, str], list[InboxItem]]) -> None:
        asked, rows = payload
        if asked != (self.team, self.show_filter):
            return  # read for a team or filter since changed
        self.rows, self.rows_for, self._read_at = rows, asked, utcnow()
        self._draw()

    def _draw(self) -> None:
        """The rows as read, "due in" and "overdue by" measured from the store's clock at the read (as
        `overdue` was) moved on by the time since, so they go on counting between reads."""
        rows, since = self.rows, utcnow() - self._read_at
        table = self.query_one("#inbox-table", DataTable)
        keep = self.selected.id if self.selected else None
        widths = self._widths(rows)
        table.clear(columns=widths != self._shown_widths)
        if not table.columns:
            self._add_columns(table, widths)
        overdue = 0
        for item in rows:
            view, run = item.instance, item.run
            workflow = f"{run.team}/{run.workflow} v{run.version}" if run else view.team
            now = item.checked_at + since if item.checked_at else utcnow()
            late = item.overdue or (view.due_at is not None and view.due_at <= now)
            overdue += late
            table.add_row(Text(str(view.id), justify="right"), cell(view.task, 16), str(view.run),
                          cell(workflow, 26), Text(due_text(view.due_at, now) or "-", style="bold red" if late else ""),
                          cell(view.taken_by or "-", 14),
                          cell(wire.dumps(run.params) if run and run.params else "-", 24),
                          shown(view.offered_at or view.updated_at), key=str(view.id))  # a take moves updated_at
        ids = [item.instance.id for item in rows]
        if keep in ids:
            table.move_cursor(row=ids.index(keep), scroll=False)
        team, show = self.rows_for  # not the filter chosen since: its read may still be under way
        who = f"team {team}" if team else "all teams"
        waiting = f"the first {len(rows)} human task(s) waiting, more may wait" if len(rows) >= SHOWN \
            else f"{len(rows)} human task(s) waiting"  # the read stops at SHOWN
        self.query_one("#inbox-summary", Static).update(
            f"  {waiting} ({who}, {dict((v, k) for k, v in SHOWS)[show]})"
            + (f", {overdue} overdue" if overdue else ""))

    @property
    def selected_item(self) -> InboxItem | None:
        table = self.query_one("#inbox-table", DataTable)
        if not self.rows or not table.row_count:
            return None
        return self.rows[min(table.cursor_row, len(self.rows) - 1)]

    @property
    def selected(self) -> InstanceView | None:
        item = self.selected_item
        return item.instance if item else None

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "inbox-show":
            if event.value != self.show_filter:
                self.show_filter = event.value
                self.reload()
            return
        team = None if event.value is Select.NULL else event.value
        if team != self.team:
            self.team = team
            self.reload()

    def action_take(self) -> None:
        from tui.actions import take

        take(self.app, self.selected)

    def action_give(self) -> None:
        from tui.screens.modals import GiveModal

        if (instance := self.selected) is None:
            self.app.notify("no human task selected", severity="warning")
            return
        self.app.push_screen(GiveModal(instance))

    def action_hand_back(self) -> None:
        instance = self.selected
        if instance is None:
            self.app.notify("no human task selected", severity="warning")
            return
        app = self.app

        def done(_answer: object) -> None:
            app.notify(f"handed back human task {instance.id}", title="Done")
            app.feed.poke()

        if off_ui(app, f"handing back human task {instance.id}", lambda: app.client.hand_back(instance.id), done):
            app.notify(f"handing back human task {instance.id}…")

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def _open(self, instance_id: int) -> None:
        from tui.screens.human import HumanTaskScreen

        try:
            self.app.push_screen(HumanTaskScreen(instance_id))
        except Exception as exc:  # gone since it was listed, or the database failed
            if not notify_refusal(self.app, exc):
                raise

    def commands(self) -> list[tuple[str, str, Any]]:
        return [(f"Open human task {item.instance.id} ({item.instance.task} of run {item.instance.run})",
                 f"fill in its form and submit it; who may: {item.who}",
                 lambda view=item.instance: self._open(view.id)) for item in self.rows[:50]]
