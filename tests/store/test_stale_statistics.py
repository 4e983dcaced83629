"""A change reads the rows it changes by key, however wrong PostgreSQL's statistics are.

The engine's statements are prepared once with generic plans. Statistics taken while the tables
looked empty (a fresh or pruned store, or rows not yet committed) must not give a plan that scans a
whole table for each run: over a transaction that creates many runs, that grows with the square of
their number. And a run that finishes reads the head of its workflow's queue, not the whole queue."""

from __future__ import annotations

import psycopg2
import pytest

from flow45 import store
from flow45.db import atomic, connect, database
from flow45.migrate import ensure_schema
from flow45.settings import Settings, use_settings
from tests.store.helpers import BLOB, T0, deploy_blob_tasks, deploy_text, instance

pytestmark = pytest.mark.integration

WORKFLOW = """
    team: acme
    types:
      Blob:
        fields: {uri: string}
    workflows:
      many:
        max_active_runs: {slots}
        tasks:
          a: {function: fa, output: Blob}
          b: {function: fb, output: Blob, after: [a]}
"""
RUNS = 300
ENGINE_TABLES = ("run", "task_instance", "processed_message")


@pytest.fixture
def pg(postgres_url, pg_store):
    run_elsewhere(postgres_url, "VACUUM")  # earlier tests' deleted rows would be read too
    return postgres_url


def rows_read() -> int:
    """Rows and index entries this transaction has read from the engine's tables so far (the
    transaction's own counters: exact, and not yet flushed to the shared statistics)."""
    tables = ", ".join(f"'{t}'::regclass" for t in ENGINE_TABLES)
    return database.execute_sql(
        "SELECT sum(pg_stat_get_xact_tuples_returned(c.oid))::bigint FROM pg_class c"
        f" WHERE c.oid IN ({tables}) OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid IN ({tables}))"
    ).fetchone()[0]


def run_elsewhere(url: str, command: str) -> None:
    """VACUUM or ANALYZE the engine's tables from another session, which does not see the rows this
    test's transaction has not committed."""
    other = psycopg2.connect(url)
    other.autocommit = True
    try:
        other.cursor().execute(f"{command} {', '.join(ENGINE_TABLES)}")
    finally:
        other.close()


def one_more_run_and_the_first_to_the_end() -> dict[str, int]:
    """Rows read by each step: trigger one more run, then claim and submit the first run's tasks."""
    read = {}
    before = rows_read()
    store.trigger("acme", "many", actor="ops", now=T0)
    read["trigger a run"] = rows_read() - before
    first_run = store.list_runs("acme", limit=1_000_000)[-1].id
    for n, task in enumerate(("a", "b")):
        row = instance(first_run, task)
        before = rows_read()
        grant = store.claim(row.id, row.token, "w", now=T0)
        read[f"claim {task}"] = rows_read() - before
        before = rows_read()
        store.submit(grant.instance, grant.token, {"uri": "s3://done"}, now=T0, message_id=f"m{n}")
        read[f"submit {task}"] = rows_read() - before
    assert store.get_run(first_run).status == "succeeded"
    return read


def test_one_more_run_reads_a_few_rows_after_many_when_statistics_say_the_tables_are_empty(pg, tmp_path):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with atomic():
        for _ in range(RUNS):
            store.trigger("acme", "many", actor="ops", now=T0)
        run_elsewhere(pg, "ANALYZE")  # the statements are planned again, with these statistics
        read = one_more_run_and_the_first_to_the_end()
    # A scan of the runs, once per change, would read at least RUNS rows.
    assert max(read.values()) < RUNS // 5, f"with {RUNS} runs in the tables, rows read to: {read}"


def test_a_run_that_finishes_reads_the_head_of_a_long_queue_not_all_of_it(pg, tmp_path):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "1"))
    runs = [store.trigger("acme", "many", actor="ops", now=T0) for _ in range(RUNS)]
    run_elsewhere(pg, "ANALYZE")
    with atomic():
        database.execute_sql("SET LOCAL enable_seqscan = off")  # as on tables too big to read whole
        read = one_more_run_and_the_first_to_the_end()
    assert store.get_run(runs[1]).status == "running"
    assert max(read.values()) < RUNS // 5, f"with {RUNS - 1} runs queued, rows read to: {read}"


def _removed(plan: dict) -> int:
    """Rows a plan looked at and threw away, over all its nodes (filters and join filters)."""
    own = plan.get("Rows Removed by Filter", 0) + plan.get("Rows Removed by Join Filter", 0)
    return own * plan.get("Actual Loops", 1) + sum(_removed(child) for child in plan.get("Plans", []))


