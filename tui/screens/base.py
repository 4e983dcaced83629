"""What every full screen of the dashboard shares: loading through the store, and being watched live."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from textual.screen import Screen

from flow45.db import describe_db_error
from flow45.errors import Flow45Error
from flow45.views import EventView

if TYPE_CHECKING:
    from tui.app import Dashboard


def refusal(exc: BaseException) -> str | None:
    """What the operator is told when the core refuses or the database fails; None for a bug."""
    return exc.message if isinstance(exc, Flow45Error) else describe_db_error(exc)


def notify_refusal(app: Dashboard, exc: BaseException) -> bool:
    """Tell the operator, in a notice, what the core refused or why the database failed; False for a
    bug, which the caller raises."""
    if (message := refusal(exc)) is None:
        return False
    app.notify(message, title="Refused", severity="error")
    return True


NARROW, WIDE = 110, 170  # columns: under WIDE a screen's side panes move below, under NARROW they may hide
RECOUNT_EVERY = 30.0  # seconds between redrawing a human task's "due in 2h" while no event brings a read


class LiveScreen(Screen):
    """A screen that shows what `load()` reads, then follows the ledger while it is on the stack.

    `load` and `fetch_changes` only read the database and may run in the feed's thread; `show`
    and `apply_changes` touch widgets and run on the UI thread. A screen under another one keeps
    being updated, so coming back to it needs no reload."""

    app: Dashboard
    close_on_failure = True  # a run or instance that cannot be read: back to where the operator came from
    _reads = 0  # reads asked for: only the newest is shown
    _changes = 0  # changes the feed brought: a read begun before one may have missed it

    def load(self) -> Any:
        raise NotImplementedError

    def show(self, payload: Any) -> None:
        raise NotImplementedError

    def fetch_changes(self, events: list[EventView]) -> Any:
        """By default: reload when any event concerns this screen."""
        return self.load() if any(map(self.concerns, events)) else None

    def apply_changes(self, events: list[EventView], payload: Any) -> None:
        if payload is not None:
            self.show(payload)

    def concerns(self, event: EventView) -> bool:
        return True

    def take_changes(self, events: list[EventView], payload: Any) -> None:
        """What the feed read for these events, on the UI thread."""
        self._changes += 1
        self.apply_changes(events, payload)

    def reload(self, opening: bool = False, again: bool = True) -> None:
        """Load off the UI thread, then show; a refusal is shown as a notification (`opening`: and the
        screen closes, if it closes on failure). Opening, its header says it is reading meanwhile."""
        from tui.background import off_ui

        self._reads += 1
        asked, changes, sub_title = self._reads, self._changes, self.sub_title
        if opening:
            self.sub_title = "reading…"

        def done(payload: Any) -> None:
            if opening:
                self.sub_title = sub_title
            if asked != self._reads or not self.is_attached:
                return  # a newer read comes, or the screen was closed
            self.show(payload)
            if changes != self._changes and again:
                self.reload(again=False)  # the feed's changes came before this older read: read once more

        def refused(message: str) -> None:
            if opening:
                self.sub_title = sub_title
            self.app.notify(message, title="Refused", severity="error")
            if opening and self.close_on_failure and self.app.screen is self:
                self.app.pop_screen()

        off_ui(self.app, None, self.load, done, refused)

    def on_mount(self) -> None:
        self.reload(opening=True)

    def on_resize(self, event) -> None:
        """Below NARROW columns the screen has class `narrow`, below WIDE `medium`: side panes give
        way to the data (each screen's .tcss says how)."""
        self.set_class(event.size.width < NARROW, "narrow")
        self.set_class(NARROW <= event.size.width < WIDE, "medium")

    def on_screen_resume(self) -> None:
        self.app.watch_live_screens()

    def commands(self) -> list[tuple[str, str, Any]]:
        """(title, help, callback) for the command palette while this screen is on top."""
        return []
