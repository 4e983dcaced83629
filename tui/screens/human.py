"""A human task: what it got, who has it and when it is due, and a form generated from its output
type with a comment; submitting completes it as the operator (refused, in the form, for someone who
may not decide it or while someone else has it). `ctrl+t` takes it."""

from __future__ import annotations

from rich.text import Text
from textual.binding import Binding

from flow45 import states as S
from flow45.clock import utcnow
from flow45.store.rules_human import due_text, run_assignments
from tui.screens import base
from tui.screens.typed_form import HumanPayload, TypedOutputScreen
from tui.widgets.progress import state_text


class HumanTaskScreen(TypedOutputScreen):
    BINDINGS = [Binding("escape", "app.pop_screen", "Back"), Binding("ctrl+s", "submit", "Submit"),
                Binding("ctrl+t", "take", "Take")]
    NOTE_LABEL = "Comment (kept with the decision)"
    NOTE_PLACEHOLDER = "why you decided so"
    NOTE_ID = "human-comment"
    SEND_LABEL = "Submit"

    def __init__(self, instance_id: int):
        super().__init__(instance_id)
        current = self.app.client.workflow_spec(self.spec.team, self.spec.workflow_name)  # its groups' members
        self.assignment = run_assignments(self.spec, current).get(self.task_name)

    def on_mount(self) -> None:
        self.set_interval(base.RECOUNT_EVERY, lambda: self.payload and self.show(self.payload))  # "due in" counts on

    def show(self, payload: HumanPayload) -> None:
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
            # Escalated as the core decides who may: once the sweep applied the overdue outcome, not when due passed.
            escalated = i.overdue_at is not None and self.assignment is not None and bool(self.assignment.escalated_to)
            who = self.assignment.who(escalated) if self.assignment else "any operator of the team"
            holder = ("not taken (ctrl+t takes it)" if not i.taken_by
                      else f"taken by {'you' if i.taken_by == self.app.actor else i.taken_by}")
            info.append(f"\n{holder}   who may decide: {who}")
            if i.due_at is not None:
                info.append(f"   {due_text(i.due_at, now)}", "bold red" if overdue else "")
        self.show_payload(payload, info, i.state == S.AVAILABLE)

    def send(self, output: dict, note: str) -> str:
        self.app.client.submit(self.instance_id, output, note or None)
        return f"submitted human task {self.instance_id} as {self.app.actor}"

    def action_take(self) -> None:
        from tui.actions import take

        take(self.app, self.payload.instance if self.payload else None)
