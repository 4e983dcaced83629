"""Retention: `prune` removes the rows of runs finished before a cutoff, and only those; on SQLite
and on PostgreSQL, with time passed in."""

from __future__ import annotations

import datetime as dt
import errno
import json
import os
import threading
import uuid

import pytest

from flow45 import store
from flow45.db import database
from flow45.errors import NotFound
from flow45.models import Attempt, Event, Outbox, ProcessedMessage, Run, TaskInstance
from flow45.store.export_file import ExportFailed, ExportFile
from flow45.store.once import processed_key, remember
from flow45.store.prune import MESSAGES_KEPT, _prune_runs, prune
from tests.store.helpers import T0, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")

PAIR = """
    team: acme
    types:
      Blob:
        fields: {uri: string}
    workflows:
      pair:
        max_active_runs: null
        tasks:
          a: {function: fa, output: Blob}
          b: {function: fb, output: Blob, inputs: {src: a}}
"""
OUT = {"uri": "s3://x"}
CUTOFF = T0 + dt.timedelta(days=5)


def work(run: int, task: str, at: dt.datetime, fail: bool = False) -> None:
    """A worker's claim and submit (or fail), each with a message id, as over the broker."""
    row = instance(run, task)
    grant = store.claim(row.id, row.token, "w", now=at, message_id=uuid.uuid4().hex)
    if fail:
        store.fail(grant.instance, grant.token, "broken", retryable=False, now=at, message_id=uuid.uuid4().hex)
    else:
        store.submit(grant.instance, grant.token, OUT, now=at, message_id=uuid.uuid4().hex)


def finished_run(at: dt.datetime, fail: bool = False) -> int:
    run = store.trigger("acme", "pair", actor="ops", now=at)
    work(run, "a", at)
    work(run, "b", at, fail=fail)
    assert Run.get_by_id(run).finished_at == at
    return run


def rows_of(run: int) -> dict[str, int]:
    ids = [i.id for i in TaskInstance.select().where(TaskInstance.run == run)]
    return {
        "runs": Run.select().where(Run.id == run).count(), "instances": len(ids),
        "attempts": Attempt.select().where(Attempt.instance.in_(ids)).count() if ids else 0,
        "outbox": Outbox.select().where(Outbox.instance.in_(ids)).count() if ids else 0,
        "processed": ProcessedMessage.select().where(ProcessedMessage.instance.in_(ids)).count() if ids else 0,
        "events": Event.select().where(Event.run == run).count(),
    }


def test_only_runs_finished_before_the_cutoff_go_with_all_their_rows(tmp_path):
    deploy_text(tmp_path, PAIR)
    old, old_failed = finished_run(T0), finished_run(T0 + dt.timedelta(hours=1), fail=True)
    recent = finished_run(CUTOFF + dt.timedelta(seconds=1))
    running = store.trigger("acme", "pair", actor="ops", now=T0)
    work(running, "a", T0)
    reopened = finished_run(T0)
    store.undo(instance(reopened, "b").id, reason="redo", actor="ops", now=T0 + dt.timedelta(days=1))
    before = {run: rows_of(run) for run in (old, old_failed, recent, running, reopened)}
    gone = instance(old, "b").id
    assert before[old] == {"runs": 1, "instances": 2, "attempts": 2, "outbox": 2, "processed": 4,
                           "events": before[old]["events"]}

    report = prune(CUTOFF)

    for run in (old, old_failed):
        assert rows_of(run) == {**dict.fromkeys(before[run], 0), "events": before[run]["events"]}, \
            "every row but the ledger's (ledger_retention: keep)"
    for run in (recent, running, reopened):
        assert rows_of(run) == before[run], f"run {run} is not finished before the cutoff: untouched"
    assert (report.runs, report.instances, report.attempts, report.outbox, report.processed, report.events) == (
        2, 4, 4, 4, 8, 0)
    with pytest.raises(NotFound):  # a late message about a pruned instance is answered "not found"
        store.claim(gone, "token", "w", now=CUTOFF)
    assert prune(CUTOFF).runs == 0, "nothing left to prune"


