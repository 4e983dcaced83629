"""The demo's parts that need no full run: its settings, where it falls back, the example worker's undo."""

from __future__ import annotations

import importlib.util
import logging
import sys
import time
from pathlib import Path

import pytest

from flow45.cli import demo
from flow45 import states as S
from flow45 import store
from flow45.config import load_config
from flow45.errors import Flow45Error
from flow45.settings import Settings, TeamSettings
from tests.conftest import EXAMPLES, ROOT


def test_on_the_embedded_default_the_demo_uses_its_own_sqlite_file(tmp_path):
    settings = demo.demo_settings(Settings(), tmp_path / "d.db")
    assert settings.database_url == f"sqlite:///{tmp_path / 'd.db'}"
    assert settings.amqp_url is None and settings.teams == {}
    assert settings.default_retry_delay == 1.0, "the retried load comes back within seconds"


def test_with_a_broker_its_user_works_for_reports_in_this_process_only():
    base = Settings(
        database_url="postgresql://u@db/flow45_demo", amqp_url="amqp://guest:guest@localhost:5672/%2F",
        teams={"sales": TeamSettings(users={"guest": "operator", "sales-w": "worker"}),
               "reports": TeamSettings(users={"reports-ops": "operator"})},
    )
    settings = demo.demo_settings(base, Path("ignored.db"))
    assert settings.database_url == "postgresql://u@db/flow45_demo"
    assert settings.teams["reports"].users == {"reports-ops": "operator", "guest": "worker"}
    assert settings.teams["sales"].users == {"sales-w": "worker"}, "one user, one team: the bridge's rule"
    assert base.teams["reports"].users == {"reports-ops": "operator"}, "the installation's settings are untouched"


def test_no_terminal_or_no_tui_means_headless(monkeypatch):
    assert demo.dashboard() == (None, "not a terminal, so no dashboard")  # pytest captures stdout
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True, raising=False)
    monkeypatch.setattr(sys.stdout, "isatty", lambda: True, raising=False)
    monkeypatch.setitem(sys.modules, "tui.app", None)  # as if textual or tui were not installed
    entry, why = demo.dashboard()
    assert entry is None and why.startswith("the dashboard (tui) cannot be imported")


def test_a_postgresql_database_with_workflows_is_refused(store_db, backend, tmp_path):
    store.deploy(load_config(EXAMPLES), actor="tester")
    url = store_db.flow45_url
    if backend == "sqlite":
        demo._fresh_store(url, tmp_path / "other.db")  # the demo's own file: recreated, never refused
        return
    with pytest.raises(Flow45Error, match="already has workflows; the demo deploys its own"):
        demo._fresh_store(url, tmp_path / "unused.db")


def test_a_folder_it_cannot_write_in_is_named_before_anything_is_touched(tmp_path, monkeypatch):
    old = tmp_path / "flow45-demo.db"
    old.write_bytes(b"")  # an earlier demo's store
    monkeypatch.setattr(demo.os, "access", lambda path, mode: Path(path) != tmp_path)  # as a read-only folder is
    with pytest.raises(Flow45Error, match=f"{tmp_path}: cannot write in this folder, where the demo makes its store"):
        demo._fresh_store(f"sqlite:///{old}", old)
    assert old.exists()


