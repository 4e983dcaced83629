"""The help screen: what each screen shows and its keys, read from the bindings themselves."""

from __future__ import annotations

from rich.console import Group
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

ABOUT = (
    "Flow45 dashboard. Everything you see is read from the store and follows the ledger live "
    "(new events are read every half second). Every change you make goes through Flow45's core, "
    "after a confirmation that says what will change, and is written to the ledger under your name."
)


def _keys(bindings) -> list[tuple[str, str]]:
    found = []
    for binding in bindings:
        if isinstance(binding, tuple):
            binding = Binding(*binding)
        if binding.description:
            key = binding.key.replace("question_mark", "?").replace("slash", "/").replace(",", " / ")
            found.append((key, binding.description))
    return found


def help_table() -> Group:
    from tui.app import Dashboard
    from tui.screens.human import HumanTaskScreen
    from tui.screens.inbox import InboxScreen, InboxTable
    from tui.screens.instance import InstanceScreen
    from tui.screens.modals import ActionModal
    from tui.screens.run import RunScreen
    from tui.screens.runs import RunsScreen, RunsTable
    from tui.screens.workflows import WorkflowsScreen, WorkflowsTable
    from tui.widgets.dag import DagView

    sections = [
        ("Everywhere", "ctrl+p opens the command palette: every action for what is selected", Dashboard.BINDINGS),
        ("Runs", "every team's runs, newest first; counts per status at the top",
         RunsTable.BINDINGS + RunsScreen.BINDINGS),
        ("Run", "instances by dependency level: ◀ names what a task waits on; ▲ feeds / ▼ waits for the "
                "selected one; the run's ledger on the right", DagView.BINDINGS + RunScreen.BINDINGS),
        ("Instance", "inputs, output, every attempt (archived ones are superseded by an undo), its ledger",
         InstanceScreen.BINDINGS),
        ("Workflows", "deployed workflows, their schedules, when each next runs (red: overdue, no scheduler "
                      "made it) and its last run; a workflow's tools before it has any run", WorkflowsTable.BINDINGS + WorkflowsScreen.BINDINGS),
        ("Human tasks", "waiting human tasks, overdue first; filters mine, my groups, overdue, all",
         InboxTable.BINDINGS + InboxScreen.BINDINGS),
        ("Human task form", "fields from the output type; errors show under each field", HumanTaskScreen.BINDINGS),
        ("Confirmations", "say exactly what will change; a refusal from Flow45 shows in the dialog",
         ActionModal.BINDINGS),
    ]
    parts = []
    for title, about, bindings in sections:
        parts.append(Text.assemble((title, "bold"), "  ", (about, "italic bright_black")))
        table = Table(box=None, show_header=False, padding=(0, 2, 0, 4))
        table.add_column(width=18)
        table.add_column()
        for key, description in _keys(bindings):
            table.add_row(Text(key, "bold cyan"), description)
        parts.extend([table, Text("")])
    return Group(*parts)


class HelpScreen(ModalScreen[None]):
    CSS_PATH = "help.tcss"
    BINDINGS = [Binding("escape,q,question_mark,f1", "close", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help-dialog"):
            yield Static(Text("Help", "bold"))
            yield Static(ABOUT, id="help-about")
            yield Static(help_table())

    def action_close(self) -> None:
        self.dismiss(None)
