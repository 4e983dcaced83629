"""`flow45 demo` with the dashboard: the newcomer approves and undoes there; quitting stops the workers."""

from __future__ import annotations

import asyncio
import os
import select
import sys
import time
from pathlib import Path

import pytest

from flow45.cli import demo
from flow45 import states as S
from flow45 import store
from tests.cli.test_demo import demo_env

pytest.importorskip("textual")
pty = pytest.importorskip("pty")


class Terminal:
    """`flow45 demo` in a pseudo-terminal, as a person runs it."""

    def __init__(self, cwd: Path, *args: str):
        env = demo_env(TERM="xterm-256color", COLUMNS="160", LINES="48")
        self.pid, self.fd = pty.fork()
        if self.pid == 0:  # the child
            os.chdir(cwd)
            os.execve(sys.executable, [sys.executable, "-m", "flow45", "demo", *args], env)
        self.screen = b""

    def read_until(self, text: bytes, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while text not in self.screen and time.monotonic() < deadline:
            ready, _, _ = select.select([self.fd], [], [], 0.1)
            if ready:
                try:
                    self.screen += os.read(self.fd, 65536)
                except OSError:  # the child closed the terminal
                    return text in self.screen
        return text in self.screen

    def type(self, keys: bytes) -> None:
        os.write(self.fd, keys)

    def wait(self, timeout: float) -> int | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            self.read_until(b"\0never", 0.1)
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
        os.kill(self.pid, 9)
        os.waitpid(self.pid, 0)
        return None


def test_in_a_terminal_the_dashboard_opens_and_quitting_it_stops_the_workers(tmp_path):
    term = Terminal(tmp_path, "--pace", "0.05")
    assert term.read_until(b"Press Enter to open the dashboard", 30), term.screen[-2000:]
    assert b"i lists the human tasks waiting for you" in term.screen
    term.type(b"\r")
    assert term.read_until(b"Flow45", 20), "the dashboard drew its title"
    time.sleep(2)  # the workers run meanwhile
    term.type(b"q")
    assert term.wait(30) == 0, term.screen[-3000:]
    tail = term.screen.decode(errors="replace")
    assert "flow45 demo: dashboard closed; stopping the workers" in tail
    assert "approve waits for you: FLOW45_DATABASE_URL=sqlite:///" in tail, "the summary says what is left to do"
    log = (tmp_path / "flow45-demo-output" / "flow45-demo.log").read_text()
    assert "worker reports-1 stopped" in log and "worker reports-2 stopped" in log
    assert "scheduler" in log and "stopped" in log.splitlines()[-1]


@pytest.fixture
def stage(tmp_path, monkeypatch):
    """The demo's stage on SQLite in tmp_path, its services running; stopped (and checked) afterwards."""
    monkeypatch.setattr(demo, "_log_to", lambda path, echo_workers: None)  # keep pytest's logging
    options = demo.Options(database=tmp_path / "demo.db", output=tmp_path / "out", headless=False,
                           actor=demo.OPERATOR, timeout=60, pace=0.05)
    settings = demo.set_the_stage(options, echo_workers=None)
    services = demo.Services(settings, options)
    services.start()
    yield settings, options
    services.stop()
    assert services.workers == [] and all(not t.is_alive() for t in services.threads)


def test_the_newcomer_approves_and_undoes_in_the_dashboard(stage):
    """What the intro tells the newcomer to do, done with the keys it names."""
    from textual.widgets import Input, Select

    from tui.app import Dashboard
    from tui.screens.human import HumanTaskScreen
    from tui.screens.inbox import InboxScreen
    from tui.screens.modals import UndoModal
    from tui.screens.run import RunScreen
    from tui.screens.runs import RunsScreen
    from tui.widgets.dag import DagView

    settings, options = stage
    published = options.output / "published"

    async def play() -> None:
        app = Dashboard(demo.OPERATOR, database_url=settings.database_url)  # the approval is assigned to them
        async with app.run_test(size=(160, 48)) as pilot:
            async def until(predicate, timeout: float = 30.0) -> None:
                deadline = time.monotonic() + timeout
                while not predicate():
                    assert time.monotonic() < deadline, f"not within {timeout}s: {predicate.__doc__}"
                    await pilot.pause(0.05)

            def approve_waits() -> bool:
                """the approval is available"""
                return _task(1, "approve").state == S.AVAILABLE

            await until(approve_waits)
            await pilot.press("i")
            await until(lambda: isinstance(app.screen, InboxScreen) and app.screen.rows)
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
            app.screen.query_one("#field-approved", Select).value = True
            app.screen.query_one("#field-reviewer", Input).value = "newcomer"
            await pilot.press("ctrl+s")
            await until(lambda: not isinstance(app.screen, HumanTaskScreen))
            await until(lambda: store.get_run(1).status == S.SUCCEEDED)
            first = next(published.iterdir())
            await pilot.press("escape")
            await until(lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            for _ in range([r.id for r in store.list_runs()].index(1)):
                await pilot.press("down")
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
            assert app.screen.run.id == 1
            await pilot.press("down")
            await until(lambda: app.screen.query_one(DagView).cursor_instance.task == "render")
            await pilot.press("u")
            await until(lambda: isinstance(app.screen, UndoModal))
            await pilot.press(*[{" ": "space"}.get(c, c) for c in "wrong logo"])
            await pilot.press("enter")
            await until(lambda: isinstance(app.screen, RunScreen))
            await until(lambda: not first.exists())  # publish's worker removed it on the undo notice

    asyncio.run(play())
    render = _task(1, "render")
    assert render.attempt == 2 and render.state in (S.RUNNING, S.SUCCEEDED, S.AVAILABLE)
    undo = [e for e in store.list_events(team="reports", limit=1000) if e.kind == "undo" and e.instance == render.id]
    assert undo and undo[0].actor == demo.OPERATOR and undo[0].detail["reason"] == "wrong logo"


def _task(run: int, task: str):
    return next(i for i in store.get_run(run).instances if i.task == task)
