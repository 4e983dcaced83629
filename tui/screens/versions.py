"""A workflow's versions over the dashboard: who deployed each and when, its runs, and what it changed
from the one before (`flow45 versions`)."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from flow45.clock import shown
from flow45.errors import Flow45Error
from flow45.views import WorkflowVersions


def versions_text(found: WorkflowVersions) -> Group:
    parts = []
    for v in found.versions:
        parts.append(Text.assemble((f"v{v.version}", "bold"), ("  (current)" if v.version == found.current else ""),
                                   f"  deployed {shown(v.deployed_at)} by ", (v.deployed_by, "bold"),
                                   f"  runs {v.runs}  ", (f"hash {v.content_hash[:12]}", "bright_black")))
        for line in v.changes or (["the first version"] if v.version == 1 else []):
            parts.append(Text("  " + line, "bright_black" if v.version == 1 else ""))
    if len(found.versions) < found.total:
        parts.append(Text(f"… and {found.total - len(found.versions)} older: flow45 versions --limit", "italic"))
    return Group(*parts)


class VersionsScreen(ModalScreen[None]):
    CSS_PATH = "versions.tcss"
    BINDINGS = [Binding("escape,q,v", "close", "Close")]

    def __init__(self, team: str, workflow: str):
        super().__init__()
        self.team, self.workflow = team, workflow
        self.found: WorkflowVersions | None = None

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="versions-dialog"):
            yield Static(Text(f"Versions of {self.team}/{self.workflow}", "bold"))
            try:
                self.found = self.app.client.versions(self.team, self.workflow, 50)
                shown: Text | Group = versions_text(self.found)
            except Flow45Error as exc:
                shown = Text(str(exc), "red")
            yield Static(shown, id="versions-list")

    def action_close(self) -> None:
        self.dismiss(None)
