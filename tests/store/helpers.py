"""Small helpers to drive the store in tests: deploy a config text, find instances by task."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

from flow45 import messages as m
from flow45 import store
from flow45.config import load_config
from flow45.db import atomic
from flow45.models import Outbox, TaskInstance
from flow45.settings import Settings

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def config_refusal(tmp_path: Path, workflows: str) -> str:
    """What loading team acme's `workflows:` (flow YAML, a Blob type declared) is refused with."""
    from flow45.errors import ConfigError

    written = tmp_path / "refused.yaml"
    written.write_text(f"team: acme\ntypes: {{Blob: {{fields: {{uri: string}}}}}}\nworkflows: {workflows}\n")
    try:
        load_config(written)
    except ConfigError as refused:
        return str(refused)
    raise AssertionError(f"not refused: {workflows}")


def task_refusal(tmp_path: Path, task: str) -> str:
    """What loading team acme's workflow `w` of one task `a`, written `task` (flow YAML), is refused with."""
    return config_refusal(tmp_path, f"{{w: {{tasks: {{a: {task}}}}}}}")


def upgraded_from_before(step, table: str, column: str) -> None:
    """Take the store back to before migration `step` added `column` to `table`, then upgrade it."""
    from flow45.db import atomic, database
    from flow45.migrate import CURRENT, STEPS, upgrade
    from flow45.models import SchemaVersion

    version = STEPS.index(step) + 1
    with atomic():
        database.execute_sql(f"ALTER TABLE {table} DROP COLUMN {column}")
        SchemaVersion.delete().where(SchemaVersion.version >= version).execute()
    assert column not in {c.name for c in database.get_columns(table)}
    assert upgrade() == (version - 1, CURRENT)
    assert column in {c.name for c in database.get_columns(table)}


def deploy_text(tmp_path: Path, text: str, actor: str = "tester"):
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
    path.write_text(textwrap.dedent(text))
    return store.deploy(load_config(path), actor=actor, now=T0)


def instance(run_id: int, task: str) -> TaskInstance:
    return TaskInstance.get((TaskInstance.run == run_id) & (TaskInstance.task == task))


def states(run_id: int) -> dict[str, str]:
    return {i.task: i.state for i in store.get_run(run_id).instances}


def claim(run_id: int, task: str, worker: str = "w", now: dt.datetime = T0):
    row = instance(run_id, task)
    return store.claim(row.id, row.token, worker, now=now)


def complete(run_id: int, task: str, output: dict, worker: str = "w", now: dt.datetime = T0):
    grant = claim(run_id, task, worker, now)
    return store.submit(grant.instance, grant.token, output, now=now)


def fail_for_good(run_id: int, task: str, now: dt.datetime, error: str = "it broke") -> None:
    """A worker claims the task's instance and fails it, not to be retried."""
    grant = claim(run_id, task, now=now)
    store.fail(grant.instance, grant.token, error, retryable=False, now=now)


def in_one_batch(messages: list, now: dt.datetime, team: str = "acme") -> list[str | None]:
    """Worker messages applied in one batch, as the bridge applies one: one transaction, set-based. Each
    message's error, None where it took effect."""
    from flow45.store.batch import Item, apply_worker_batch

    items = [Item(team, f"{message.type}-{message.instance}-{message.token}", message) for message in messages]
    with atomic():
        apply_worker_batch(items, now)
    return [item.error for item in items]


def submits_in_one_batch(submits: list[tuple], now: dt.datetime, team: str = "acme") -> list[str | None]:
    """Each (claimed attempt, output) submitted in one batch (`in_one_batch`)."""
    return in_one_batch([m.Submit(type="submit", instance=grant.instance, token=grant.token, output=output)
                         for grant, output in submits], now, team)


def failure(grant, error: str) -> m.Fail:
    """A worker's report that the claimed attempt failed, not to be retried."""
    return m.Fail(type="fail", instance=grant.instance, token=grant.token, error=error, retryable=False)


def skip_detail(run_id: int, task: str) -> dict:
    """The detail of the last `skip` event of the run's instance of `task`: why it was skipped."""
    from flow45.models import Event

    skips = Event.select().where((Event.instance == instance(run_id, task).id) & (Event.kind == "skip"))
    return skips.order_by(Event.id.desc()).get().detail


def offered_inputs(run_id: int, task: str) -> dict:
    """The inputs of the task's latest offer."""
    offers = Outbox.select().where((Outbox.instance == instance(run_id, task).id) & (Outbox.kind == "offer"))
    return offers.order_by(Outbox.id.desc()).get().body["inputs"]


CHAIN_OF_TWO = """
    team: acme
    types:
      Blob:
        fields: {uri: string}
    workflows:
      chain:
        tasks:
          a: {function: fa, output: Blob}
          b: {function: fb, output: Blob, inputs: {src: a}}
"""
ACME_WORKER = Settings(teams={"acme": {"users": {"w": "worker"}}})  # the bridge's settings: acme's worker user `w`

DIAMOND = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      diamond:
        max_active_runs: 1
        tasks:
          a: {function: fa, output: Blob, retries: 1, retry_delay: 10s}
          b: {function: fb, output: Blob, inputs: {src: a}}
          c: {function: fc, output: Blob, inputs: {src: a}, undo: notify}
          d: {function: fd, output: Blob, inputs: {left: b, right: c}}
"""

BLOB = {"uri": "s3://bucket/x", "size": 1}


def deploy_blob_tasks(tmp_path: Path, workflow: str, tasks: list[str]):
    """Deploy team acme's `workflow` of these task lines (`NAME: {...}`), every output a Blob, with no run limit."""
    lines = "\n".join(" " * 10 + line for line in tasks)
    return deploy_text(tmp_path, f"""
    team: acme
    types:
      Blob:
        fields: {{uri: string, size: {{type: integer, ge: 0}}}}
    workflows:
      {workflow}:
        max_active_runs: null
        tasks:
{lines}
    """)


def fresh_store(backend: str, url: str, sqlite_file: Path) -> None:
    """An empty store for one example of a state machine: a new SQLite file, or PostgreSQL emptied."""
    from flow45.db import connect
    from flow45.migrate import ensure_schema
    from tests.conftest import _empty_postgres, new_sqlite_store

    if backend == "sqlite":
        new_sqlite_store(sqlite_file)  # creating the schema anew took most of an example's start
        connect(f"sqlite:///{sqlite_file}")
        ensure_schema()  # the copy's version is checked as any store's
    else:
        connect(url)
        _empty_postgres()  # also forgets what was cached by row id: ids restart
