"""A worker task's output set by hand ("mark success", typed): what it got, a form generated from its
output type, and the reason; sending it finishes the task as the operator's attempt."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from flow45.store.rules import SETTABLE
from tui.screens.typed_form import HumanPayload, TypedOutputScreen
from tui.widgets.progress import state_text


class SetOutputScreen(TypedOutputScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("ctrl+s", "submit", "Set output")]
    NOTE_LABEL = "Reason (kept with the attempt and in the ledger)"
    NOTE_PLACEHOLDER = "why the output is set by hand"
    NOTE_ID = "set-output-reason"
    SEND_LABEL = "Set output"

    def show(self, payload: HumanPayload) -> None:
        i = payload.instance
        self.sub_title = f"set output · instance {i.id} · {i.task} of run {i.run}"
        info = Text.assemble(("Set the output of ", "bold"), (i.task, "bold"), f" (instance {i.id}) of run {i.run}   ",
                             state_text(i.state), f"   function {i.function}   attempt {i.attempt}")
        if i.state not in SETTABLE:
            info.append(f"\nIt is {i.state}: its output cannot be set now (undo a finished task first).", "bold red")
        else:
            info.append("\nChecked against its output type; kept as your attempt; downstream goes on as after a submit.")
        self.show_payload(payload, info, i.state in SETTABLE)

    def note_problem(self, note: str) -> str | None:
        return None if note else "a reason is required"

    def send(self, output: dict, note: str) -> str:
        self.app.client.set_output(self.instance_id, output, note)
        return f"set the output of instance {self.instance_id} as {self.app.actor}"
