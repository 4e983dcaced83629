"""The runs a bridge keeps between batches (flow45.store.run_cache): a run's next message is applied in
one round trip, on exactly the rows a fresh read would give. A run that anyone else changed since, a
message applied already, or a lost connection: each time the rows are read afresh, and nothing is
applied on what was kept."""

from __future__ import annotations

import json
import uuid

import psycopg2
import pytest

from bridge.batch import DatabaseUnavailable, apply_batch
from bridge.inbound import Delivery
from flow45 import store
from flow45.db import database
from flow45.dialect.postgres_begin import LazyBeginCursor
from flow45.models import Attempt, Outbox
from flow45.store.run_cache import RunCache
from flow45.store.unit import read_back
from tests.store.helpers import ACME_WORKER, CHAIN_OF_TWO, deploy_text, instance

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("store_db")]

OUTPUT = {"uri": "s3://x"}


@pytest.fixture
def backend():
    return "postgresql"


@pytest.fixture
def run(tmp_path) -> int:
    deploy_text(tmp_path, CHAIN_OF_TWO)
    return store.trigger("acme", "chain", actor="ops")


@pytest.fixture
def round_trips(monkeypatch) -> list[int]:
    """Statements sent to PostgreSQL (a multi-statement query is one round trip), counted in [0]."""
    count = [0]
    execute = LazyBeginCursor.execute

    def counting(self, query, vars=None):
        count[0] += 1
        return execute(self, query, vars)

    monkeypatch.setattr(LazyBeginCursor, "execute", counting)
    return count


def message(kind: str, instance_id: int, token: str, message_id: str | None = None, **fields) -> Delivery:
    body = {"type": kind, "instance": instance_id, "token": token, **fields}
    return Delivery(tag=1, exchange="flow45.in.acme", user_id="w", message_id=message_id or uuid.uuid4().hex,
                    reply_to=None, correlation_id=None, body=json.dumps(body).encode())


def deliver(kept: RunCache, delivery: Delivery, round_trips: list[int] | None = None):
    """Apply a batch of the delivery, then read its runs back as a committer does once it answered;
    `round_trips` counts the batch's own."""
    if round_trips is not None:
        round_trips[0] = 0
    (outcome,) = apply_batch(ACME_WORKER, [delivery], kept=kept).outcomes
    if round_trips is not None:
        round_trips.append(round_trips[0])
    read_back(kept)
    return outcome


def claimed(kept: RunCache, run: int, task: str = "a") -> str:
    """Claim the task's offer in a batch (the run is kept after it); returns the attempt's token."""
    row = instance(run, task)
    outcome = deliver(kept, message("claim", row.id, row.token, worker="w"))
    assert outcome.refusal is None, outcome.refusal
    return outcome.result["token"]


def test_a_runs_next_message_is_applied_in_one_round_trip_on_the_kept_rows(run, round_trips):
    kept = RunCache()
    token = claimed(kept, run)
    assert len(kept) == 1
    a = instance(run, "a").id
    for percent in (20, 40):  # the first prepares the check's statements on this connection
        outcome = deliver(kept, message("progress", a, token, percent=percent, message="half way"), round_trips)
        assert outcome.refusal is None, outcome.refusal
    assert round_trips[-1] == 1  # the locks, the check, the writes and the COMMIT
    assert (kept.hits, kept.stale) == (2, 0)
    assert (instance(run, "a").progress_pct, instance(run, "a").progress_message) == (40, "half way")
    outcome = deliver(kept, message("submit", a, token, output=OUTPUT))
    assert outcome.refusal is None, outcome.refusal
    assert (instance(run, "a").state, instance(run, "b").state) == ("succeeded", "available")
    assert kept.hits == 3


def test_a_run_cancelled_since_it_was_kept_refuses_the_submit(run):
    kept = RunCache()
    token = claimed(kept, run)
    store.cancel_run(run, actor="ops")
    outcome = deliver(kept, message("submit", instance(run, "a").id, token, output=OUTPUT))
    assert outcome.refusal is not None and outcome.refusal.code == "stale"
    assert kept.stale == 1
    assert (instance(run, "a").state, instance(run, "b").state) == ("cancelled", "cancelled")
    assert not Attempt.select().where(Attempt.status == "succeeded").exists()


