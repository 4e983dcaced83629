"""The runs screen: every team's runs, newest first, filtered, with counts per status.

Runs are read a page at a time (keyset pages by id), and the next page only when the cursor nears
the end of what is loaded, so a store of any size opens as fast as one of a hundred runs. Live
changes update the rows they touch in place; new runs appear at the top with the cursor kept on
the run it was on.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import DataTable, Footer, Header, Input, Select, Static

from flow45 import states as S
from flow45.clock import utcnow
from flow45.store.rules_human import relative_due
from flow45.timing import run_time, short_span
from flow45.views import EventView, RunView
from tui import data
from tui.actions import open_cancel
from tui.screens import base
from tui.screens.base import LiveScreen
from tui.widgets.progress import STATE_STYLES, cell, done_bar, id_width, state_text

# What matters first (state, progress, what it waits for), so a narrow terminal shows it; the rest
# follows as the width allows, and scrolls sideways below that. Widths per layout: narrow (under 110
# columns), medium (under 170), wide.
COLUMNS = [
    ("run", "run", (5, 6, 6)), ("workflow", "team/workflow", (22, 26, 26)), ("status", "status", (11, 11, 11)),
    ("progress", "progress", (11, 11, 11)), ("waiting", "waiting for", (18, 28, 40)),
    ("trigger", "trigger", (14, 22, 22)), ("ran", "ran", (7, 7, 7)), ("logical", "logical time", (12, 12, 12)),
    ("started", "started", (11, 11, 11)), ("finished", "finished", (11, 11, 11)),
]


def layout_for(width: int) -> int:
    return 0 if width < 110 else 1 if width < 170 else 2
NEAR_END = 10  # rows from the end of what is loaded at which the next page is read


@dataclasses.dataclass
class RunsPayload:
    rows: list[RunView]  # newest first
    counts: dict[str, int] | None
    filter: data.RunFilter
    replace: bool = False  # the rows are the whole list (else: updates and new runs)


def run_cells(run: RunView, layout: int = 0) -> list[Any]:
    """The row's cells in COLUMNS' order, each within its width in `layout`."""
    w = {key: widths[layout] for key, _, widths in COLUMNS}
    return [
        Text(str(run.id), justify="right"), cell(f"{run.team}/{run.workflow} v{run.version}", w["workflow"]),
        state_text(run.status), done_bar(run.counts, 6, fits=w["progress"]),
        cell(relative_due(run.waiting_for, utcnow()), w["waiting"]),
        cell(f"{run.trigger} by {run.triggered_by}", w["trigger"]),
        Text(short_span(run_time(run, utcnow())), justify="right"), day_minute(run.logical_time),
        day_minute(run.started_at), day_minute(run.finished_at),
    ]


def day_minute(value) -> str:
    """`03-01 12:00`: a list's times, to the minute (the run screen gives them in full)."""
    return "-" if value is None else value.strftime("%m-%d %H:%M")


class RunsTable(DataTable):
    BINDINGS = [
        Binding("enter", "select_cursor", "Open run"),
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last", show=False),
    ]