def load_worker_module():
    spec = importlib.util.spec_from_file_location("reports_worker", ROOT / "examples" / "reports_worker.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (found := predicate()):
        assert time.monotonic() < deadline, f"not within {timeout}s"
        time.sleep(0.02)
    return found


def test_unpublish_removes_only_the_file_it_published(store_db, tmp_path, caplog):
    """An undo notice that arrives after a newer publish replaced the file leaves the new file alone."""
    from bridge.sdk import LocalTransport, Worker

    store.deploy(load_config(EXAMPLES), actor="tester")
    worker = load_worker_module().build(Worker(LocalTransport("reports", "w1", poll_interval=0.01)), pause=0.0,
                                        output=tmp_path / "out")
    run = store.trigger("reports", "monthly_report", {"month": "2026-02"}, actor="tester")
    worker.start(concurrency=2)
    caplog.set_level(logging.INFO, logger="reports-worker")
    try:
        def instance(task):
            return next(i for i in store.get_run(run).instances if i.task == task)

        approve = wait_for(lambda: (i := instance("approve")).state == S.AVAILABLE and i)
        store.submit_human(approve.id, {"approved": True, "reviewer": "ann"}, actor="demo-operator")
        wait_for(lambda: store.get_run(run).status == S.SUCCEEDED)
        published = tmp_path / "out" / "published" / "report-2026-02.pdf"
        assert published.read_bytes().startswith(b"%PDF-1.4")
        published.write_bytes(b"%PDF-1.4 a newer edition\n")  # replaced since, by someone else
        store.undo(instance("publish").id, "wrong recipients", actor="ann", hold=True)  # not published again
        wait_for(lambda: "was replaced since; leaving it" in caplog.text)
        assert published.read_bytes() == b"%PDF-1.4 a newer edition\n"
    finally:
        worker.stop()
        assert worker.join(timeout=30)
    rendered = tmp_path / "out" / "documents" / "report-2026-02.attempt1.pdf"
    assert rendered.exists(), "undoing publish leaves the render's own file"


def test_the_demo_clock_skips_to_the_nightly_timer_only_when_nothing_else_can_move(store_db, capsys):
    """The example's nightly run waits for 06:00; the demo's clock skips there while only human tasks wait,
    never while a worker holds or could take a task (its lease would expire in the skip)."""
    import datetime as dt

    import time_machine

    from flow45 import clock
    from flow45.cli.demo import script
    from tests.store.helpers import complete, instance

    store.deploy(load_config(EXAMPLES), actor="tester")
    night = dt.datetime(2026, 3, 4, 2, 30)
    at = night + dt.timedelta(minutes=20)
    nightly = store.trigger("reports", "nightly_sales", actor="flow45-scheduler", now=night,
                            trigger_kind="schedule", logical_time=night)
    for region in ("emea", "americas", "apac"):
        complete(nightly, f"load_{region}", {"region": region, "uri": f"file:///{region}.csv", "rows": 1}, now=at)
    complete(nightly, "summarize", {"uri": "file:///s.csv", "total_rows": 3, "partitions": [], "month": "2026-03"},
             now=at)
    assert instance(nightly, "morning").not_before == dt.datetime(2026, 3, 4, 6, 0)
    monthly = store.trigger("reports", "monthly_report", {"month": "2026-02"}, actor="ann", now=at)
    try:
        with time_machine.travel(at.replace(tzinfo=dt.timezone.utc), tick=False):
            assert script.timer_to_skip_to() is None, "extract is offered to the workers"
            grant = store.claim(instance(monthly, "extract").id, instance(monthly, "extract").token, "w", now=at)
            assert script.timer_to_skip_to() is None, "extract is running"
            store.submit(grant.instance, grant.token, {"uri": "file:///x.csv", "rows": 5}, now=at)
            complete(monthly, "render", {"uri": "file:///r.pdf", "pages": 4}, now=at)
            found = script.timer_to_skip_to()
            assert found and (found[0].task, found[1]) == ("morning", dt.datetime(2026, 3, 4, 6, 0)), \
                "only the approval (a person's) and the timer wait"
            assert script.skip_to_timer()
            assert clock.utcnow() == dt.datetime(2026, 3, 4, 6, 0)
            assert "run 1 morning waits until 06:00 UTC (3h10m from now)" in capsys.readouterr().out
            assert script.timer_to_skip_to() is None, "nothing left ahead to skip to"
    finally:
        clock.back_to_real_time()
    assert store.fire_due_timers(dt.datetime(2026, 3, 4, 6, 0)) == [instance(nightly, "morning").id]
