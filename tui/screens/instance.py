"""One task instance: what it got, what it gave, every attempt (superseded ones included), its ledger."""

from __future__ import annotations

import dataclasses
import json
from typing import Any

from rich.console import Group
from rich.json import JSON
from rich.style import Style
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, VerticalScroll
from textual.widgets import Footer, Header, Static

from flow45 import states as S
from flow45.clock import shown
from flow45.conditions import describe
from flow45.store.specs import VersionSpec
from flow45.views import EventView, InstanceView, RunView
from tui import data
from tui.actions import INSTANCE_ACTIONS, instance_commands, open_instance_action
from tui.screens.base import LiveScreen
from tui.screens.run import NOTES_SHOWN
from tui.widgets.ledger import SHOWN, Ledger, newest
from tui.widgets.progress import pct_bar, state_text


@dataclasses.dataclass
class InstancePayload:
    instance: InstanceView
    run: RunView | None
    inputs: data.Inputs
    spec: VersionSpec
    upstream_ids: frozenset[int]
    events: list[EventView] | None = None
    earlier: bool = False  # events older than `events` were left out

    @property
    def output_type(self) -> str:
        return self.spec.task(self.instance.task).output


ATTEMPT_STYLES = {"running": "yellow", "succeeded": "green", "failed": "red", "expired": "dark_orange",
                  "skipped": "blue", "revoked": "magenta"}


def _json(value: Any) -> JSON | Text:
    if value is None:
        return Text("null", "bright_black")
    return JSON(json.dumps(value), indent=2)


def summary(p: InstancePayload) -> Text:
    i = p.instance
    run = f" ({p.run.team}/{p.run.workflow} v{p.run.version}, {p.run.status})" if p.run else ""
    text = Text.assemble(
        (f"Instance {i.id}  ", "bold"), (f"{i.task}", "bold"), f" of run {i.run}{run}   ", state_text(i.state),
        f"   attempt {i.attempt}\n",
        f"function {i.function} → {p.output_type}   priority {i.priority}" if i.function else "timer (no worker)",
        "   human task" if i.human else "", f"   worker {i.worker}" if i.worker else "",
    )
    if i.lease_expires_at:
        kind = "claim by" if i.state == S.AVAILABLE else "callback deadline" if i.parked else "lease until"
        text.append(f"   {kind} {shown(i.lease_expires_at)}")
    elif i.parked:
        text.append("   parked: waits for its callback key")
    if i.timeout_at:
        text.append(f"   times out {shown(i.timeout_at)}")
    if i.not_before:
        text.append(f"   {'due' if i.state == 'waiting' else 'retry not before'} {shown(i.not_before)}")
    conditions = p.spec.task(i.task).when
    if conditions and not i.skip_reason:  # the task runs only when these hold (flow45.conditions)
        text.append("\nruns when " + " and ".join(f"{path} {describe(v)}" for path, v in conditions.items()),
                    "bright_black")
    if i.skip_reason:
        text.append(f"\nskipped: {i.skip_reason}", "bright_black")
    if i.queued_for:
        text.append(f"\nqueued, waiting for {i.queued_for}", "bright_blue")
    if i.progress_pct is not None or i.progress_message:
        text.append("\n")
        text.append_text(pct_bar(i.progress_pct, i.state, 20))
        text.append(f"  {i.progress_message or ''}")
    for note in i.notes[-NOTES_SHOWN:]:
        text.append("\n" + note.said(with_task=False), "italic")
    return text


def inputs_table(inputs: data.Inputs) -> Table:
    table = Table(title="Inputs", title_justify="left", title_style="bold", expand=True, show_lines=True)
    table.add_column("parameter", no_wrap=True)
    table.add_column("from", no_wrap=True)
    table.add_column("value", ratio=1)
    for param, (task, state, output) in inputs.by_param.items():
        table.add_row(param, Text.assemble(task, "\n", state_text(state)),
                      _json(output) if state == "succeeded" else Text(f"null ({state})", "bright_black"))
    for task, state in inputs.after.items():
        table.add_row(Text("(after)", "bright_black"), Text.assemble(task, "\n", state_text(state)),
                      Text("orders only, passes nothing", "bright_black"))
    table.add_row(Text("run params", "italic"), "", _json(inputs.params or None))
    return table


def lineage_text(attempt) -> Text:
    """'built on attempt 3 of extract (undone)': what the attempt received, and where its output went,
    superseded attempts marked."""
    text = Text()
    for words, links in (("built on ", attempt.lineage), ("output went to ", attempt.used_by)):
        if links:
            text.append(("\n" if text else "") + words, "bright_black")
        for n, link in enumerate(links):
            text.append(", " if n else "")
            text.append(link.text(), "magenta" if getattr(link, "undone", False) or getattr(link, "archived", False)
                        else "")
    return text


def log_text(url: str | None, tail: str | None, lines: int = 10) -> Text:
    """A log link (clickable where the terminal can) and the last `lines` of a log tail. The tail holds
    no control characters (flow45.logs refused them), so it is shown as it came."""
    text = Text()
    if url:
        text.append("log ", "bold")
        text.append(url, Style(underline=True, link=url))
    for line in (tail or "").rstrip("\n").splitlines()[-lines:]:
        text.append(("\n" if text else "") + "│ " + line, "bright_black")
    return text


