"""Ids are never given twice: after `prune` removed the newest runs, a new run, its instances and
its ledger events get ids above every id given before, on SQLite as on PostgreSQL (whose sequences
never go back). An id a dashboard, an export or a follower of the ledger still holds names one thing."""

from __future__ import annotations

import datetime as dt

import peewee as pw
import pytest

from flow45 import store
from flow45.db import atomic, connect, dialect
from flow45.errors import Flow45Error
from flow45.models import Event, Outbox, TaskInstance
from flow45.settings import Settings, use_settings
from flow45.store.prune import prune
from tests.store.helpers import T0, deploy_text
from tests.store.test_prune import PAIR, finished_run


def newest_ids() -> dict[str, int]:
    return {"instance": TaskInstance.select().order_by(TaskInstance.id.desc()).first().id,
            "event": Event.select().order_by(Event.id.desc()).first().id,
            "outbox": Outbox.select().order_by(Outbox.id.desc()).first().id}


@pytest.mark.usefixtures("store_db")
def test_a_run_after_everything_was_pruned_takes_new_ids(tmp_path):
    deploy_text(tmp_path, PAIR)
    runs = [finished_run(T0), finished_run(T0)]
    before = newest_ids()
    report = prune(T0 + dt.timedelta(days=1), ledger="prune")
    assert report.runs == 2
    run = store.trigger("acme", "pair", actor="ops", now=T0 + dt.timedelta(days=2))
    assert run > max(runs)
    after = newest_ids()
    assert all(after[name] > before[name] for name in before), (before, after)


MADE_AFTER_24 = {"outbox_pending_by_key"}  # indexes that later steps of the upgrade add


@pytest.fixture
def sqlite_store(tmp_path):
    """An SQLite store with no schema yet (PostgreSQL's sequences never gave an id twice: its upgrade
    step changes nothing)."""
    url = f"sqlite:///{tmp_path / 'flow45.db'}"
    use_settings(Settings(database_url=url))
    db = connect(url, create=True)
    yield db
    db.close()


def test_a_store_from_before_is_upgraded_to_ids_never_reused(tmp_path, monkeypatch, sqlite_store):
    """An SQLite store made before AUTOINCREMENT: `db upgrade` rebuilds its tables with every row, id,
    reference and index kept, and a prune after it gives no id twice."""
    from flow45 import migrate
    from flow45.db import database
    from flow45.models import Attempt, BigRowId, Run, RowId

    with monkeypatch.context() as old:  # the tables as Flow45 made them at schema version 23
        old.setattr(RowId, "ddl", pw.AutoField.ddl)
        old.setattr(BigRowId, "ddl", pw.BigAutoField.ddl)
        old.setattr(migrate, "STEPS", migrate.STEPS[:23])
        old.setattr(migrate, "CURRENT", 23)
        assert migrate.upgrade() == (0, 23)
        deploy_text(tmp_path, PAIR)
        runs = [finished_run(T0), finished_run(T0), finished_run(T0)]
    made = dict(database.execute_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall())
    before = {"runs": list(Run.select().order_by(Run.id).tuples()),
              "instances": list(TaskInstance.select().order_by(TaskInstance.id).tuples()),
              "attempts": list(Attempt.select().order_by(Attempt.id).tuples()),
              "events": list(Event.select().order_by(Event.id).tuples()),
              "outbox": list(Outbox.select().order_by(Outbox.id).tuples())}
    assert "AUTOINCREMENT" not in database.execute_sql("SELECT sql FROM sqlite_master WHERE name = 'run'").fetchone()[0]
    with pytest.raises(Flow45Error, match="foreign keys are on"), atomic():  # begun with them on: no drop
        dialect().stop_reusing_ids(["run"])
    assert list(TaskInstance.select().order_by(TaskInstance.id).tuples()) == before["instances"]

    assert migrate.upgrade() == (23, migrate.CURRENT)
    assert {"runs": list(Run.select().order_by(Run.id).tuples()),
            "instances": list(TaskInstance.select().order_by(TaskInstance.id).tuples()),
            "attempts": list(Attempt.select().order_by(Attempt.id).tuples()),
            "events": list(Event.select().order_by(Event.id).tuples()),
            "outbox": list(Outbox.select().order_by(Outbox.id).tuples())} == before
    indexes = dict(database.execute_sql("SELECT name, sql FROM sqlite_master WHERE type = 'index'").fetchall())
    assert {name: sql for name, sql in indexes.items() if name not in MADE_AFTER_24} == made
    assert database.execute_sql("PRAGMA foreign_keys").fetchone() == (1,)
    assert database.execute_sql("PRAGMA foreign_key_check").fetchall() == []

    newest = newest_ids()
    prune(T0 + dt.timedelta(days=1), ledger="prune")
    run = store.trigger("acme", "pair", actor="ops", now=T0 + dt.timedelta(days=2))
    assert run > max(runs)
    assert all(newest_ids()[name] > newest[name] for name in newest)
    with atomic():  # the instances' reference to their run still cascades
        Run.delete().where(Run.id == run).execute()
    assert TaskInstance.select().where(TaskInstance.run == run).count() == 0
