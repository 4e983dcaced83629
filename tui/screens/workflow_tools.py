"""A workflow's schedule from the dashboard: pause it (triggers meanwhile queued or refused, the
operator's choice) or resume it, and backfill a range of its schedule ticks after a dry-run list."""

from __future__ import annotations

import datetime as dt
from typing import Callable

from rich.text import Text
from textual.app import ComposeResult
from textual.widgets import Button, Input, Label, Select, Static

from flow45.clock import no_such_moment, parse_utc, shown
from flow45.errors import Flow45Error
from tui.screens.modals import ActionModal

QUEUE, REFUSE = "queue", "refuse"  # what triggers of a paused workflow do
TRIGGER_CHOICES = [("triggers wait as queued until it resumes", QUEUE),
                   ("triggers are refused until it resumes", REFUSE)]


class PauseModal(ActionModal):
    """Pause a workflow, choosing what triggers do meanwhile; on a paused one: resume it."""

    AUTO_FOCUS = "#pause-triggers, #confirm"

    def __init__(self, team: str, workflow: str):
        super().__init__()
        self.team, self.workflow = team, workflow
        found = [w for w in self.app.client.workflows(team) if w.name == workflow]
        self.paused = found[0].paused if found else None
        self.needs_reason = None if self.paused else False
        self.confirm_label = "Resume" if self.paused else "Pause"
        self.confirm_variant = "primary" if self.paused else "warning"
        self.title_text = f"{self.confirm_label} {team}/{workflow}"

    def body(self) -> ComposeResult:
        if self.paused:
            yield Static(f"Paused; triggers meanwhile {'wait as queued' if self.paused == QUEUE else 'are refused'}. "
                         "Resuming starts the queued runs in the free slots, and the scheduler catches up on the "
                         "ticks missed by the schedule's catchup policy.")
            return
        yield Static("Its schedule makes no runs while paused; runs already going go on.")
        yield Select(TRIGGER_CHOICES, value=QUEUE, allow_blank=False, id="pause-triggers")

    def perform(self) -> Callable[[], str]:
        if self.paused:
            def resume() -> str:
                self.app.client.resume(self.team, self.workflow)
                return f"{self.team}/{self.workflow} resumed"
            return resume
        triggers, reason = self.query_one("#pause-triggers", Select).value, self.reason or None

        def pause() -> str:
            self.app.client.pause(self.team, self.workflow, triggers, reason)
            return f"{self.team}/{self.workflow} paused: " + dict((v, k) for k, v in TRIGGER_CHOICES)[triggers]
        return pause


def _moment(text: str, end_of_day: bool) -> dt.datetime:
    """A date or an ISO 8601 time (UTC without an offset) as naive UTC; a date as `to` covers its whole day."""
    text = text.strip()
    try:
        moment = parse_utc(text)
        return moment + dt.timedelta(days=1, microseconds=-1) if end_of_day and len(text) == 10 else moment
    except (ValueError, OverflowError) as exc:
        raise Flow45Error(no_such_moment(text, exc) or "expected a date such as 2026-03-01 or a time such as "
                          f"2026-03-01T06:00:00Z, got {text!r}") from None


class BackfillModal(ActionModal):
    """One run per schedule tick from `From` to `To`: the dry run lists them as they are typed."""

    AUTO_FOCUS = "#backfill-from"

    def __init__(self, team: str, workflow: str):
        super().__init__()
        self.team, self.workflow = team, workflow
        self.title_text = f"Backfill {team}/{workflow}"
        self.confirm_label = "Create runs"

    def body(self) -> ComposeResult:
        yield Label("From (UTC): the first logical time to cover", classes="input-label")
        yield Input(placeholder="2026-01-01 or 2026-01-01T06:00:00Z", id="backfill-from")
        yield Label("To (UTC, included; a date covers that whole day)", classes="input-label")
        yield Input(placeholder="2026-03-31", id="backfill-to")
        yield Static("", id="backfill-plan")

    def on_mount(self) -> None:
        self._preview()

    def on_input_changed(self, event: Input.Changed) -> None:
        event.stop()
        self._preview()

    def _range(self) -> tuple[dt.datetime, dt.datetime]:
        start, end = (self.query_one(f"#backfill-{n}", Input).value for n in ("from", "to"))
        if not start.strip() or not end.strip():
            raise Flow45Error("give both ends of the range")
        return _moment(start, False), _moment(end, True)

    def _preview(self) -> None:
        plan_widget, confirm = self.query_one("#backfill-plan", Static), self.query_one("#confirm", Button)
        confirm.disabled = True
        try:
            plan = self.app.client.backfill(self.team, self.workflow, *self._range(), dry_run=True)
        except Flow45Error as exc:
            plan_widget.update(Text(f"Dry run: {exc.message}", "bright_black"))
            return
        new = sum(i.status == "would_create" for i in plan.items)
        text = Text(f"Dry run: {new} run(s) to create, {len(plan.items) - new} tick(s) have one already\n", "bold")
        for item in plan.items:
            text.append(f"{shown(item.logical_time)}  " + ("would create" if item.run is None else f"run {item.run} exists")
                        + "\n")
        plan_widget.update(text)
        confirm.disabled = new == 0

    def perform(self) -> Callable[[], str]:
        start, end = self._range()

        def change() -> str:
            plan = self.app.client.backfill(self.team, self.workflow, start, end)
            made = [i for i in plan.items if i.status in ("running", "queued")]
            queued = sum(i.status == "queued" for i in made)
            return (f"backfilled {self.team}/{self.workflow}: {len(made)} run(s) created"
                    + (f", {queued} queued for max_active_runs" if queued else ""))
        return change