def test_the_export_has_every_pruned_run_and_ledger_prune_removes_its_events(tmp_path, monkeypatch):
    monkeypatch.setattr("flow45.store.prune.IDS_PER_STATEMENT", 4)  # a chunk's 6 instances in two statements
    deploy_text(tmp_path, PAIR)
    pruned = [finished_run(T0 + dt.timedelta(minutes=n), fail=n == 3) for n in range(7)]
    kept = finished_run(CUTOFF)
    with ExportFile(tmp_path / "pruned.jsonl") as export:
        report = prune(CUTOFF, ledger="prune", export=export, chunk=3)
    lines = [json.loads(line) for line in (tmp_path / "pruned.jsonl").read_text().splitlines()]
    assert [line["run"]["id"] for line in lines] == pruned and report.exported == 7
    first = lines[0]
    assert first["run"]["workflow"] == "pair" and first["run"]["version"] == 1 and first["run"]["status"] == "succeeded"
    assert first["run"]["finished_at"] == "2026-03-01T12:00:00Z"
    assert [(i["task"], i["state"], [a["status"] for a in i["attempts"]]) for i in first["instances"]] == [
        ("a", "succeeded", ["succeeded"]), ("b", "succeeded", ["succeeded"])]
    assert first["instances"][0]["attempts"][0]["output"] == OUT
    assert "token" not in first["instances"][0] and "token" not in first["instances"][0]["attempts"][0]
    assert "run" not in first["instances"][0] and "instance" not in first["instances"][0]["attempts"][0], "said by nesting"
    assert [(e["kind"], e["to_state"]) for e in first["events"]] == [
        ("trigger", "running"), ("ready", "available"), ("claim", "running"), ("submit", "succeeded"),
        ("ready", "available"), ("claim", "running"), ("submit", "succeeded"), ("run", "succeeded")]
    assert lines[3]["run"]["status"] == "failed"
    assert all(rows_of(run)["events"] == 0 and rows_of(run)["runs"] == 0 for run in pruned)
    assert report.events == sum(len(line["events"]) for line in lines)
    assert (report.runs, report.instances, report.attempts, report.outbox, report.processed) == (7, 14, 14, 14, 28)
    assert rows_of(kept)["runs"] == 1 and rows_of(kept)["events"] > 0


