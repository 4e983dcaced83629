"""Confirmation modals: each says exactly what will change, asks what it needs, and makes the change
through `flow45.store` as the operator. A refusal from the core stays in the modal, never a crash."""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Callable

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Checkbox, Input, Label, Static

from flow45 import states as S
from flow45.errors import Flow45Error
from flow45.views import InstanceView, RunView, UndoPlan
from tui.background import off_ui
from tui.screens.base import refusal
from tui.widgets.progress import STATE_STYLES, state_text

if TYPE_CHECKING:
    from tui.app import Dashboard


def what(instance: InstanceView) -> str:
    return f"instance {instance.id} ({instance.task} of run {instance.run})"


class ActionModal(ModalScreen[bool]):
    """Title, what will change, inputs, a refusal line, Confirm and Cancel. Dismisses True when done."""

    CSS_PATH = "modals.tcss"
    AUTO_FOCUS = "#reason, #confirm"
    BINDINGS = [Binding("escape", "cancel", "Cancel"), Binding("ctrl+s", "confirm", "Confirm")]
    app: Dashboard
    title_text = ""
    confirm_label = "Confirm"
    confirm_variant = "primary"
    needs_reason: bool | None = None  # True: required, False: optional, None: no reason asked

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Label(Text(self.title_text), id="title")
            with VerticalScroll(id="body"):
                yield from self.body()
                if self.needs_reason is not None:
                    label = "Reason (required)" if self.needs_reason else "Reason (optional)"
                    yield Label(label, classes="input-label")
                    yield Input(placeholder="why — written to the ledger", id="reason")
            yield Static("", id="refusal", classes="-empty", markup=False)
            with Horizontal(id="buttons"):
                yield Button(self.confirm_label, variant=self.confirm_variant, id="confirm")
                yield Button("Cancel", id="cancel")

    def body(self) -> ComposeResult:
        yield from ()

    def perform(self) -> Callable[[], str]:
        """Read what the operator entered (on the UI thread) and return the change: a call, made off the
        UI thread, that makes it and returns what to tell the operator. Raise Flow45Error to refuse."""
        raise NotImplementedError

    @property
    def reason(self) -> str:
        return self.query_one("#reason", Input).value.strip() if self.needs_reason is not None else ""

    def refuse(self, message: str) -> None:
        self._say(Text.assemble(("Refused: ", "bold"), message))

    def _say(self, text: Text, under_way: bool = False) -> None:
        line = self.query_one("#refusal", Static)
        line.update(text)
        line.remove_class("-empty")
        line.set_class(under_way, "-under-way")

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        if event.button.id == "confirm":
            self.action_confirm()
        else:
            self.action_cancel()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        self.action_confirm()

    def action_cancel(self) -> None:
        self.dismiss(False)

    def action_confirm(self) -> None:
        if self.query_one("#confirm", Button).disabled:
            return
        if self.needs_reason and not self.reason:
            self.refuse("a reason is required; it is written to the ledger")
            return
        try:
            change = self.perform()
        except Exception as exc:
            if (message := refusal(exc)) is None:
                raise
            self.refuse(message)
            return
        if off_ui(self.app, self.title_text, change, self._done, self._refused):
            self.query_one("#confirm", Button).disabled = True  # one at a time
            self._say(Text(f"{self.confirm_label}: under way, waiting for the answer…"), under_way=True)

    def _done(self, notice: str) -> None:
        self.app.notify(notice, title="Done")
        self.app.feed.poke()
        if self.app.screen is self:  # else closed while it was under way: the notice says it all
            self.dismiss(True)

    def _refused(self, message: str) -> None:
        if self.app.screen is not self:
            self.app.notify(f"{self.title_text}: {message}", title="Refused", severity="error")
            return
        self.query_one("#confirm", Button).disabled = False
        self.refuse(message)


