"""One run: its instances as a DAG by dependency level, and the run's ledger beside it, live."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal
from textual.widgets import Footer, Header, Static

from flow45.store.specs import dependency_levels
from flow45.views import EventView, InstanceView, RunView
from tui.actions import INSTANCE_ACTIONS, instance_commands, open_cancel, open_instance_action
from tui.screens.base import LiveScreen
from tui.widgets.dag import DagView
from tui.widgets.ledger import Ledger
from tui.widgets.progress import STATE_STYLES, done_bar, state_text, when

MANY = 25  # more changed instances than this in one tick: read the whole run once instead


@dataclasses.dataclass
class RunPayload:
    run: RunView
    levels: dict[str, int]
    events: list[EventView]


@dataclasses.dataclass
class RunChanges:
    run: RunView | None
    instances: list[InstanceView]


def run_summary(run: RunView) -> Text:
    text = Text.assemble(
        (f"Run {run.id}  ", "bold"), (f"{run.team}/{run.workflow} v{run.version}  ", "bold"),
        state_text(run.status), f"   {run.trigger} by {run.triggered_by}",
        f"   logical time {when(run.logical_time)}\n" if run.logical_time else "\n",
        f"created {when(run.created_at)}   started {when(run.started_at)}   finished {when(run.finished_at)}   ",
        done_bar(run.counts, 12), "   ",
    )
    for index, (state, n) in enumerate(sorted(run.counts.items())):
        text.append(" · " if index else "")
        text.append(f"{n} {state}", STATE_STYLES.get(state, ""))
    if run.waiting_for:
        text.append(f"\nwaiting for {run.waiting_for}", "magenta")
    if run.params:
        text.append(f"\nparams {json.dumps(run.params)}", "bright_black")
    return text


class RunScreen(LiveScreen):
    CSS_PATH = "run.tcss"
    AUTO_FOCUS = "#run-dag"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        *[Binding(key, f"act('{name}')", label) for key, name, label, _ in INSTANCE_ACTIONS],
        Binding("c", "cancel_run", "Cancel run"),
    ]

    def __init__(self, run_id: int):
        super().__init__()
        self.run_id = run_id
        self.run: RunView | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="run-info")
        with Horizontal(id="run-body"):
            yield DagView(id="run-dag")
            yield Ledger(run=self.run_id, id="run-ledger")
        yield Footer()

    @property
    def dag(self) -> DagView:
        return self.query_one("#run-dag", DagView)

    # ---- reading ------------------------------------------------------------------------------

    def load(self) -> RunPayload:
        client = self.app.client
        run = client.run(self.run_id)
        levels = dependency_levels(client.run_spec(self.run_id).workflow)
        return RunPayload(run, levels, client.tail_events(run=self.run_id, n=300))

    def fetch_changes(self, events: list[EventView]) -> RunChanges | None:
        mine = [e for e in events if e.run == self.run_id]
        if not mine:
            return None
        client = self.app.client
        changed = sorted({e.instance for e in mine if e.instance is not None})
        if len(changed) > MANY:
            instances = client.run(self.run_id).instances
        else:
            instances = [client.instance(i) for i in changed]
        return RunChanges(client.run_row(self.run_id), instances)

    # ---- showing ------------------------------------------------------------------------------

    def show(self, payload: RunPayload) -> None:
        self.run = payload.run
        self.sub_title = f"run {self.run.id} · {self.run.team}/{self.run.workflow}"
        self.query_one("#run-info", Static).update(run_summary(payload.run))
        self.dag.show(payload.run.instances, payload.levels)
        ledger = self.query_one("#run-ledger", Ledger)
        ledger.names = {i.id: i.task for i in payload.run.instances}
        ledger.show(payload.events)

    def apply_changes(self, events: list[EventView], payload: RunChanges | None) -> None:
        if payload is None:
            return
        if payload.run is not None:
            self.run = dataclasses.replace(payload.run, instances=self.run.instances if self.run else [])
            self.query_one("#run-info", Static).update(run_summary(payload.run))
        self.dag.update_instances(payload.instances)
        self.query_one("#run-ledger", Ledger).add(events)

    # ---- acting -------------------------------------------------------------------------------

    def on_dag_view_selected(self, event: DagView.Selected) -> None:
        from tui.screens.instance import InstanceScreen

        self.app.push_screen(InstanceScreen(event.instance.id))

    def action_act(self, name: str) -> None:
        open_instance_action(self.app, name, self.dag.cursor_instance)

    def action_cancel_run(self) -> None:
        open_cancel(self.app, self.run)

    def commands(self) -> list[tuple[str, str, Any]]:
        entries = instance_commands(self.app, self.dag.cursor_instance)
        if self.run is not None:
            entries.append((f"Cancel run {self.run.id}", f"{self.run.team}/{self.run.workflow} is {self.run.status}",
                            self.action_cancel_run))
        return entries