class RunsScreen(LiveScreen):
    close_on_failure = False
    CSS_PATH = "runs.tcss"
    AUTO_FOCUS = "#runs-table"
    BINDINGS = [
        Binding("slash", "focus_filter", "Filter"),
        Binding("c", "cancel_run", "Cancel run"),
        Binding("m", "mark", "Mark"),
        Binding("R", "bulk('retry')", "Retry marked"),
        Binding("S", "bulk('skip')", "Skip marked", show=False),
        Binding("U", "bulk('undo')", "Undo marked", show=False),
        Binding("X", "bulk('cancel')", "Cancel marked", show=False),
        Binding("p", "pause", "Pause/resume", show=False),
        Binding("b", "backfill", "Backfill", show=False),
        Binding("escape", "clear_filters", "Clear filters"),
    ]

    def __init__(self) -> None:
        super().__init__()
        self.filter = data.RunFilter()
        self.marked: set[int] = set()  # runs marked for a bulk action
        self.loaded: list[int] = []  # run ids in the table, newest first
        self.loaded_set: frozenset[int] = frozenset()
        self.views: dict[int, RunView] = {}
        self.exhausted = False
        self.counts: dict[str, int] = {}
        self._teams = data.teams_and_workflows(self.app.client)
        self.column_layout = 0  # which widths of COLUMNS; set from the width when the screen is sized
        self._id_width = 0  # the run column's width as added

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="runs-counts")
        with Horizontal(id="runs-filters"):
            yield Input(placeholder="/ search: workflow, team, who, params, run id", id="runs-text")
            yield Select([(t, t) for t in self._teams], prompt="all teams", id="runs-team")
            yield Select([], prompt="all workflows", id="runs-workflow")
            yield Select([(s, s) for s in S.RUN_STATES], prompt="any status", id="runs-status")
        yield RunsTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        yield Static("", id="runs-pager")
        yield Footer()

    def on_mount(self) -> None:
        self._add_columns(self.query_one("#runs-table", DataTable))
        self._set_workflow_options()
        self.set_interval(base.RECOUNT_EVERY, self._recount)

    def _recount(self) -> None:
        """An open run's "ran" and its human tasks' "due in" move on with the clock, not only when an
        event brings a read: their cells are drawn again from what was read."""
        table = self.query_one("#runs-table", DataTable)
        for run_id in self.loaded:
            run = self.views[run_id]
            if run.status in S.OPEN_RUN:
                cells = dict(zip((key for key, _, _ in COLUMNS), self._cells(run)))
                for key in ("waiting", "ran"):
                    table.update_cell(str(run_id), key, cells[key])

    def _add_columns(self, table: DataTable) -> None:
        self._id_width = self._wanted_id_width()
        for key, label, widths in COLUMNS:
            table.add_column(label, key=key, width=self._id_width if key == "run" else widths[self.column_layout])

    def _wanted_id_width(self) -> int:
        """Wide enough for the largest run id shown, and a mark before it."""
        return id_width(COLUMNS[0][2][self.column_layout], self.loaded, 2 if self.marked else 0)

    def on_resize(self, event) -> None:
        super().on_resize(event)
        layout = layout_for(event.size.width)
        if layout != self.column_layout:
            self.column_layout = layout
            table = self.query_one("#runs-table", DataTable)
            keep = self._cursor_run(table)
            table.clear(columns=True)
            self._add_columns(table)
            self._rebuild(table, keep)

    # ---- reading ------------------------------------------------------------------------------

    def load(self) -> RunsPayload:
        client = self.app.client
        rows = client.runs(self.filter, limit=data.PAGE)
        return RunsPayload(rows, client.status_counts(self.filter), self.filter, replace=True)

    def concerns(self, event: EventView) -> bool:
        return event.run is not None

    def fetch_changes(self, events: list[EventView]) -> RunsPayload | None:
        f = self.filter
        found = data.changed_runs(self.app.client, f, self.loaded_set, events)
        return None if found is None else RunsPayload(*found, f)

    # ---- showing ------------------------------------------------------------------------------

    def show(self, payload: RunsPayload) -> None:
        table = self.query_one("#runs-table", DataTable)
        if payload.replace:
            self.views = {run.id: run for run in payload.rows}
            self.loaded = [run.id for run in payload.rows]
            self.exhausted = len(payload.rows) < data.PAGE
            self._rebuild(table, keep=self._cursor_run(table))
        else:
            self._merge(table, payload.rows)
        if payload.counts is not None:
            self.counts = payload.counts
        self._show_counts()

    def apply_changes(self, events: list[EventView], payload: RunsPayload | None) -> None:
        if payload is not None and payload.filter == self.filter:  # else read for a filter since changed
            self.show(payload)

    def _cursor_run(self, table: DataTable) -> int | None:
        if not table.row_count:
            return None
        return int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _rebuild(self, table: DataTable, keep: int | None, shift: int = 0) -> None:
        """Refill the table; the cursor stays on run `keep` and the view moves with it."""
        scroll_y = table.scroll_y
        table.clear(columns=self._wanted_id_width() != self._id_width)
        if not table.columns:
            self._add_columns(table)
        for run_id in self.loaded:
            table.add_row(*self._cells(self.views[run_id]), key=str(run_id))
        self.loaded_set = frozenset(self.loaded)
        if keep in self.loaded_set:
            table.move_cursor(row=self.loaded.index(keep), scroll=False)
            table.scroll_to(y=scroll_y + shift, animate=False, immediate=True)
        self._show_pager()

    def _merge(self, table: DataTable, rows: list[RunView]) -> None:
        newest = self.loaded[0] if self.loaded else 0
        fresh = sorted((r for r in rows if r.id > newest), key=lambda r: r.id, reverse=True)
        for run in rows:
            self.views[run.id] = run
        for run in rows:
            if run.id in self.loaded_set:
                for (key, _, _), value in zip(COLUMNS, self._cells(run)):
                    table.update_cell(str(run.id), key, value)
        if fresh:
            self.loaded = [r.id for r in fresh] + self.loaded
            self._rebuild(table, keep=self._cursor_run(table), shift=len(fresh))

    def _load_more(self) -> None:
        if self.exhausted or not self.loaded:
            return
        rows = self.app.client.runs(self.filter, before=self.loaded[-1], limit=data.PAGE)
        self.exhausted = len(rows) < data.PAGE
        table = self.query_one("#runs-table", DataTable)
        for run in rows:
            if run.id not in self.views:
                self.views[run.id] = run
                self.loaded.append(run.id)
                table.add_row(*self._cells(run), key=str(run.id))
        self.loaded_set = frozenset(self.loaded)
        self._show_pager()

    def _show_counts(self) -> None:
        text = Text.assemble(("Runs ", "bold"), (f"({self.filter.describe()})  ", "bright_black"))
        for status in S.RUN_STATES:
            n = self.counts.get(status, 0)
            text.append(f"{n:,} ", STATE_STYLES.get(status, "") if n else "bright_black")
            text.append(f"{status}   ", "bright_black" if not n else "")
        text.append(f"total {sum(self.counts.values()):,}", "bold")
        self.query_one("#runs-counts", Static).update(text)

    def _show_pager(self) -> None:
        more = "" if self.exhausted else " · more load as you scroll down"
        self.query_one("#runs-pager", Static).update(f"{len(self.loaded):,} runs loaded, newest first{more}")

    # ---- filters ------------------------------------------------------------------------------

    def _set_workflow_options(self) -> None:
        team = self.filter.team
        names = sorted({n for t, ns in self._teams.items() if team in (None, t) for n in ns})
        self.query_one("#runs-workflow", Select).set_options([(n, n) for n in names])

    def show_workflow(self, team: str, workflow: str) -> None:
        """Filter to one workflow's runs (from the workflows screen), whatever else was chosen."""
        self._teams = data.teams_and_workflows(self.app.client)  # it may have been deployed since
        team_select = self.query_one("#runs-team", Select)
        team_select.set_options([(t, t) for t in self._teams])
        self.filter = dataclasses.replace(self.filter, team=team, workflow=workflow)
        team_select.value = team
        self._set_workflow_options()
        self.query_one("#runs-workflow", Select).value = workflow
        self.reload()

    def _refilter(self, **changes: Any) -> None:
        self.filter = dataclasses.replace(self.filter, **changes)
        self.reload()

    def on_select_changed(self, event: Select.Changed) -> None:
        value = None if event.value is Select.NULL else event.value
        if event.select.id == "runs-team" and value != self.filter.team:
            self.filter = dataclasses.replace(self.filter, team=value, workflow=None)
            self._set_workflow_options()
            self.reload()
        elif event.select.id == "runs-workflow" and value != self.filter.workflow:
            self._refilter(workflow=value)
        elif event.select.id == "runs-status" and value != self.filter.status:
            self._refilter(status=value)

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-text":
            self.set_timer(0.3, lambda: self._search_settled(event.value))

    def _search_settled(self, text: str) -> None:
        """Search once typing pauses, not at every key."""
        if self.query_one("#runs-text", Input).value == text and self.filter.text != text:
            self._refilter(text=text)

    def on_input_submitted(self, event: Input.Submitted) -> None:
        if event.input.id == "runs-text":
            if self.filter.text != event.value:
                self._refilter(text=event.value)
            self.query_one("#runs-table").focus()

    def action_focus_filter(self) -> None:
        self.query_one("#runs-text", Input).focus()

    def action_clear_filters(self) -> None:
        if self.focused is not None and self.focused.id == "runs-text":
            self.query_one("#runs-table").focus()
            return
        self.query_one("#runs-text", Input).value = ""
        for select_id in ("#runs-team", "#runs-workflow", "#runs-status"):
            self.query_one(select_id, Select).clear()
        self.filter = data.RunFilter()
        self._set_workflow_options()
        self.reload()

    # ---- moving and acting --------------------------------------------------------------------

    def on_data_table_row_highlighted(self, event: DataTable.RowHighlighted) -> None:
        if event.cursor_row >= event.data_table.row_count - NEAR_END:
            self._load_more()

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self._open(int(event.row_key.value))

    def _open(self, run_id: int) -> None:
        from tui.screens.run import RunScreen

        self.app.push_screen(RunScreen(run_id))

    @property
    def selected_run(self) -> RunView | None:
        run = self._cursor_run(self.query_one("#runs-table", DataTable))
        return self.views.get(run) if run is not None else None

    def action_cancel_run(self) -> None:
        open_cancel(self.app, self.selected_run)

    def _cells(self, run: RunView) -> list[Any]:
        cells = run_cells(run, self.column_layout)
        if run.id in self.marked:
            cells[0] = Text(f"✓ {run.id}", justify="right")
        return cells

    def action_mark(self) -> None:
        """Mark the run under the cursor for a bulk action (again: unmark it); its id shows a ✓."""
        table = self.query_one("#runs-table", DataTable)
        run = self._cursor_run(table)
        if run is None:
            return
        self.marked ^= {run}
        if self._wanted_id_width() != self._id_width:
            self._rebuild(table, keep=run)
        else:
            table.update_cell(str(run), "run", Text(("✓ " if run in self.marked else "") + str(run), justify="right"))

    def action_bulk(self, action: str) -> None:
        """Retry, skip, undo or cancel across the marked runs (or the selected one): the plan, then one confirmation."""
        from tui.screens.bulk import BulkModal

        chosen = sorted(self.marked) or ([self.selected_run.id] if self.selected_run else [])
        if not chosen:
            self.app.notify("no run marked (m) or selected", severity="warning")
            return
        self.app.push_screen(BulkModal(action, chosen), lambda done: done and self._unmark_all())

    def action_pause(self) -> None:
        """Pause the selected run's workflow (triggers queued or refused), or resume it if paused."""
        from tui.screens.workflow_tools import PauseModal

        if (run := self.selected_run) is not None:
            self.app.push_screen(PauseModal(run.team, run.workflow))

    def action_backfill(self) -> None:
        from tui.screens.workflow_tools import BackfillModal

        if (run := self.selected_run) is not None:
            self.app.push_screen(BackfillModal(run.team, run.workflow))

    def _unmark_all(self) -> None:
        table = self.query_one("#runs-table", DataTable)
        for run in self.marked & self.loaded_set:
            table.update_cell(str(run), "run", Text(str(run), justify="right"))
        self.marked = set()

    def commands(self) -> list[tuple[str, str, Any]]:
        run = self.selected_run
        if run is None:
            return []
        return [
            (f"Open run {run.id}", f"{run.team}/{run.workflow}: its instances and ledger", lambda: self._open(run.id)),
            (f"Cancel run {run.id}", f"{run.team}/{run.workflow} is {run.status}", self.action_cancel_run),
            (f"Pause or resume {run.team}/{run.workflow} (p)",
             "paused: its schedule makes no runs, triggers wait as queued or are refused; resumed: queued runs start",
             self.action_pause),
            (f"Backfill {run.team}/{run.workflow} (b)", "a run per schedule tick in a range, listed first",
             self.action_backfill),
            *[(f"{a.title()} in the marked runs ({key})", "plan first, then one confirmation",
               lambda a=a: self.action_bulk(a)) for a, key in (("retry", "R"), ("skip", "S"), ("undo", "U"),
                                                              ("cancel", "X"))],
        ]
