"""No index that a wider index of its table leads with: each write would maintain both. A store
made before is upgraded by dropping them, and the lookups they served still find their rows."""

from __future__ import annotations

import pytest

from flow45 import store
from flow45.db import database
from flow45.migrate import CURRENT, REDUNDANT_INDEXES, STEPS, _lean_indexes_v13, upgrade
from flow45.models import Attempt, Run, SchemaVersion, TaskInstance
from tests.store.helpers import T0, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

JOB = """
    team: acme
    types:
      Ok: {fields: {ok: boolean}}
    workflows:
      job:
        max_active_runs: null
        tasks:
          first: {function: work, output: Ok}
          second: {function: check, output: Ok, inputs: {given: first}}
"""

OLD_COLUMNS = {"task_instance_run_id": "run_id", "attempt_instance_id": "instance_id", "run_team": "team",
               "run_workflow_id": "workflow_id", "workflow_version_workflow_id": "workflow_id"}


def _names(table: str) -> set[str]:
    return {index.name for index in database.get_indexes(table)}


def _leading_columns_of_another(table: str) -> list[str]:
    """Indexes whose columns are the first columns of another index of the table."""
    indexes = [(i.name, tuple(i.columns)) for i in database.get_indexes(table)]
    return [name for name, columns in indexes
            if any(other != name and wider[:len(columns)] == columns and len(wider) > len(columns)
                   for other, wider in indexes)]


def test_a_new_store_keeps_no_index_that_another_one_leads_with():
    for table in ("task_instance", "attempt", "run", "workflow_version", "event", "outbox", "processed_message"):
        assert _leading_columns_of_another(table) == [], table


def test_upgrade_drops_the_redundant_indexes_and_their_lookups_still_work(tmp_path):
    step = STEPS.index(_lean_indexes_v13) + 1
    with database.atomic():
        for table, names in REDUNDANT_INDEXES.items():
            for name in names:
                database.execute_sql(f"CREATE INDEX {name} ON {table} ({OLD_COLUMNS[name]})")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert all(name in _names(table) for table, names in REDUNDANT_INDEXES.items() for name in names)

    assert upgrade() == (step - 1, CURRENT)
    for table, names in REDUNDANT_INDEXES.items():
        assert not set(names) & _names(table), table

    deploy_text(tmp_path, JOB)
    run = store.trigger("acme", "job", actor="ann", now=T0)
    instances = list(TaskInstance.select().where(TaskInstance.run == run).order_by(TaskInstance.task))
    assert [i.task for i in instances] == ["first", "second"]
    assert Run.select().where((Run.team == "acme") & (Run.workflow == instances[0].run.workflow)).count() == 1
    assert Attempt.select().where(Attempt.instance == instances[0].id).count() == 0


def test_the_outbox_keeps_one_index_of_its_unsent_rows_and_they_are_still_found(tmp_path):
    from flow45.migrate import _one_pending_index_v15
    from flow45.store import outbox, stats

    assert "outbox_sent_at_priority_id" not in _names("outbox") and "outbox_pending_by_team" in _names("outbox")
    step = STEPS.index(_one_pending_index_v15) + 1
    with database.atomic():  # a store from before: the old index of every row
        database.execute_sql("CREATE INDEX outbox_sent_at_priority_id ON outbox (sent_at, priority, id)")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert upgrade() == (step - 1, CURRENT)
    assert "outbox_sent_at_priority_id" not in _names("outbox")

    deploy_text(tmp_path, JOB)
    run = store.trigger("acme", "job", actor="ann", now=T0)
    [row] = outbox.pending()
    assert row.body["run"] == run
    assert stats.read_figures(T0).outbox_backlog == 1
    outbox.mark_sent([row.id])
    assert outbox.pending() == [] and stats.read_figures(T0).outbox_backlog == 0