def attempts_table(instance: InstanceView) -> Table:
    table = Table(title=f"Attempts ({len(instance.attempts)})", title_justify="left", title_style="bold",
                  expand=True, show_lines=True)
    for column in ("#", "status", "worker", "claimed / finished"):
        table.add_column(column, no_wrap=True)
    table.add_column("output / error", ratio=1)
    for a in reversed(instance.attempts):  # newest first
        status = Text(a.status, ATTEMPT_STYLES.get(a.status, ""))
        if a.archived:
            status.append("\narchived", "magenta")
        result = _json(a.output) if a.output is not None else Text("")
        if a.error:
            result = Group(result, Text(a.error, "red")) if a.output is not None else Text(a.error, "red")
        if a.comment:  # a human's comment, or the reason an operator gave for setting the output
            result = Group(Text.assemble(("comment ", "bold"), a.comment), result)
        if a.lineage or a.used_by:
            result = Group(lineage_text(a), result)
        if a.checkpoint is not None:  # where it got to: the next attempt starts from there
            result = Group(result, Text.assemble(("checkpoint ", "bold"), json.dumps(a.checkpoint)))
        if a.log_url or a.log_tail:
            result = Group(result, log_text(a.log_url, a.log_tail, lines=3))
        table.add_row(str(a.number), status, Text(a.worker or ""), f"{shown(a.claimed_at)}\n{shown(a.finished_at)}",
                      result, style="dim" if a.archived else None)
    return table


class InstanceScreen(LiveScreen):
    CSS_PATH = "instance.tcss"
    AUTO_FOCUS = "#inst-detail"
    BINDINGS = [
        Binding("escape", "app.pop_screen", "Back"),
        *[Binding(key, f"act('{name}')", label) for key, name, label, _ in INSTANCE_ACTIONS],
        Binding("n", "note", "Note"),
    ]

    def __init__(self, instance_id: int):
        super().__init__()
        self.instance_id = instance_id
        self.payload: InstancePayload | None = None

    def compose(self) -> ComposeResult:
        yield Header()
        yield Static("", id="inst-info")
        with Horizontal(id="inst-body"):
            with VerticalScroll(id="inst-detail"):
                yield Static("", id="inst-output")
                yield Static("", id="inst-inputs")
                yield Static("", id="inst-attempts")
            yield Ledger(instance=self.instance_id, id="inst-ledger")
        yield Footer()

    def load(self, with_events: bool = True, known: InstancePayload | None = None) -> InstancePayload:
        """`known`: the last payload, whose run spec and upstream instances still hold."""
        client = self.app.client
        view = client.instance(self.instance_id)
        spec = known.spec if known else client.run_spec(view.run)
        run = client.run_row(view.run)
        inputs = data.instance_inputs(client, view, spec, run.params if run else None, known.inputs.ids if known else None)
        events, earlier = (newest(client.tail_events(instance=self.instance_id, n=SHOWN + 1)) if with_events
                           else (None, False))
        return InstancePayload(view, run, inputs, spec, frozenset(inputs.ids.values()), events, earlier)

    def fetch_changes(self, events: list[EventView]) -> InstancePayload | None:
        known = self.payload
        upstream = known.upstream_ids if known else frozenset()
        if any(e.instance == self.instance_id or e.instance in upstream for e in events):
            return self.load(with_events=False, known=known)
        return None

    def show(self, payload: InstancePayload) -> None:
        self.payload = payload
        i = payload.instance
        self.sub_title = f"instance {i.id} · {i.task} of run {i.run}"
        self.query_one("#inst-info", Static).update(summary(payload))
        current = data.current_output(i)
        error = next((a.error for a in reversed(i.attempts) if not a.archived and a.error), None)
        output = Group(Text(f"Output ({payload.output_type})", "bold"), _json(current) if current is not None
                       else Text("none yet", "bright_black"), *([Text(f"Error: {error}", "red")] if error else []),
                       *([log_text(i.log_url, i.log_tail)] if i.log_url or i.log_tail else []))
        self.query_one("#inst-output", Static).update(output)
        self.query_one("#inst-inputs", Static).update(inputs_table(payload.inputs))
        self.query_one("#inst-attempts", Static).update(attempts_table(i))
        if payload.events is not None:
            self.query_one("#inst-ledger", Ledger).show(payload.events, earlier=payload.earlier)

    def apply_changes(self, events: list[EventView], payload: InstancePayload | None) -> None:
        if payload is not None:
            self.show(payload)
        self.query_one("#inst-ledger", Ledger).add(events)

    def action_act(self, name: str) -> None:
        open_instance_action(self.app, name, self.payload.instance if self.payload else None)

    def action_note(self) -> None:
        from tui.screens.modals import InstanceNoteModal

        if self.payload is not None:
            self.app.push_screen(InstanceNoteModal(self.payload.instance))

    def commands(self) -> list[tuple[str, str, Any]]:
        found = instance_commands(self.app, self.payload.instance if self.payload else None)
        if self.payload is not None:
            found.append((f"Note on instance {self.payload.instance.id} (n)", "kept in its run's ledger",
                          self.action_note))
        return found
