"""The dashboard when its database fails under it (SQLite locked by another process's long write,
PostgreSQL gone): each key that reads or acts says why in a notice, and the dashboard goes on."""

from __future__ import annotations

import datetime as dt

import time_machine
from peewee import OperationalError

from flow45.client.local import LocalClient
from tests.tui.conftest import REVIEWER, SIZE, T0, monthly_run, wait_until
from tests.tui.test_dashboard import open_run
from tui.app import Dashboard
from tui.screens.inbox import InboxScreen
from tui.screens.modals import UndoModal
from tui.screens.run import RunScreen
from tui.screens.runs import RunsScreen


class LockedOut(LocalClient):
    """Its database refuses every read and change once `locked`, as SQLite does while another holds it."""

    locked = False

    def _database(self) -> None:
        if self.locked:
            raise OperationalError("database is locked")

    def workflows(self, *args, **kwargs):
        self._database()
        return super().workflows(*args, **kwargs)

    def instance(self, *args, **kwargs):
        self._database()
        return super().instance(*args, **kwargs)

    def take(self, *args, **kwargs):
        self._database()
        return super().take(*args, **kwargs)

    def undo(self, *args, **kwargs):
        self._database()
        return super().undo(*args, **kwargs)


def told(app, words: str) -> bool:
    return any(words in n.message for n in app._notifications)


async def test_taking_opening_and_undoing_say_the_database_failed_instead_of_crashing(tui_db):
    run = monthly_run()
    client = LockedOut(REVIEWER)
    app = Dashboard(REVIEWER, client=client)
    with time_machine.travel(T0.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            await pilot.press("i")
            await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.rows)
            inbox = app.screen
            client.locked = True
            await pilot.press("t")
            await wait_until(pilot, lambda: told(app, "database is locked"))
            app.clear_notifications()
            await pilot.press("enter")  # the human task's form
            await wait_until(pilot, lambda: told(app, "database is locked"))
            assert app.screen is inbox
            app.clear_notifications()
            await pilot.press("escape", "i")
            await wait_until(pilot, lambda: told(app, "database is locked"))
            assert isinstance(app.screen, RunsScreen)
            client.locked = False
            await open_run(pilot)
            assert app.screen.run_id == run
            client.locked = True
            await pilot.press("u")  # the undo dialog's dry run
            await wait_until(pilot, lambda: isinstance(app.screen, UndoModal))
            await wait_until(pilot, lambda: "database is locked" in str(app.screen.query_one("#refusal").content))
            await pilot.press("escape")
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen))
            assert app.is_running
