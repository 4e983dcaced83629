"""A human task: what it got, who has it and when it is due, and a form generated from its output
type with a comment; submitting completes it as the operator (refused, in the form, for someone who
may not decide it or while someone else has it). `ctrl+t` takes it."""

from __future__ import annotations

import dataclasses

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Button, Footer, Header, Input, Label, Static

from flow45 import states as S
from flow45.clock import utcnow
from flow45.store.rules_human import due_text, run_assignments
from flow45.views import EventView, InstanceView
from tui import data
from tui.screens.base import LiveScreen, refusal
from tui.screens.instance import inputs_table
from tui.widgets.forms import TypeForm
from tui.widgets.progress import state_text


@dataclasses.dataclass
class HumanPayload:
    instance: InstanceView
    inputs: data.Inputs
    upstream_ids: frozenset[int]


class HumanTaskScreen(LiveScreen):
    CSS_PATH = "human.tcss"
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("ctrl+s", "submit", "Submit"),
                Binding("ctrl+t", "take", "Take")]

    def __init__(self, instance_id: int):
        super().__init__()
        self.instance_id = instance_id
        view = self.app.client.instance(instance_id)
        self.spec = self.app.client.run_spec(view.run)
        self.output_type = self.spec.task(view.task).output
        self.assignment = run_assignments(self.spec).get(view.task)
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
                yield Label("Comment (kept with the decision)", id="human-comment-label")
                yield Input(placeholder="why you decided so", id="human-comment")
                yield Static("", id="human-refusal", classes="-empty")
                yield Button(f"Submit as {self.app.actor}", variant="primary", id="human-submit")
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
        self.sub_title = f"human task {i.id} · {i.task} of run {i.run}"
        info = Text.assemble((f"Human task {i.id}  ", "bold"), (i.task, "bold"), f" of run {i.run}   ",
                             state_text(i.state), f"   function {i.function}   attempt {i.attempt}")
        if i.state != S.AVAILABLE:
            by = f" by {i.worker}" if i.worker else ""
            info.append(f"\nNo longer available: it is {i.state}{by}. Nothing can be submitted.", "bold red")
        else:
            now = utcnow()
            overdue = i.due_at is not None and i.due_at <= now
            escalated = overdue and self.assignment is not None and bool(self.assignment.escalated_to)
            who = self.assignment.who(escalated) if self.assignment else "any operator of the team"
            holder = "nobody (ctrl+t takes it)" if not i.taken_by else "you" if i.taken_by == self.app.actor else i.taken_by
            info.append(f"\ntaken by {holder}   who may decide: {who}")
            if i.due_at is not None:
                info.append(f"   {due_text(i.due_at, now)}", "bold red" if overdue else "")
        self.query_one("#human-info", Static).update(info)
        self.query_one("#human-inputs-table", Static).update(inputs_table(payload.inputs))
        self.query_one("#human-submit", Button).disabled = i.state != S.AVAILABLE

    def refuse(self, message: str | None) -> None:
        refusal = self.query_one("#human-refusal", Static)
        refusal.update(Text.assemble(("Refused: ", "bold"), message) if message else "")
        refusal.set_class(not message, "-empty")

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
        try:
            comment = self.query_one("#human-comment", Input).value.strip() or None
            self.app.client.submit(self.instance_id, output, comment)
        except Exception as exc:
            if (message := refusal(exc)) is None:
                raise
            self.refuse(message)
            return
        self.refuse(None)
        self.app.notify(f"submitted human task {self.instance_id} as {self.app.actor}", title="Done")
        self.app.feed.poke()
        self.app.pop_screen()

    def action_take(self) -> None:
        from tui.actions import take

        take(self.app, self.payload.instance if self.payload else None)