class InstanceModal(ActionModal):
    """An action on one task instance, titled by its confirm label: `Retry instance 7 (render of run 3)`."""

    def __init__(self, instance: InstanceView):
        super().__init__()
        self.instance = instance
        self.title_text = f"{self.confirm_label} {what(instance)}"


def hold_label(hold: bool) -> Text:
    """The hold checkbox's label, saying in words what will happen (space toggles it); Text, not markup."""
    return Text("[x] Hold it: it stays held after the undo" if hold
                else "[ ] Hold it instead of offering it again (off: offered again)")


def cancel_connected_label(cancel: bool, unfinished: int) -> Text:
    """The checkbox for the runs the undone run started (connected workflows), in words like hold's."""
    return Text(f"[x] Cancel the {unfinished} unfinished connected run(s) with the undo" if cancel
                else f"[ ] Cancel the {unfinished} unfinished connected run(s) too (off: they go on)")


class UndoModal(InstanceModal):
    """Undo: the affected set from the dry run, the runs the run started (connected workflows), a
    reason, and the choices to hold and to cancel those runs (`flow45 undo --cancel-connected`)."""

    needs_reason = True
    confirm_label = "Undo"
    confirm_variant = "error"

    def __init__(self, instance: InstanceView):
        super().__init__(instance)
        self.plan: UndoPlan | None = None

    def body(self) -> ComposeResult:
        yield Static(id="plan")
        yield Checkbox(hold_label(False), id="hold")
        cancel = Checkbox(cancel_connected_label(False, 0), id="cancel-connected")
        cancel.display = False  # shown when the run started runs that are still going
        yield cancel

    def on_mount(self) -> None:
        self._plan()

    def on_checkbox_changed(self, event: Checkbox.Changed) -> None:
        self._plan()

    @property
    def choices(self) -> tuple[bool, bool]:
        """(hold, cancel_connected) as ticked."""
        return self.query_one("#hold", Checkbox).value, self.query_one("#cancel-connected", Checkbox).value

    def _plan(self) -> None:
        confirm = self.query_one("#confirm", Button)
        hold, cancel = self.choices
        hold_box, cancel_box = self.query_one("#hold", Checkbox), self.query_one("#cancel-connected", Checkbox)
        hold_box.label = hold_label(hold)  # the mark's colour alone is lost in plain text
        try:
            self.plan = self.app.client.undo(self.instance.id, "", hold=hold, dry_run=True, cancel_connected=cancel)
        except Exception as exc:
            if (message := refusal(exc)) is None:
                raise
            self.plan = None
            self.query_one("#plan", Static).update("Nothing can be undone here.")
            confirm.disabled = True
            self.refuse(message)
            return
        confirm.disabled = False
        unfinished = sum(c.cancel for c in self.plan.connected)
        cancel_box.display = unfinished > 0
        cancel_box.label = cancel_connected_label(cancel, unfinished)
        self.query_one("#plan", Static).update(self._describe(self.plan))

    @staticmethod
    def _describe(plan: UndoPlan) -> Group:
        table = Table(title=f"{len(plan.affected)} instance(s) will change", title_justify="left", expand=True,
                      box=None, header_style="bold")
        for column in ("instance", "task", "now", "becomes", "undo notice"):
            table.add_column(column)
        for item in plan.affected:
            table.add_row(str(item.instance), item.task, state_text(item.state), state_text(item.becomes),
                          "yes" if item.notify else "")
        again = (f"Run {plan.run} waits queued for a slot ({plan.run_waits})." if plan.run_waits
                 else f"Run {plan.run} becomes running again.")
        table.caption = f"Their attempts are archived (outputs kept); running attempts lose their token. {again}"
        table.caption_justify = "left"
        if not plan.connected:
            return Group(table)
        started = Table(title=f"Run {plan.run} started {len(plan.connected)} run(s) (connected workflows)",
                        title_justify="left", expand=True, box=None, header_style="bold")
        for column in ("run", "workflow", "now", "with the undo"):
            started.add_column(column)
        for c in plan.connected:
            started.add_row(str(c.run), f"{c.team}/{c.workflow}", state_text(c.status), c.fate(plan.cancel_connected))
        return Group(table, Text(""), started)

    def perform(self) -> Callable[[], str]:
        (hold, cancel), reason = self.choices, self.reason

        def change() -> str:
            plan = self.app.client.undo(self.instance.id, reason, hold=hold, cancel_connected=cancel)
            cancelled = sum(c.cancel for c in plan.connected) if plan.cancel_connected else 0
            also = f"; cancelled {cancelled} connected run(s)" if cancelled else ""
            return f"undid {what(self.instance)}: {len(plan.affected)} instance(s) changed (event {plan.event}){also}"
        return change


