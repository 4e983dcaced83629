"""`flow45 prune` as an operator runs it: the clock pinned, finished runs older than AGE removed."""

from __future__ import annotations

import datetime as dt
import functools
import json

import pytest
import time_machine

from flow45.cli import main
from flow45.models import ProcessedMessage, Run
from flow45.settings import Settings, use_settings
from tests.store.helpers import T0, deploy_text
from tests.store.test_prune import PAIR, finished_run


@pytest.fixture
def flow45(capsys):
    def run(*args: str, database_url: str = "sqlite:///nowhere/flow45.db", **settings):
        use_settings(Settings(database_url=database_url, **settings))
        try:
            with time_machine.travel(T0 + dt.timedelta(days=30), tick=False):
                code = main(["prune", *args])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_prune_removes_what_finished_longer_ago_than_age_and_exports_it(store_db, db_url, flow45, tmp_path):
    deploy_text(tmp_path, PAIR)
    flow45 = functools.partial(flow45, database_url=db_url)
    old, recent = finished_run(T0), finished_run(T0 + dt.timedelta(days=25))
    for message_id, at in (("acme/note-1", T0), ("acme/note-2", T0 + dt.timedelta(days=25))):  # about no instance
        ProcessedMessage.create(message_id=message_id, team="acme", kind="note", processed_at=at, reply={"run": old})
    code, out, _ = flow45("--finished-before", "7d", "--dry-run")
    assert code == 0 and out.startswith("would remove 1 runs finished before 2026-03-24T12:00:00Z: 2 instances")
    assert Run.select().count() == 2
    export = tmp_path / "pruned.jsonl"
    code, out, _ = flow45("--finished-before", "7d", "--export", str(export), ledger_retention="prune")
    assert code == 0, out
    assert out.splitlines() == [
        "removed 1 runs finished before 2026-03-24T12:00:00Z: 2 instances, 2 attempts, 2 outbox rows, 4 processed messages",
        "removed 1 records of messages about no task instance (triggers, cancels, notes…) processed before "
        "2026-03-24T12:00:00Z",
        "ledger events removed: 8 (ledger_retention: prune)",
        f"1 runs exported to {export}",
    ]
    assert [json.loads(line)["run"]["id"] for line in export.read_text().splitlines()] == [old]
    assert [r.id for r in Run.select()] == [recent]
    assert [p.message_id for p in ProcessedMessage.select().where(ProcessedMessage.instance.is_null())] == ["acme/note-2"]
    code, _, err = flow45("--finished-before", "7d", "--export", str(export))
    assert code == 1 and f"--export {export}: the file exists; name a new one" in err


@pytest.mark.parametrize("age, words", [
    ("soon", "--finished-before soon: 'soon' is not a duration: use forms such as 30s, 10m, 1h30m, 2d"),
    ("0s", "--finished-before 0s: the age must be a positive duration"),
    ("nan", "--finished-before nan: 'nan' is not a duration"),
    ("99999999999d", "--finished-before 99999999999d: too long ago to be a date"),
    ("90", "--finished-before 90: give the age with its unit, e.g. 90d for 90 days (90 alone would be seconds)"),
    ("1.5", "--finished-before 1.5: give the age with its unit"),
])
def test_a_bad_age_is_a_usage_error_naming_it(flow45, age, words):
    code, _, err = flow45("--finished-before", age)
    assert code == 2 and f"flow45 prune: error: {words}" in err and "Traceback" not in err
    assert err.startswith("usage: flow45 prune ")  # the command's own usage, as for a value argparse refuses
