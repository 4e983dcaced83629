"""Trigger a workflow: choose it, fill its params (a form from the declared params type), confirm."""

from __future__ import annotations

from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Input, Select, Static

from flow45.errors import Flow45Error
from tui.screens.modals import ActionModal
from tui.widgets.forms import TypeForm


PRIORITIES = [("priority: as its tasks say", None), ("priority: urgent, at least 5 for each task", 5),
              ("priority: most urgent, 9 for each task", 9)]


class TriggerModal(ActionModal):
    AUTO_FOCUS = "#trigger-workflow"
    confirm_label = "Trigger"
    title_text = "Trigger a workflow"

    def __init__(self, team: str | None = None, workflow: str | None = None):
        super().__init__()
        self.workflows = self.app.client.workflows()
        self.preselect = f"{team}/{workflow}" if team and workflow else None
        if self.preselect is None and len(self.workflows) == 1:
            self.preselect = f"{self.workflows[0].team}/{self.workflows[0].name}"

    def body(self) -> ComposeResult:
        options = [(f"{w.team}/{w.name} v{w.version}", f"{w.team}/{w.name}") for w in self.workflows]
        known = {value for _, value in options}
        yield Select(options, prompt="choose a workflow…", id="trigger-workflow",
                     value=self.preselect if self.preselect in known else Select.NULL)
        yield Static("", id="trigger-about")
        yield Select(PRIORITIES, value=None, allow_blank=False, id="trigger-priority",
                     tooltip="an urgent run's offers go ahead of other runs' in their queues")
        yield Input(placeholder="key (optional): your name for the run, one run per key", id="trigger-key",
                    tooltip="a key the workflow has a run for answers that run: nothing new starts")
        yield Vertical(id="trigger-params")

    async def on_mount(self) -> None:
        await self._show(self.query_one("#trigger-workflow", Select).value)

    async def on_select_changed(self, event: Select.Changed) -> None:
        if event.select.id == "trigger-workflow":
            event.stop()
            await self._show(event.value)

    async def _show(self, choice) -> None:
        about = self.query_one("#trigger-about", Static)
        params = self.query_one("#trigger-params", Vertical)
        await params.remove_children()
        if choice is Select.NULL:
            about.update("Choose the workflow to run.")
            return
        team, name = choice.split("/", 1)
        spec = self.app.client.workflow_spec(team, name)
        limit = spec.workflow.max_active_runs
        about.update(Text(
            f"Creates a run of {team}/{name} v{spec.number} ({len(spec.workflow.tasks)} tasks), triggered by "
            f"{self.app.actor}. " + (f"It waits as queued while {limit} run(s) of it are running."
                                     if limit else "It starts at once (no max_active_runs).")
            + ("" if spec.workflow.params else "\nThis workflow takes no params.")
        ))
        if spec.workflow.params:
            form = TypeForm(spec.types, spec.workflow.params, id="params-form")
            form.border_title = f"params: {spec.workflow.params}"
            await params.mount(form)

    def perform(self) -> Callable[[], str]:
        choice = self.query_one("#trigger-workflow", Select).value
        if choice is Select.NULL:
            raise Flow45Error("choose a workflow to trigger")
        team, name = choice.split("/", 1)
        params = None
        forms = self.query(TypeForm)
        if forms:
            params, ok = forms.first().check()
            if not ok:
                raise Flow45Error("the params have errors: see the fields above")
        priority = self.query_one("#trigger-priority", Select).value
        key = self.query_one("#trigger-key", Input).value or None

        def change() -> str:
            triggered = self.app.client.trigger(team, name, params, priority=priority, key=key)
            said = f"run {triggered.run} of {team}/{name}"
            if triggered.existing:
                return f"{said} has key {key} already ({triggered.status}): nothing new started"
            return (f"triggered {said}" + (f", urgent (priority {priority})" if priority else "")
                    + (f", key {key}" if key else ""))
        return change