class SkipModal(InstanceModal):
    needs_reason = True
    confirm_label = "Skip"
    confirm_variant = "warning"

    def body(self) -> ComposeResult:
        lines = Text.assemble(
            state_text(self.instance.state), " → ", state_text(S.SKIPPED), "\n",
            "A running attempt loses its token (its worker's submit is refused). "
            f"Tasks that take {self.instance.task}'s output get null for it; the run settles.",
        )
        yield Static(lines)

    def perform(self) -> Callable[[], str]:
        reason = self.reason

        def change() -> str:
            self.app.client.skip(self.instance.id, reason)
            return f"skipped {what(self.instance)}"
        return change


class TakeOverModal(InstanceModal):
    """Taking a human task someone else has: the reason is written to the ledger."""

    needs_reason = True
    confirm_label = "Take over"
    confirm_variant = "warning"

    def body(self) -> ComposeResult:
        yield Static(Text(f"{self.instance.taken_by} has it. Taking it over tells them, and everyone, why."))

    def perform(self) -> Callable[[], str]:
        reason = self.reason

        def change() -> str:
            previous = self.app.client.take(self.instance.id, reason)  # None: let go of since it was shown
            return f"took over {what(self.instance)}" + (f" from {previous}" if previous else "")
        return change


class GiveModal(InstanceModal):
    """Giving a human task to someone (Camunda's assign): they must be allowed to decide it; taking it
    from someone else needs a reason, written to the ledger."""

    needs_reason = False
    confirm_label = "Give"
    AUTO_FOCUS = "#give-to"

    def body(self) -> ComposeResult:
        holder = f"{self.instance.taken_by} has it" if self.instance.taken_by else "Nobody has it"
        yield Static(Text(f"{holder}. Whoever you give it to must be allowed to decide it, and has it then "
                          "as if they had taken it; from someone other than you, give a reason."))
        yield Label("To (a user name)", classes="input-label")
        yield Input(placeholder="who decides it", id="give-to")

    def perform(self) -> Callable[[], str]:
        user, reason = self.query_one("#give-to", Input).value.strip(), self.reason or None
        if not user:
            raise Flow45Error("name who to give it to")

        def change() -> str:
            previous = self.app.client.take(self.instance.id, reason, user)
            return f"gave {what(self.instance)} to {user}" + (f", over from {previous}" if previous else "")
        return change


class RetryModal(InstanceModal):
    confirm_label = "Retry"

    def body(self) -> ComposeResult:
        yield Static(Text.assemble(
            state_text(self.instance.state), " → ", state_text(S.AVAILABLE),
            f" as attempt {self.instance.attempt + 1}\n",
            "Offered to workers again with its retries counted afresh; its run runs again, or waits queued "
            "while its workflow's max_active_runs are all running.",
        ))

    def perform(self) -> Callable[[], str]:
        def change() -> str:
            self.app.client.retry(self.instance.id)
            if self.app.client.instance(self.instance.id).state == S.PENDING:
                return f"retried {what(self.instance)}: run {self.instance.run} waits queued for a slot"
            return f"offered {what(self.instance)} again"
        return change