def test_a_run_another_writer_changed_since_is_read_afresh(run):
    kept = RunCache()
    token = claimed(kept, run)
    a = instance(run, "a").id
    store.submit(a, token, OUTPUT, team="acme")  # as another bridge would, on its own connection
    outcome = deliver(kept, message("progress", a, token, percent=10))
    assert outcome.refusal is not None and outcome.refusal.code == "stale"
    assert kept.stale == 1
    assert (instance(run, "a").state, instance(run, "b").state) == ("succeeded", "available")


def test_a_message_delivered_again_after_its_batch_gets_the_same_answer_and_applies_once(run):
    kept = RunCache()
    token = claimed(kept, run)
    submit = message("submit", instance(run, "a").id, token, output=OUTPUT)
    first = deliver(kept, submit)
    again = deliver(kept, submit)
    assert first.refusal is None and again.refusal is None
    assert again.result == {**first.result, "duplicate": True}
    assert kept.stale == 1
    assert Attempt.select().where(Attempt.status == "succeeded").count() == 1
    assert Outbox.select().where(Outbox.instance == instance(run, "b").id).count() == 1


def test_a_finished_run_is_not_kept(run):
    kept = RunCache()
    for task in ("a", "b"):
        token = claimed(kept, run, task)
        assert deliver(kept, message("submit", instance(run, task).id, token, output=OUTPUT)).refusal is None
    assert store.get_run(run).status == "succeeded"
    assert len(kept) == 0


def test_a_lost_database_connection_forgets_every_kept_run(run, postgres_url):
    kept = RunCache()
    token, a = claimed(kept, run), instance(run, "a").id
    other = psycopg2.connect(postgres_url)
    try:
        other.autocommit = True
        other.cursor().execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                               "WHERE datname = current_database() AND pid <> pg_backend_pid()")
    finally:
        other.close()
    with pytest.raises(DatabaseUnavailable):
        deliver(kept, message("progress", a, token, percent=10))
    assert len(kept) == 0
    assert deliver(kept, message("progress", a, token, percent=10)).refusal is None
    assert len(kept) == 1


def test_upgrade_to_the_row_check_step_creates_the_check_a_kept_run_needs(run):
    from flow45.migrate import CURRENT, STEPS, _row_check_v16, upgrade
    from flow45.models import SchemaVersion

    step = STEPS.index(_row_check_v16) + 1
    with database.atomic():
        database.execute_sql("DROP FUNCTION flow45_require_unchanged(boolean)")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert upgrade() == (step - 1, CURRENT)
    kept = RunCache()
    token = claimed(kept, run)
    assert deliver(kept, message("progress", instance(run, "a").id, token, percent=10)).refusal is None
    assert kept.hits == 1


def custom_plans() -> dict[str, int]:
    """This connection's prepared statements of the engine, and how many times each was planned for
    the values of one call (PostgreSQL's custom plans) rather than reusing its generic plan."""
    rows = database.execute_sql("SELECT name, custom_plans FROM pg_prepared_statements WHERE name LIKE %s",
                                ("flow45_%",)).fetchall()
    return dict(rows)


def test_the_statements_of_a_runs_messages_are_planned_once_not_per_message(tmp_path):
    """Planning a hot-path statement costs PostgreSQL several times what running it does: each is
    planned once on its connection (a generic plan), the runs read back after a commit too. Left to
    PostgreSQL, the read back was planned afresh for every batch: its generic plan looked dearer."""
    deploy_text(tmp_path, CHAIN_OF_TWO)
    runs = [store.trigger("acme", "chain", actor="ops") for _ in range(4)]
    before = custom_plans()
    kept = RunCache()
    for run in runs:  # more calls of each statement than PostgreSQL's custom plans before it weighs a generic one
        for task in ("a", "b"):
            token = claimed(kept, run, task)
            row = instance(run, task)
            assert deliver(kept, message("progress", row.id, token, percent=50)).refusal is None
            assert deliver(kept, message("submit", row.id, token, output=OUTPUT)).refusal is None
    assert kept.hits >= 8
    after = custom_plans()
    assert len(after) > len(before)
    assert {name: n - before.get(name, 0) for name, n in after.items() if n > before.get(name, 0)} == {}