def test_marking_many_outbox_rows_sent_looks_at_each_once_when_statistics_say_it_is_empty(pg):
    from flow45.store import outbox

    other = psycopg2.connect(pg)
    other.autocommit = True
    other.cursor().execute("ANALYZE outbox")  # empty: the statements are planned for a table of nothing
    other.close()
    database.execute_sql("INSERT INTO outbox (team, kind, routing_key, priority, body, created_at) "
                         "SELECT 'acme', 'offer', 'k', 0, '{}', now() FROM generate_series(1, 20000)")
    ids = [row[0] for row in database.execute_sql("SELECT id FROM outbox ORDER BY id LIMIT 2000").fetchall()]
    outbox.mark_sent(ids[:1000])  # planned and cached, as the relay's would be
    sent = sent_by(lambda: outbox.mark_sent(ids[1000:]))
    assert database.execute_sql("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL").fetchone()[0] == 2000
    database.execute_sql("UPDATE outbox SET sent_at = NULL WHERE id >= %s", (ids[1000],))
    parts = sent.split(";\n")  # the same statement again, explained as it runs
    (execute,) = [n for n, part in enumerate(parts) if part.startswith("EXECUTE")]
    with atomic():
        for part in parts[:execute]:
            database.execute_sql(part)
        (plan,) = database.execute_sql("EXPLAIN (ANALYZE, FORMAT JSON) " + parts[execute]).fetchone()[0]
    assert _removed(plan["Plan"]) < 1000, f"{_removed(plan['Plan'])} rows looked at and thrown away"


def sent_by(work) -> str:
    """The one query `work` sends to PostgreSQL (with what rides along with it)."""
    connection = database.connection()
    sent: list[str] = []
    base = connection.cursor_factory

    class Recording(base):
        def execute(self, query, vars=None):
            sent.append(query.decode() if isinstance(query, bytes) else query)
            return super().execute(query, vars)

    connection.cursor_factory = Recording
    try:
        work()
    finally:
        connection.cursor_factory = base
    (statement,) = [q for q in sent if "EXECUTE" in q]
    return statement


@pytest.fixture
def fresh_pg(postgres_server):
    """The store on a database of its own, created now: no table of it was ever analyzed."""
    name = "flow45_fresh_statistics"
    postgres_server.drop_database(name)
    url = postgres_server.create_database(name)
    use_settings(Settings(database_url=url))
    connect(url, create=True)
    ensure_schema()
    yield url
    database.close()
    postgres_server.drop_database(name)


def test_a_submit_that_offers_a_wide_fan_out_reads_each_instance_of_it_once(fresh_pg, tmp_path):
    """The downstream instances a submit made ready are read by (run, task): compared instead with
    every instance of the run, as a plan made on a store never analyzed did, a fan-out of 5,000 read
    25 million index entries (1.2 s)."""
    items = 1000
    deploy_blob_tasks(tmp_path, "fan", ["root: {function: fr, output: Blob}"] + [
        f"item{n:03d}: {{function: fi, output: Blob, inputs: {{src: root}}}}" for n in range(items)])
    run = store.trigger("acme", "fan", actor="ops", now=T0)
    grant = store.claim(instance(run, "root").id, instance(run, "root").token, "w", now=T0)
    with atomic():
        before = rows_read()
        store.submit(grant.instance, grant.token, BLOB, now=T0)
        read = rows_read() - before
    assert instance(run, "item123").state == "available"
    assert read < 5 * items, f"{read} rows and index entries read to offer {items} instances"


def test_an_upgraded_store_gets_the_indexes_of_runs_in_place(pg):
    from flow45.migrate import CURRENT, STEPS, _runs_in_place_v23, upgrade
    from flow45.models import SchemaVersion

    step = STEPS.index(_runs_in_place_v23) + 1
    with atomic():  # the indexes as the version before made them
        database.execute_sql("DROP INDEX run_queued_in_place; DROP INDEX run_in_place; CREATE INDEX "
                             "run_queued_by_workflow ON run (workflow_id, id) WHERE status = 'queued'")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert upgrade() == (step - 1, CURRENT)
    made = dict(database.execute_sql("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'run'").fetchall())
    assert "run_queued_by_workflow" not in made
    assert "(workflow_id, COALESCE(logical_time, created_at), id) WHERE ((status)::text = 'queued'::text)" in (
        made["run_queued_in_place"])
    assert made["run_in_place"].endswith("(workflow_id, COALESCE(logical_time, created_at), id)")
