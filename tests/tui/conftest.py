"""The dashboard on a SQLite store with the example config deployed, driven by the Pilot."""

from __future__ import annotations

import asyncio
import datetime as dt
import inspect
import time

import pytest

from flow45 import store
from flow45.config import load_config
from flow45.db import connect
from flow45.migrate import ensure_schema
from flow45.models import TaskInstance
from flow45.settings import Settings, use_settings
from tests.conftest import EXAMPLES, new_sqlite_store

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)
SIZE = (160, 48)
OPERATOR = "ops-ann"
REVIEWER = "reports-ops"  # one of the example's @reviewers, who may decide the approval


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    """Run `async def` tests in a fresh event loop (no plugin needed)."""
    if inspect.iscoroutinefunction(pyfuncitem.obj):
        names = pyfuncitem._fixtureinfo.argnames
        asyncio.run(pyfuncitem.obj(**{name: pyfuncitem.funcargs[name] for name in names}))
        return True
    return None


@pytest.fixture
def tui_db(tmp_path):
    """A SQLite store with examples/config deployed at a fixed time; yields its URL."""
    url = f"sqlite:///{tmp_path / 'flow45.db'}"
    new_sqlite_store(tmp_path / "flow45.db")
    use_settings(Settings(database_url=url))
    db = connect(url, create=True)
    ensure_schema()
    store.deploy(load_config(EXAMPLES), actor="tester", now=T0)
    yield url
    db.close()


def instance(run_id: int, task: str) -> TaskInstance:
    return TaskInstance.get((TaskInstance.run == run_id) & (TaskInstance.task == task))


def complete(run_id: int, task: str, output: dict, worker: str = "w1", now: dt.datetime = T0) -> None:
    row = instance(run_id, task)
    grant = store.claim(row.id, row.token, worker, now=now)
    store.submit(grant.instance, grant.token, output, now=now)


def monthly_run(done: tuple[str, ...] = ("extract", "render")) -> int:
    """A monthly_report run with some tasks done; with extract and render done, approve is available."""
    run = store.trigger("reports", "monthly_report", {"month": "2026-02"}, actor="ann", now=T0)
    outputs = {"extract": {"uri": "s3://sales/2026-02.parquet", "rows": 48213},
               "render": {"uri": "s3://reports/2026-02.pdf", "pages": 12}}
    for task in done:
        complete(run, task, outputs[task])
    return run


async def wait_until(pilot, predicate, timeout: float = 30.0) -> float:
    """Let the app run until `predicate()` holds; returns the seconds it took. No key is pressed.
    The timeout only bounds a hang: a loaded machine may take seconds where a quiet one takes less."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not within {timeout}s: {predicate.__doc__ or predicate}")
        await pilot.pause(0.05)
    return time.monotonic() - started


def notices(app) -> list[tuple[str, str]]:
    """(title, message) of every notice the dashboard gives from now on, as it gives it. Not
    `app._notifications`: that holds a notice only once the app has handled its message (a screen may
    change first) and drops it after its 5 s on screen (a loaded machine's test may take longer)."""
    given: list[tuple[str, str]] = []
    notify = app.notify

    def recorded(message: str, *, title: str = "", **kwargs) -> None:
        given.append((title, message))
        notify(message, title=title, **kwargs)

    app.notify = recorded
    return given


async def type_text(pilot, text: str) -> None:
    await pilot.press(*[{" ": "space"}.get(ch, ch) for ch in text])
    await asyncio.sleep(0)
