"""One run: its instances as a DAG by dependency level, and the run's ledger beside it, live.

`[` and `]` step backwards and forwards through the run's ledger events: the DAG and the summary
show the run as it was after the marked event (rebuilt from the ledger by the client), until a step
past the newest event brings the live run back."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.widgets import Footer, Header, Static

from flow45 import states as S
from flow45.clock import shown, utcnow
from flow45.errors import Flow45Error
from flow45.timing import run_time, run_wait, short_span
from flow45.store.rules_human import relative_due
from flow45.store.specs import dependency_levels
from flow45.views import EventView, InstanceView, RunView
from tui.actions import INSTANCE_ACTIONS, instance_commands, open_cancel, open_instance_action
from tui.data import changed_instances
from tui.screens import base
from tui.screens.base import LiveScreen
from tui.widgets.dag import DagView
from tui.widgets.ledger import SHOWN, Ledger, newest
from tui.widgets.timeline import Timeline
from tui.widgets.progress import STATE_STYLES, done_bar, state_text


@dataclasses.dataclass
class RunPayload:
    run: RunView
    levels: dict[str, int]
    events: list[EventView]
    earlier: bool = False  # events older than `events` were left out


@dataclasses.dataclass
class RunChanges:
    run: RunView | None
    instances: list[InstanceView]


NOTES_SHOWN = 3  # the newest of a run's notes in its summary; `flow45 show` prints them all


def run_summary(run: RunView) -> Text:
    """Three short lines (they wrap, never cut): who and what; how far; when and how long."""
    text = Text.assemble(
        (f"Run {run.id}  ", "bold"), (f"{run.team}/{run.workflow} v{run.version}", "bold"),
        (run.newer_version(), "yellow"), ("  ", "bold"),
        state_text(run.status), f"  {run.trigger} by {run.triggered_by}\n", done_bar(run.counts, 12), "  ",
    )
    for index, (state, n) in enumerate(sorted(run.counts.items())):
        text.append(" · " if index else "")
        text.append(f"{n} {state}", STATE_STYLES.get(state, ""))
    now = run.as_of_at or utcnow()
    text.append(f"\ncreated {shown(run.created_at)} · started {shown(run.started_at)} · finished {shown(run.finished_at)}"
                f" · queued {short_span(run_wait(run, now))} · ran {short_span(run_time(run, now))} · "
                f"{run.attempts_made} attempt{'s' if run.attempts_made != 1 else ''}", "bright_black")
    if run.logical_time:
        text.append(f" · logical time {shown(run.logical_time)}", "bright_black")
    if run.key:
        text.append(f" · key {run.key}", "bright_black")
    if run.cancelled_by:
        text.append(f"\ncancelled by {run.cancelled_by}" + (f": {run.cancel_reason}" if run.cancel_reason else ""),
                    STATE_STYLES.get(S.CANCELLED, ""))
    for note in run.notes[-NOTES_SHOWN:]:
        text.append("\n" + note.said(), "italic")
    if run.waiting_for:
        text.append(f"\nwaiting for {relative_due(run.waiting_for, now)}", "magenta")
    if run.params:
        text.append(f"\nparams {json.dumps(run.params)}", "bright_black")
    if run.as_of is not None:
        text.append(f"\nas it was at ledger event {run.as_of} ({shown(run.as_of_at)}): [ earlier · ] later",
                    "bold yellow")
    return text


class RunScreen(LiveScreen):
    CSS_PATH = "run.tcss"
    AUTO_FOCUS = "#run-dag"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        *[Binding(key, f"act('{name}')", label) for key, name, label, _ in INSTANCE_ACTIONS],
        Binding("c", "cancel_run", "Cancel run"),
        Binding("n", "note", "Note"),
        Binding("left_square_bracket", "step(-1)", "Earlier"),
        Binding("right_square_bracket", "step(1)", "Later"),
        Binding("g", "toggle_timeline", "Timeline"),
    ]

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.run: RunView | None = None
        self.levels: dict[str, int] = {}
        self.steps: list[int] = []  # the ids of the run's events in the ledger pane, oldest first
        self.step_at: int | None = None  # the index in `steps` shown while looking back; None: live

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-info")
        with Horizontal(id="run-body"):
            with Vertical(id="run-left"):
                yield DagView(id="run-dag")
                yield Timeline(id="run-timeline")
            yield Ledger(run=self.run_id, id="run-ledger")
        yield Footer()

    @property
    def dag(self) -> DagView:
        return self.query_one("#run-dag", DagView)

    @property
    def timeline(self) -> Timeline:
        return self.query_one("#run-timeline", Timeline)

    def on_mount(self) -> None:
        self.set_interval(base.RECOUNT_EVERY, self._recount)

    def _recount(self) -> None:
        """An open run's times ("ran", "due in", its attempts' and timeline's) move on with the clock, not
        only when an event brings a read: drawn again from what was read."""
        if self.run is None or self.step_at is not None or self.run.status not in S.OPEN_RUN:
            return
        self.query_one("#run-info", Static).update(run_summary(self.run))
        self.dag.update_instances(self.dag.instances)
        self.timeline.refresh()

    def action_toggle_timeline(self) -> None:
        self.timeline.display = not self.timeline.display

    # ---- reading ------------------------------------------------------------------------------

    def load(self) -> RunPayload:
        client = self.app.client
        run = client.run(self.run_id)
        levels = dependency_levels(client.run_spec(self.run_id).workflow)
        return RunPayload(run, levels, *newest(client.tail_events(run=self.run_id, n=SHOWN + 1)))

    def fetch_changes(self, events: list[EventView]) -> RunChanges | None:
        found = changed_instances(self.app.client, self.run_id, events, len(self.run.instances) if self.run else 0)
        return None if found is None else RunChanges(*found)

    # ---- showing ------------------------------------------------------------------------------

    def show(self, payload: RunPayload) -> None:
        self.run, self.levels, self.step_at = payload.run, payload.levels, None
        self.sub_title = f"run {self.run.id} · {self.run.team}/{self.run.workflow}"
        self.query_one("#run-info", Static).update(run_summary(payload.run))
        self.dag.as_of = None
        self.dag.show(payload.run.instances, payload.levels)
        self.dag.border_title = None
        self.timeline.show(payload.run)
        ledger = self.query_one("#run-ledger", Ledger)
        ledger.names = {i.id: i.task for i in payload.run.instances}
        ledger.show(payload.events, earlier=payload.earlier)
        ledger.mark(None)
        self.steps = [e.id for e in payload.events if e.run == self.run_id]

    def apply_changes(self, events: list[EventView], payload: RunChanges | None) -> None:
        if payload is None:
            return
        last = self.steps[-1] if self.steps else 0
        self.steps += [e.id for e in events if e.run == self.run_id and e.id > last]
        self.query_one("#run-ledger", Ledger).add(events)
        if payload.run is not None:
            notes = payload.run.notes or (self.run.notes if self.run else [])  # a run's row alone has none
            payload = dataclasses.replace(payload, run=dataclasses.replace(payload.run, notes=notes))
            self.run = dataclasses.replace(payload.run, instances=self.run.instances if self.run else [])
        if self.step_at is not None:
            return  # looking back: the past does not change
        if payload.run is not None:
            self.query_one("#run-info", Static).update(run_summary(payload.run))
        self.dag.update_instances(payload.instances)
        if self.run is not None:
            self.timeline.show(dataclasses.replace(self.run, instances=self.dag.instances))

    # ---- the run as it was ----------------------------------------------------------------------

    def action_step(self, delta: int) -> None:
        """Show the run as it was one ledger event earlier (-1) or later (1); later than the newest is live."""
        if not self.steps:
            return
        if self.step_at is None and delta > 0:
            self.app.notify("This is the run as it is now: [ steps back through its ledger.", title="Newest")
            return
        index = (len(self.steps) - 1 if self.step_at is None else self.step_at) + delta
        if index >= len(self.steps) - 1:
            self.reload()  # the newest event: the run as it is, live again
            return
        index = max(0, index)
        try:
            view = self.app.client.run_as_of(self.run_id, event=self.steps[index])
        except Flow45Error as exc:
            self.app.notify(exc.message, title="Refused", severity="error")
            return
        self.step_at = index
        self.query_one("#run-info", Static).update(run_summary(view))
        self.dag.as_of = view.as_of_at
        self.dag.show(view.instances, self.levels)
        self.dag.border_title = f"as it was at event {view.as_of}"
        self.timeline.show(view, as_of=view.as_of_at)
        self.query_one("#run-ledger", Ledger).mark(view.as_of)

    # ---- acting -------------------------------------------------------------------------------

    def on_dag_view_selected(self, event: DagView.Selected) -> None:
        from tui.screens.instance import InstanceScreen

        self.app.push_screen(InstanceScreen(event.instance.id))

    def action_act(self, name: str) -> None:
        open_instance_action(self.app, name, self.dag.cursor_instance)

    def action_cancel_run(self) -> None:
        open_cancel(self.app, self.run)

    def action_note(self) -> None:
        from tui.screens.modals import NoteModal

        if self.run is not None:
            self.app.push_screen(NoteModal(self.run))

    def commands(self) -> list[tuple[str, str, Any]]:
        entries = instance_commands(self.app, self.dag.cursor_instance)
        if self.run is not None:
            entries.append((f"Cancel run {self.run.id}", f"{self.run.team}/{self.run.workflow} is {self.run.status}",
                            self.action_cancel_run))
            entries.append((f"Note on run {self.run.id}", "what you noticed or decided, kept in its ledger",
                            self.action_note))
        return entries
