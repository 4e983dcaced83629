"""A screen that finishes one task instance by hand with a typed output: what it got on the left, a
form generated from its output type and a note on the right. The human task and "set output" differ
only in what they say, what they require of the note, and which client call they make."""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Static

from flow45.views import EventView, InstanceView
from tui import data
from tui.background import off_ui
from tui.screens.base import LiveScreen
from tui.screens.instance import inputs_table
from tui.widgets.forms import TypeForm


@dataclasses.dataclass
class HumanPayload:
    instance: InstanceView
    inputs: data.Inputs
    upstream_ids: frozenset[int]


class TypedOutputScreen(LiveScreen):
    CSS_PATH = "human.tcss"
    # The first field, as the screen opens: focused after a refresh instead, it was taken from a field
    # the operator had already moved to (on a loaded machine, keys typed there went to the dashboard).
    AUTO_FOCUS = "#human-form Input, #human-form Select"
    NOTE_LABEL = ""
    NOTE_PLACEHOLDER = ""
    NOTE_ID = ""
    SEND_LABEL = ""

    def __init__(self, instance_id: int):
        super().__init__()
        self.instance_id = instance_id
        view = self.app.client.instance(instance_id)
        self.spec = self.app.client.run_spec(view.run)
        self.task_name = view.task
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
                yield Label(self.NOTE_LABEL, id="human-comment-label")
                yield Input(placeholder=self.NOTE_PLACEHOLDER, id=self.NOTE_ID)
                yield Static("", id="human-refusal", classes="-empty")
                yield Button(f"{self.SEND_LABEL} as {self.app.actor}", variant="primary", id="human-submit")
        yield Footer()

    def load(self) -> HumanPayload:
        client = self.app.client
        view = client.instance(self.instance_id)
        run = client.run_row(view.run)
        known = self.payload.inputs.ids if self.payload else None  # an instance's upstream never changes
        inputs = data.instance_inputs(client, view, self.spec, run.params if run else None, known)
        return HumanPayload(view, inputs, frozenset(inputs.ids.values()))

    def concerns(self, event: EventView) -> bool:
        upstream = self.payload.upstream_ids if self.payload else frozenset()
        return event.instance == self.instance_id or event.instance in upstream

    def show_payload(self, payload: HumanPayload, info: Text, sendable: bool) -> None:
        self.payload = payload
        self.query_one("#human-info", Static).update(info)
        self.query_one("#human-inputs-table", Static).update(inputs_table(payload.inputs))
        self.query_one("#human-submit", Button).disabled = not sendable

    def refuse(self, message: str | None) -> None:
        self._say(Text.assemble(("Refused: ", "bold"), message) if message else None)

    def _say(self, text: Text | None, under_way: bool = False) -> None:
        shown = self.query_one("#human-refusal", Static)
        shown.update(text or "")
        shown.set_class(not text, "-empty")
        shown.set_class(under_way, "-under-way")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        if event.button.id == "human-submit":
            event.stop()
            self.action_submit()

    def note_problem(self, note: str) -> str | None:
        return None

    def send(self, output: dict, note: str) -> str:
        """Make the client call; return what to tell the operator once it is done."""
        raise NotImplementedError

    def action_submit(self) -> None:
        if self.query_one("#human-submit", Button).disabled:
            return
        output, ok = self.query_one("#human-form", TypeForm).check()
        if not ok:
            self.refuse("some fields are not valid: see the messages under them")
            return
        note = self.query_one(f"#{self.NOTE_ID}", Input).value.strip()
        if (problem := self.note_problem(note)) is not None:
            self.refuse(problem)
            return
        if off_ui(self.app, f"{self.SEND_LABEL.lower()} of instance {self.instance_id}",
                  lambda: self.send(output, note), self._sent, self._refused):
            self.query_one("#human-submit", Button).disabled = True  # one at a time
            self._say(Text(f"{self.SEND_LABEL}: under way, waiting for the answer…"), under_way=True)

    def _sent(self, notice: str) -> None:
        self.app.notify(notice, title="Done")
        self.app.feed.poke()
        if self.app.screen is self:  # else left while it was under way: the notice says it all
            self.app.pop_screen()

    def _refused(self, message: str) -> None:
        if self.app.screen is not self:
            self.app.notify(f"{self.SEND_LABEL} of instance {self.instance_id}: {message}", title="Refused",
                            severity="error")
            return
        self.query_one("#human-submit", Button).disabled = False
        self.refuse(message)
