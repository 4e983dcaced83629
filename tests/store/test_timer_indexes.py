"""The scheduler's sweeps read indexes that hold only the task instances whose timer is set: a lease,
a retry's or a timer's moment, a human task's alarm, a parked attempt's key. An instance that ended
is in none of them, however many ended. A store made before, whose indexes held every instance, is
upgraded, and its sweeps still find what came due."""

from __future__ import annotations

import datetime as dt
import logging

from flow45 import store
from flow45.db import atomic, database
from flow45.migrate import CURRENT, STEPS, _timer_indexes_v17, upgrade
from flow45.models import TIMER_INDEXES, SchemaVersion
from flow45.store import inbox, stats
from tests.store.helpers import BLOB, DIAMOND, T0, claim, deploy_text, states

MICRO = dt.timedelta(microseconds=1)
HOUR = dt.timedelta(hours=1)
COLUMNS = {"task_instance_state_alarm_at": ("state", "alarm_at"),
           "task_instance_state_lease_expires_at": ("state", "lease_expires_at"),
           "task_instance_state_not_before": ("state", "not_before"),
           "task_instance_callback_key": ("callback_key",)}


def _definitions() -> dict[str, str]:
    return {index.name: index.sql for index in database.get_indexes("task_instance")}


def _holds_only_timed(definition: str, column: str) -> bool:
    text = definition.replace('"', "").upper()
    return f"WHERE ({column.upper()} IS NOT NULL)" in text


def test_the_sweeps_indexes_of_an_upgraded_store_hold_only_timed_instances_and_still_find_them(store_db, tmp_path):
    assert set(TIMER_INDEXES) == set(COLUMNS)
    step = STEPS.index(_timer_indexes_v17) + 1
    with atomic():  # a store from before: each index of every instance, and the one by team first
        for name, columns in COLUMNS.items():
            database.execute_sql(f"DROP INDEX {name}")
            database.execute_sql(f"CREATE INDEX {name} ON task_instance ({', '.join(columns)})")
        database.execute_sql("DROP INDEX task_instance_state_team_function")
        database.execute_sql("CREATE INDEX task_instance_team_function_state ON task_instance (team, function, state)")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert not any(_holds_only_timed(_definitions()[name], columns[-1]) for name, columns in COLUMNS.items())

    assert upgrade() == (step - 1, CURRENT)
    made = _definitions()
    for name, columns in COLUMNS.items():
        assert _holds_only_timed(made[name], columns[-1]), made[name]
    assert "task_instance_team_function_state" not in made
    assert [i.columns for i in database.get_indexes("task_instance") if i.name == "task_instance_state_team_function"] \
        == [["state", "team", "function"]]

    deploy_text(tmp_path, DIAMOND)  # `a` is retried once, 10 s after it fails
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    store.park(grant.instance, grant.token, 3600, now=T0)
    expired = T0 + HOUR + MICRO  # past the deadline
    assert store.expire_leases(T0 + HOUR) == []
    assert store.expire_leases(expired) == [grant.instance]
    assert store.release_due_retries(expired + dt.timedelta(seconds=10) - MICRO) == []
    assert store.release_due_retries(expired + dt.timedelta(seconds=10)) == [grant.instance]
    again = claim(run, "a", now=T0 + 2 * HOUR)
    key = store.park(again.instance, again.token, None, now=T0 + 2 * HOUR).callback_key
    done = store.complete_callback(key, BLOB, actor="webhook", now=T0 + 2 * HOUR)
    assert done.instance == grant.instance and states(run)["a"] == "succeeded"


ENDED = 20_000


def test_on_postgresql_what_reads_live_instances_reads_past_the_ended_ones_whose_indexes_stay_small(
        pg_store, tmp_path, caplog):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    database.execute_sql(  # instances that ended, as a store keeps them: no timer set
        "INSERT INTO task_instance"
        " (run_id, team, task, function, state, attempt, failures, priority, human, updated_at)"
        " SELECT %s, 'acme', 'ended' || n, 'fa', 'succeeded', 1, 0, 0, false, %s FROM generate_series(1, %s) n",
        (run, T0, ENDED))
    database.execute_sql("ANALYZE task_instance")
    for name in COLUMNS:  # a metapage and a leaf: the few timed instances, none of the ended ones
        (size,) = database.execute_sql("SELECT pg_relation_size(%s)", (name,)).fetchone()
        assert size <= 2 * 8192, (name, size)

    with caplog.at_level(logging.DEBUG, logger="peewee"):
        assert store.expire_leases(T0 + dt.timedelta(days=1)) == [grant.instance]
        store.release_due_retries(T0 + dt.timedelta(days=2))
        store.fire_due_timers(T0 + dt.timedelta(days=2))
        store.human_alarms(T0 + dt.timedelta(days=2))
        stats.read_figures(T0)  # the metrics scrape
        inbox.human_inbox("acme", "ann")
        store.claim_next("acme", ["fa", "fb"], "w", now=T0 + dt.timedelta(days=2))
    reads = [record.msg for record in caplog.records
             if isinstance(record.msg, tuple) and record.msg[0].startswith("SELECT")
             and 'FROM "task_instance"' in record.msg[0] and '"run_id" IN' not in record.msg[0]]
    assert len(reads) >= 7, reads
    for sql, params in reads:
        plan = "\n".join(row[0] for row in database.execute_sql("EXPLAIN " + sql, params).fetchall())
        assert "Seq Scan on task_instance" not in plan, plan
