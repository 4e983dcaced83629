"""The Flow45 operator dashboard. `flow45 tui` calls `run_dashboard(actor)`.

The app owns the ledger feed (one background thread) and routes what it reads to the live screens;
every screen reads and acts only through the operator's client (`app.client`, a `flow45.client.Client`):
on the database, or through the broker, the dashboard is the same.
"""

from __future__ import annotations

import contextvars
import sys
import threading
from typing import Iterable

from textual.app import App, SystemCommand
from textual.notifications import SeverityLevel
from textual.binding import Binding
from textual.screen import Screen

from flow45.client import Client, LocalClient
from flow45.errors import Flow45Error
from tui.live import Feed, FeedProblem, LedgerEvents
from tui.screens.base import notify_refusal
from tui.shown import ShownClient


class Dashboard(App):
    """Runs, a run's DAG, instances, human tasks; live from the ledger."""

    CSS_PATH = "app.tcss"
    TITLE = "Flow45"
    BINDINGS = [
        Binding("question_mark,f1", "help", "Help"),
        Binding("i", "inbox", "Human tasks"),
        Binding("w", "workflows", "Workflows"),
        Binding("t", "trigger", "Trigger"),
        Binding("q", "quit", "Quit"),
    ]

    def __init__(self, actor: str, *, database_url: str | None = None, client: Client | None = None,
                 poll_interval: float = 0.5):
        """On `client`, or on the database at `database_url` (else the one bound) as `actor`."""
        super().__init__()
        self.client = ShownClient(client or LocalClient(actor, database_url=database_url))
        self.actor = self.client.actor
        self.sub_title = f"operator {self.actor}"
        self.feed = Feed(self, self.client, self.client.latest_event_id(), poll_interval)
        self._feed_thread: threading.Thread | None = None
        self.under_way: set[str] = set()  # the client calls made off the UI thread, waiting for their answer

    def notify(self, message: str, *, title: str = "", severity: SeverityLevel = "information",
               timeout: float | None = None, markup: bool = False) -> None:
        """As written, not as markup: a notice quotes refusals, which quote what operators and workers wrote."""
        super().notify(message, title=title, severity=severity, timeout=timeout, markup=markup)

    def on_mount(self) -> None:
        from tui.screens.runs import RunsScreen

        # In the app's context: a screen reads `self.app` from the feed's thread, also one popped meanwhile.
        self._feed_thread = threading.Thread(target=contextvars.copy_context().run, args=(self.feed.run,),
                                             name="flow45-ledger-feed", daemon=True)
        self._feed_thread.start()
        self.push_screen(RunsScreen())

    def on_unmount(self) -> None:
        self.feed.stop()
        if self._feed_thread is not None:
            self._feed_thread.join(timeout=5)  # it reads no more once the app is gone

    # ---- live ---------------------------------------------------------------------------------

    def watch_live_screens(self) -> None:
        """The feed reads for every live screen on the stack, the one on top and those under it."""
        from tui.screens.base import LiveScreen

        self.feed.watch([screen for screen in self.screen_stack if isinstance(screen, LiveScreen)])

    def on_ledger_events(self, message: LedgerEvents) -> None:
        if not self.is_running:
            return  # shutting down: the screens' widgets are being removed, the screens still stacked
        stack = self.screen_stack
        for screen, payload, error in message.reads:
            if screen not in stack or not screen.is_attached:
                continue  # closed while the feed was reading for it, or the dashboard is exiting
            if error is not None:
                if screen is self.screen:
                    self.notify(error, title="Refused", severity="error")
                continue
            screen.take_changes(message.events, payload)

    def on_feed_problem(self, message: FeedProblem) -> None:
        self.notify(f"cannot read the ledger: {message.message}; retrying", title="Database", severity="error")

    # ---- app-wide actions ---------------------------------------------------------------------

    def action_help(self) -> None:
        from tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_inbox(self) -> None:
        from tui.screens.inbox import InboxScreen
        from tui.screens.runs import RunsScreen

        if isinstance(self.screen, InboxScreen):
            return
        team = self.screen.filter.team if isinstance(self.screen, RunsScreen) else None
        try:
            self.push_screen(InboxScreen(team))  # it reads the teams to choose from
        except Exception as exc:
            if not notify_refusal(self, exc):
                raise

    def action_workflows(self) -> None:
        from tui.screens.workflows import WorkflowsScreen

        if not isinstance(self.screen, WorkflowsScreen):
            self.push_screen(WorkflowsScreen())

    def action_trigger(self) -> None:
        from tui.screens.runs import RunsScreen
        from tui.screens.trigger import TriggerModal

        team, workflow = None, None
        if isinstance(self.screen, RunsScreen):
            team, workflow = self.screen.filter.team, self.screen.filter.workflow
        self.push_screen(TriggerModal(team, workflow))

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        commands = getattr(screen, "commands", None)
        if commands is not None:
            for title, help_text, callback in commands():
                yield SystemCommand(title, help_text, callback)
        yield SystemCommand("Trigger a workflow", "start a run, with its params", self.action_trigger)
        yield SystemCommand("Human tasks inbox", "available human tasks of a team", self.action_inbox)
        yield SystemCommand("Help", "what each screen shows and its keys", self.action_help)
        yield from super().get_system_commands(screen)


def run_dashboard(actor: str, client: Client | None = None) -> int:
    """Open the dashboard on `client`, else on the configured database as `actor`; the exit code
    (0 done, 1 refused)."""
    from flow45.db import describe_db_error
    from flow45.settings import current_settings

    try:
        if client is not None:
            app = Dashboard(actor, client=client)
        else:
            app = Dashboard(actor, database_url=current_settings().database_url)
    except Flow45Error as exc:
        print(f"flow45: {exc.message}", file=sys.stderr)
        return 1
    except Exception as exc:
        message = describe_db_error(exc)
        if message is None:
            raise
        print(f"flow45: {message}", file=sys.stderr)
        return 1
    app.run()
    return app.return_code or 0
