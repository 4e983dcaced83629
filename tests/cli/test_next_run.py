"""`flow45 workflows` says when each schedule's next run is due, and when no scheduler has made it."""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import time_machine

from flow45 import scheduler, store
from flow45.config import load_config

AMSTERDAM_NIGHTLY = """
    team: acme
    types:
      Done:
        fields: {ok: boolean}
    workflows:
      nightly:
        schedule: {cron: "30 2 * * *", timezone: Europe/Amsterdam}
        tasks:
          load: {function: load, output: Done}
      by_hand:
        tasks:
          load: {function: load, output: Done}
"""


def at(text: str):
    return time_machine.travel(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc), tick=False)


def row(out: str, workflow: str) -> str:
    return next(line for line in out.splitlines() if f" {workflow} " in line)


def test_next_run_follows_the_cursor_across_the_night_the_clocks_go_forward(flow45, tmp_path):
    (tmp_path / "acme.yaml").write_text(textwrap.dedent(AMSTERDAM_NIGHTLY))
    with at("2026-03-28T12:00:00"):
        store.deploy(load_config(tmp_path / "acme.yaml"), actor="tester", now=dt.datetime(2026, 3, 28, 12))
        code, out, err = flow45("workflows")
        assert code == 0, err
        # 02:30 does not exist in Amsterdam on 29 March: the run comes at 03:00 CEST, 01:00 UTC
        assert "2026-03-29 01:00:00 (in 13h00m)" in row(out, "nightly")
        assert row(out, "by_hand").split()[-1] == "-"
    with at("2026-03-29T01:00:30"):
        assert "2026-03-29 01:00:00 (due now)" in row(flow45("workflows")[1], "nightly")
    with at("2026-03-29T03:00:00"):
        code, out, _ = flow45("workflows")
        assert "2026-03-29 01:00:00 (overdue 2h00m: is a scheduler running?)" in row(out, "nightly")
        scheduler.tick(dt.datetime(2026, 3, 29, 3))  # catchup latest: the missed tick's run is made now
        assert "2026-03-30 00:30:00 (in 21h30m)" in row(flow45("workflows")[1], "nightly")
        code, out, err = flow45("workflows", "--json")
        by_name = {w["name"]: w["next_run"] for w in json.loads(out)}
        assert by_name == {"by_hand": None, "nightly": "2026-03-30T00:30:00Z"}, err
        flow45("pause", "acme/nightly", "--reason", "source migrating")
        code, out, _ = flow45("workflows", "--json")
        assert {w["name"]: w["next_run"] for w in json.loads(out)}["nightly"] is None
        assert "(paused, triggers queued)  paused " in row(flow45("workflows")[1], "nightly")


def test_each_workflows_last_run_is_shown_with_its_status_and_age(flow45, tmp_path):
    (tmp_path / "acme.yaml").write_text(textwrap.dedent(AMSTERDAM_NIGHTLY))
    with at("2028-12-31T23:00:00"):  # the runs are a year old by the time they are listed
        store.deploy(load_config(tmp_path / "acme.yaml"), actor="ann")
        first = store.trigger("acme", "by_hand", actor="ann")
        second = store.trigger("acme", "by_hand", actor="ann")
        store.cancel_run(first, actor="ann", reason="a mistake")  # the older run's change does not count
    with at("2030-01-01T01:30:00"):
        _, out, _ = flow45("workflows")
        _, listed, _ = flow45("workflows", "--json")
    header = out.splitlines()[0]
    assert header.index("LAST RUN") > header.index("NEXT RUN")
    assert f" {second} running (365d02h ago) " in row(out, "by_hand")
    assert row(out, "nightly")[header.index("LAST RUN"):].startswith("- ")
    latest = {w["name"]: (w["last_run"], w["last_run_status"], w["last_run_at"]) for w in json.loads(listed)}
    assert latest == {"by_hand": (second, "running", "2028-12-31T23:00:00Z"), "nightly": (None, None, None)}


def test_the_last_run_is_found_at_once_however_many_runs_other_workflows_made_since(pg_store, tmp_path, caplog):
    import logging

    from flow45.db import database

    (tmp_path / "acme.yaml").write_text(textwrap.dedent(AMSTERDAM_NIGHTLY))
    with at("2027-01-01T00:00:00"):
        store.deploy(load_config(tmp_path / "acme.yaml"), actor="ann")
        once = store.trigger("acme", "by_hand", actor="ann")  # its only run, long ago
        store.cancel_run(once, actor="ann", reason="not needed")
    scheduler.tick(dt.datetime(2027, 1, 2, 2, 30))
    [nightly] = [run.id for run in store.list_runs(team="acme", workflow="nightly")]
    database.execute_sql(  # 20,000 later runs of the nightly workflow, finished
        "INSERT INTO run (team, workflow_id, version_id, status, params, trigger, triggered_by, created_at, updated_at)"
        " SELECT team, workflow_id, version_id, 'succeeded', params, trigger, triggered_by, created_at, updated_at"
        " FROM run, generate_series(1, 20000) WHERE id = %s", (nightly,))
    database.execute_sql("ANALYZE run")
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        latest = {w.name: (w.last_run, w.last_run_status) for w in store.list_workflows("acme")}
    assert latest == {"by_hand": (once, "cancelled"), "nightly": (nightly + 20000, "succeeded")}
    reads = [record.msg for record in caplog.records
             if isinstance(record.msg, tuple) and 'FROM "run"' in record.msg[0] and "LIMIT" in record.msg[0]]
    assert len(reads) == 2, reads
    for sql, params in reads:
        plan = "\n".join(row[0] for row in database.execute_sql("EXPLAIN (ANALYZE) " + sql, params).fetchall())
        passed_over = [int(line.rsplit(":", 1)[1]) for line in plan.splitlines() if "Rows Removed by Filter" in line]
        assert "Seq Scan on run" not in plan and sum(passed_over) < 100, plan


def test_a_store_from_before_is_upgraded_with_the_index_of_runs_by_workflow(store_db):
    from flow45.db import atomic, database
    from flow45.migrate import CURRENT, STEPS, _last_run_v19, upgrade
    from flow45.models import SchemaVersion

    step = STEPS.index(_last_run_v19) + 1
    with atomic():
        database.execute_sql("DROP INDEX run_workflow_id_id")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert upgrade() == (step - 1, CURRENT)
    assert [i.columns for i in database.get_indexes("run") if i.name == "run_workflow_id_id"] == [["workflow_id", "id"]]


def test_a_last_run_stamped_ahead_of_this_clock_is_just_now_not_a_negative_age():
    from flow45.timing import last_run_text
    from flow45.views import WorkflowView

    now = dt.datetime(2027, 1, 1, 0, 0)
    view = WorkflowView(team="acme", name="w", version=1, description=None, tasks=1, schedule=None, updated_at=now,
                        last_run=7, last_run_status="running", last_run_at=now + dt.timedelta(minutes=24))
    assert last_run_text(view, now) == "7 running (0s ago)"
