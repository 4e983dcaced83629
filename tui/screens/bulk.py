"""Bulk actions on the marked runs: retry, skip, undo or cancel. The whole plan is shown first (every
instance, or every run for cancel), one confirmation applies it, each item in its own transaction
(`flow45.bulk`), and the outcome says what was refused and why."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Button, Select, Static

from flow45 import bulk
from flow45.errors import Flow45Error
from tui.screens.modals import ActionModal
from tui.widgets.progress import state_text


class Action:
    def __init__(self, verb: str, needs_task: bool, variant: str, needs_reason: bool | None) -> None:
        self.verb, self.needs_task, self.variant, self.needs_reason = verb, needs_task, variant, needs_reason


ACTIONS = {
    # What each takes and becomes is flow45.bulk's; skip and undo act on one task, chosen in the modal.
    "retry": Action("Retry", False, "primary", None),
    "skip": Action("Skip", True, "warning", True),
    "undo": Action("Undo", True, "error", True),
    "cancel": Action("Cancel", False, "error", False),
}


class BulkModal(ActionModal):
    """One action over the marked runs, planned in full before the one confirmation."""

    AUTO_FOCUS = "#bulk-task, #reason, #confirm"

    def __init__(self, action: str, run_ids: list[int]):
        super().__init__()
        self.action, self.run_ids = action, run_ids
        self.kind = ACTIONS[action]
        self.needs_reason, self.confirm_variant = self.kind.needs_reason, self.kind.variant
        self.confirm_label = f"{self.kind.verb} all"
        what = "the runs" if action == "cancel" else "instances of the runs"
        self.title_text = f"{self.kind.verb} {what}: {', '.join(map(str, run_ids))}"
        self.candidates = bulk.select(self.app.client, action, runs=run_ids).items
        self.plan: list[bulk.BulkItem] = []

    def body(self) -> ComposeResult:
        if self.action != "cancel":
            tasks = list(dict.fromkeys(i.task for i in self.candidates))
            prompt = "choose a task…" if self.kind.needs_task else "every task"
            yield Select([(t, t) for t in tasks], prompt=prompt, id="bulk-task")
        yield Static("", id="bulk-plan")

    def on_mount(self) -> None:
        self._show()

    def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "bulk-task":
            event.stop()
            self._show()

    @property
    def task(self) -> str | None:
        chosen = self.query("#bulk-task")
        value = chosen.first(Select).value if chosen else Select.NULL
        return None if value is Select.NULL else value

    def _show(self) -> None:
        task = self.task
        self.plan = [i for i in self.candidates if task is None or i.task == task]
        if self.kind.needs_task and task is None:
            self.plan = []
        lines = Text()
        for item in self.plan:
            what = f"run {item.run}" if item.instance is None else f"run {item.run}  {item.task} (instance {item.instance})"
            lines.append_text(Text.assemble(f"{what}  ", state_text(item.state), " → ",
                                            state_text(bulk.BECOMES[self.action]), "\n"))
        if not self.plan:
            lines.append("Choose the task to act on in each run." if self.kind.needs_task and task is None
                         else "Nothing in these runs to " + self.action + ".")
        elif self.action == "undo":
            lines.append("Each undo also takes back what followed from it in its run (attempts archived).")
        self.query_one("#bulk-plan", Static).update(lines)
        self.query_one("#confirm", Button).disabled = not self.plan

    def perform(self) -> Callable[[], str]:
        if not self.plan:
            raise Flow45Error(f"nothing to {self.action}")
        plan, reason = self.plan, self.reason or None

        def change() -> str:
            items = bulk.apply(self.app.client, self.action, plan, reason)
            refused = [f"{i.instance or i.run}: {i.detail}" for i in items if i.outcome == "refused"]
            done = len(items) - len(refused)
            return (f"{self.action}: {done} of {len(items)} done"
                    + (f"; refused {'; '.join(refused)}" if refused else ""))
        return change