def test_a_full_disk_stops_the_export_and_removes_only_what_it_holds(tmp_path, monkeypatch):
    deploy_text(tmp_path, PAIR)
    runs = [finished_run(T0 + dt.timedelta(minutes=n)) for n in range(5)]
    real_write, writes = os.write, []

    def full_after_one_batch(fd, data):
        writes.append(len(data))
        if len(writes) == 1:
            return real_write(fd, data)
        real_write(fd, bytes(data[: len(data) // 2]))  # half a batch gets there, then the disk is full
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr("flow45.store.export_file.os.write", full_after_one_batch)
    path = tmp_path / "pruned.jsonl"
    with ExportFile(path) as export, pytest.raises(ExportFailed, match="pruned.jsonl: cannot write: No space left"):
        try:
            prune(CUTOFF, export=export, chunk=2)
        except ExportFailed as failed:
            assert failed.report.runs == 2 and failed.report.exported == 2
            raise
    exported = [json.loads(line)["run"]["id"] for line in path.read_text().splitlines()]  # whole lines only
    assert exported == runs[:2]
    assert [rows_of(run)["runs"] for run in runs] == [0, 0, 1, 1, 1], "what is not in the file is kept"


def test_a_dry_run_counts_and_changes_nothing(tmp_path):
    deploy_text(tmp_path, PAIR)
    old = finished_run(T0)
    before = rows_of(old)
    report = prune(CUTOFF, dry_run=True)
    assert (report.runs, report.instances, report.attempts, report.dry_run) == (1, 2, 2, True)
    assert rows_of(old) == before


def test_a_run_reopened_after_the_prune_listed_it_is_kept(tmp_path):
    deploy_text(tmp_path, PAIR)
    run = finished_run(T0)
    listed = [run]  # what the prune read before the undo committed
    store.undo(instance(run, "a").id, reason="redo", actor="ops", now=T0 + dt.timedelta(hours=1))
    assert _prune_runs(listed, CUTOFF, "keep", None) == {}
    assert Run.get_by_id(run).status == "running"


def test_a_worker_claiming_and_submitting_while_prune_runs_loses_nothing(tmp_path):
    deploy_text(tmp_path, PAIR)
    old = [finished_run(T0 + dt.timedelta(minutes=n)) for n in range(12)]
    live = [store.trigger("acme", "pair", actor="ops", now=CUTOFF) for _ in range(5)]
    steps = threading.Semaphore(0)
    errors: list[BaseException] = []

    def worker() -> None:  # another thread, so another database connection
        try:
            for task in ("a", "b"):
                for run in live:
                    work(run, task, CUTOFF + dt.timedelta(days=1))
                    steps.release()
        except BaseException as exc:  # noqa: BLE001 - reported by the test
            errors.append(exc)
        finally:
            database.close()
            for _ in range(20):
                steps.release()

    thread = threading.Thread(target=worker)
    thread.start()
    report = prune(CUTOFF, chunk=1, between=lambda: steps.acquire(timeout=30))  # a worker step between chunks
    thread.join(timeout=60)
    assert errors == []
    assert report.runs == len(old) and all(rows_of(run)["runs"] == 0 for run in old)
    assert [Run.get_by_id(run).status for run in live] == ["succeeded"] * len(live)
    assert all(rows_of(run) | {"events": 0} == {"runs": 1, "instances": 2, "attempts": 2, "outbox": 2,
                                                 "processed": 4, "events": 0} for run in live), "nothing lost"


def test_upgrade_from_before_the_retention_step_adds_its_column_and_indexes():
    from playhouse.migrate import SchemaMigrator, migrate

    from flow45.migrate import CURRENT, STEPS, _retention_v5, upgrade
    from flow45.models import SchemaVersion

    migrator = SchemaMigrator.from_database(database.obj)
    step = STEPS.index(_retention_v5) + 1  # the version it makes; later steps may follow
    with database.atomic():
        migrate(migrator.drop_index("run", "run_finished_at_id"), migrator.drop_index("outbox", "outbox_instance"),
                migrator.drop_index("processed_message", "processed_message_instance"),
                migrator.drop_index("processed_message", "processed_message_unowned_by_age"),  # made by a later step
                migrator.drop_column("processed_message", "instance"))
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert upgrade() == (step - 1, CURRENT)
    assert "instance" in {c.name for c in database.get_columns("processed_message")}
    indexes = {i.name for table in ("run", "outbox", "processed_message") for i in database.get_indexes(table)}
    assert {"run_finished_at_id", "outbox_instance", "processed_message_instance"} <= indexes


def operator_trigger(message_id: str, at: dt.datetime) -> int:
    """An operator's trigger over the broker: a message about no task instance, remembered by its id."""
    run = remember(message_id, "acme", "trigger", at, lambda: store.trigger_run("acme", "pair", actor="ops", now=at).to_json(),
                   encode=lambda reply: reply, decode=lambda reply: reply)
    return run["run"]


def remembered(*message_ids: str) -> list[bool]:
    return [ProcessedMessage.get_or_none(ProcessedMessage.message_id == processed_key("acme", m)) is not None
            for m in message_ids]


def test_records_of_messages_about_no_instance_go_once_older_than_the_cutoff(tmp_path):
    deploy_text(tmp_path, PAIR)
    first = operator_trigger("old", T0)
    operator_trigger("recent", CUTOFF + dt.timedelta(seconds=1))
    now = CUTOFF + dt.timedelta(days=30)
    assert prune(CUTOFF, dry_run=True, now=now).processed_aged == 1
    assert remembered("old", "recent") == [True, True]
    report = prune(CUTOFF, now=now)
    assert (report.runs, report.processed_aged) == (0, 1)  # the triggered runs run on: not theirs to prune
    assert remembered("old", "recent") == [False, True]
    assert Run.get_by_id(first).status == "running"


def test_a_message_that_may_still_be_redelivered_keeps_its_record_whatever_the_cutoff(tmp_path):
    """A cutoff of a few minutes ago would forget messages a broker or a client may resend: their
    records stay at least MESSAGES_KEPT, and a copy is answered as the first was."""
    deploy_text(tmp_path, PAIR)
    now = T0 + MESSAGES_KEPT + dt.timedelta(minutes=10)
    gone = operator_trigger("gone", T0)
    kept = operator_trigger("kept", T0 + dt.timedelta(minutes=20))
    report = prune(now - dt.timedelta(minutes=5), now=now)
    assert report.processed_aged == 1 and remembered("gone", "kept") == [False, True]
    assert operator_trigger("kept", now) == kept and Run.select().count() == 2
    assert gone != kept


def test_upgrade_indexes_the_records_of_messages_about_no_instance_by_age(tmp_path, backend):
    from flow45.migrate import CURRENT, STEPS, _unowned_messages_by_age_v26, upgrade
    from flow45.models import SchemaVersion

    step = STEPS.index(_unowned_messages_by_age_v26) + 1
    with database.atomic():  # a store from before
        database.execute_sql("DROP INDEX processed_message_unowned_by_age")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    deploy_text(tmp_path, PAIR)
    operator_trigger("old", T0)
    assert upgrade() == (step - 1, CURRENT)
    assert [i.columns for i in database.get_indexes("processed_message")
            if i.name == "processed_message_unowned_by_age"] == [["processed_at"]]
    if backend == "postgresql":  # the prune's read goes through the index (SQLite's names it: INDEXED BY)
        from flow45.dialect.postgres import AGED_MESSAGES

        with database.atomic():
            database.execute_sql("SET LOCAL enable_seqscan = off; SET LOCAL enable_sort = off")
            plan = " ".join(row for (row,) in database.execute_sql("EXPLAIN " + AGED_MESSAGES, (CUTOFF, 1000)))
        assert "processed_message_unowned_by_age" in plan and "Sort" not in plan, plan
    assert prune(CUTOFF, now=CUTOFF + MESSAGES_KEPT).processed_aged == 1
