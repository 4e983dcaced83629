"""A worker task's output set by hand ("mark success", typed): what it got, a form generated from its
output type, and the reason; sending it finishes the task as the operator's attempt."""

from __future__ import annotations

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Static

from flow45.store.rules import SETTABLE
from flow45.views import EventView
from tui import data
from tui.screens.base import LiveScreen, refusal
from tui.screens.human import HumanPayload
from tui.screens.instance import inputs_table
from tui.widgets.forms import TypeForm
from tui.widgets.progress import state_text


class SetOutputScreen(LiveScreen):
    CSS_PATH = "human.tcss"  # the human task's layout: inputs on the left, the form on the right
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("ctrl+s", "submit", "Set output")]

    def __init__(self, instance_id: int):
        super().__init__()
        self.instance_id = instance_id
        view = self.app.client.instance(instance_id)
        self.spec = self.app.client.run_spec(view.run)
        self.output_type = self.spec.task(view.task).output
        self.payload: HumanPayload | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="human-info")
        with Horizontal(id="human-body"):
            with VerticalScroll(id="human-inputs"):
                yield Static("", id="human-inputs-table")
            with VerticalScroll(id="human-form-pane"):
                yield Label(f"Output: {self.output_type}", id="human-form-title")
                yield TypeForm(self.spec.types, self.output_type, id="human-form")
                yield Label("Reason (kept with the attempt and in the ledger)", id="human-comment-label")
                yield Input(placeholder="why the output is set by hand", id="set-output-reason")
                yield Static("", id="human-refusal", classes="-empty")
                yield Button(f"Set output as {self.app.actor}", variant="primary", id="human-submit")
        yield Footer()

    def on_mount(self) -> None:
        self.call_after_refresh(self._focus_first_field)

    def _focus_first_field(self) -> None:
        fields = self.query("#human-form Input, #human-form Select")
        if fields:
            fields.first().focus()

    def load(self) -> HumanPayload:
        client = self.app.client
        view = client.instance(self.instance_id)
        run = client.run_row(view.run)
        inputs = data.instance_inputs(client, view, self.spec, run.params if run else None)
        return HumanPayload(view, inputs, frozenset(client.instance_ids(view.run, view.upstream).values()))

    def concerns(self, event: EventView) -> bool:
        upstream = self.payload.upstream_ids if self.payload else frozenset()
        return event.instance == self.instance_id or event.instance in upstream

    def show(self, payload: HumanPayload) -> None:
        self.payload = payload
        i = payload.instance
        self.sub_title = f"set output · instance {i.id} · {i.task} of run {i.run}"
        info = Text.assemble(("Set the output of ", "bold"), (i.task, "bold"), f" (instance {i.id}) of run {i.run}   ",
                             state_text(i.state), f"   function {i.function}   attempt {i.attempt}")
        if i.state not in SETTABLE:
            info.append(f"\nIt is {i.state}: its output cannot be set now (undo a finished task first).", "bold red")
        else:
            info.append("\nChecked against its output type; kept as your attempt; downstream goes on as after a submit.")
        self.query_one("#human-info", Static).update(info)
        self.query_one("#human-inputs-table", Static).update(inputs_table(payload.inputs))
        self.query_one("#human-submit", Button).disabled = i.state not in SETTABLE

    def refuse(self, message: str | None) -> None:
        shown = self.query_one("#human-refusal", Static)
        shown.update(Text.assemble(("Refused: ", "bold"), message) if message else "")
        shown.set_class(not message, "-empty")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "human-submit":
            event.stop()
            self.action_submit()

    def action_submit(self) -> None:
        if self.query_one("#human-submit", Button).disabled:
            return
        output, ok = self.query_one("#human-form", TypeForm).check()
        if not ok:
            self.refuse("some fields are not valid: see the messages under them")
            return
        reason = self.query_one("#set-output-reason", Input).value.strip()
        if not reason:
            self.refuse("a reason is required")
            return
        try:
            self.app.client.set_output(self.instance_id, output, reason)
        except Exception as exc:
            if (message := refusal(exc)) is None:
                raise
            self.refuse(message)
            return
        self.refuse(None)
        self.app.notify(f"set the output of instance {self.instance_id} as {self.app.actor}", title="Done")
        self.app.feed.poke()
        self.app.pop_screen()