class HoldModal(InstanceModal):
    needs_reason = False
    confirm_label = "Hold"

    def body(self) -> ComposeResult:
        yield Static(Text.assemble(
            state_text(self.instance.state), " → ", state_text(S.HELD), "\n",
            "It is not offered to workers until released; an open offer stops counting.",
        ))

    def perform(self) -> Callable[[], str]:
        reason = self.reason or None

        def change() -> str:
            self.app.client.hold(self.instance.id, reason)
            return f"held {what(self.instance)}"
        return change


class ReleaseModal(InstanceModal):
    confirm_label = "Release"

    def body(self) -> ComposeResult:
        yield Static(Text.assemble(
            state_text(self.instance.state), " → ", state_text(S.AVAILABLE), " if its upstream is done, else ",
            state_text(S.PENDING), "\nOffered under a fresh attempt and token.",
        ))

    def perform(self) -> Callable[[], str]:
        def change() -> str:
            return f"released {what(self.instance)}: now {self.app.client.release(self.instance.id)}"
        return change


class RunModal(ActionModal):
    """An action on one run, titled `VERB run 7 (reports/monthly_report v2)`."""

    verb = ""

    def __init__(self, run: RunView):
        super().__init__()
        self.run = run
        self.title_text = f"{self.verb} run {run.id} ({run.team}/{run.workflow} v{run.version})"


class NoteModal(RunModal):
    """A note on a run: what you noticed or decided, kept in its ledger for the team and later readers."""

    verb = "Note on"
    confirm_label = "Add note"
    AUTO_FOCUS = "#note-text"

    def body(self) -> ComposeResult:
        yield Static(Text("Kept in the run's ledger and shown with the run to everyone who looks at it; "
                          "it changes nothing."))
        yield Label("Note", classes="input-label")
        yield Input(placeholder="what you noticed or decided", id="note-text")

    def perform(self) -> Callable[[], str]:
        text = self.query_one("#note-text", Input).value

        def change() -> str:
            self.app.client.note(self.run.id, text)
            return f"noted on run {self.run.id}"
        return change


class InstanceNoteModal(InstanceModal):
    """A note on one task instance (Airflow's task instance notes), kept in its run's ledger."""

    confirm_label = "Note on"
    AUTO_FOCUS = "#note-text"

    def body(self) -> ComposeResult:
        yield Static(Text("Kept in the run's ledger and shown with this task and its run; it changes nothing."))
        yield Label("Note", classes="input-label")
        yield Input(placeholder="what you noticed or decided", id="note-text")

    def perform(self) -> Callable[[], str]:
        i, text = self.instance, self.query_one("#note-text", Input).value

        def change() -> str:
            self.app.client.note(i.run, text, task=i.task)
            return f"noted on {i.task} of run {i.run}"
        return change


class CancelRunModal(RunModal):
    verb = "Cancel"
    needs_reason = False
    confirm_label = "Cancel run"
    confirm_variant = "error"

    def body(self) -> ComposeResult:
        unfinished = Counter({s: n for s, n in self.run.counts.items() if s not in S.FINISHED_INSTANCE})
        text = Text.assemble("Run ", state_text(self.run.status), " → ", state_text(S.CANCELLED), "\n")
        if unfinished:
            text.append(f"{sum(unfinished.values())} unfinished instance(s) become cancelled: ")
            for index, (state, n) in enumerate(sorted(unfinished.items())):
                text.append(", " if index else "")
                text.append(f"{n} {state}", STATE_STYLES.get(state, ""))
            text.append("\nRunning attempts lose their token. ")
        text.append("Nothing in a cancelled run can change afterwards; a queued run of the workflow may start.")
        yield Static(text)

    def perform(self) -> Callable[[], str]:
        reason = self.reason or None

        def change() -> str:
            self.app.client.cancel(self.run.id, reason)
            return f"cancelled run {self.run.id}"
        return change
