"""How long `flow45 db upgrade` takes on an SQLite store made before schema step 24 (ids never given
twice): its tables of runs, instances, attempts, ledger events and outbox rows are rebuilt, the store
locked meanwhile.

    python benchmarks/sqlite_upgrade.py [--runs 500000] [--file PATH]

A store at schema version 23 (made as Flow45 made it then), one run of two tasks finished through the
store, its rows copied to RUNS finished runs (2 x RUNS instances, as many attempts and outbox rows,
4 ledger events a run); then the upgrade is timed.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

import peewee as pw

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scheduler_tick import EPOCH, deploy_config  # noqa: E402
from flow45 import migrate, store  # noqa: E402
from flow45.db import atomic, connect, database  # noqa: E402
from flow45.models import BigRowId, RowId, TaskInstance  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402

CONFIG = """
team: bench
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
TABLES = ("run", "task_instance", "attempt", "event", "outbox")


def store_at_version_23() -> None:
    """The schema as steps 1-23 made it: ids without AUTOINCREMENT."""
    steps, current = migrate.STEPS, migrate.CURRENT
    RowId.ddl, BigRowId.ddl = pw.AutoField.ddl, pw.BigAutoField.ddl
    migrate.STEPS, migrate.CURRENT = steps[:23], 23
    try:
        migrate.upgrade()
    finally:
        del RowId.ddl, BigRowId.ddl
        migrate.STEPS, migrate.CURRENT = steps, current


def one_finished_run() -> None:
    run = store.trigger("bench", "pair", actor="bench", now=EPOCH)
    for task in ("a", "b"):
        row = TaskInstance.get((TaskInstance.run == run) & (TaskInstance.task == task))
        grant = store.claim(row.id, row.token, "w", now=EPOCH, message_id=f"claim-{task}")
        store.submit(grant.instance, grant.token, {"uri": "s3://x"}, now=EPOCH, message_id=f"submit-{task}")


def copy(table: str, times: int, template: int, parent: str | None = None, per: int = 1) -> None:
    """Row `template` of `table` copied `times` times; copy i names parent row (i - 1) // per + 2."""
    columns = [c.name for c in database.get_columns(table) if c.name != "id"]
    values = ", ".join(f"(n.i - 1) / {per} + 2" if c == parent else f't."{c}"' for c in columns)
    names = ", ".join(f'"{c}"' for c in columns)
    database.execute_sql(f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {times}) "
                         f'INSERT INTO "{table}" ({names}) SELECT {values} FROM n, "{table}" t WHERE t.id = {template}')


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=500_000)
    parser.add_argument("--file", default=None, help="the store's file (default: a temporary one, removed after)")
    args = parser.parse_args(argv)
    folder = None if args.file else tempfile.TemporaryDirectory()
    path = args.file or os.path.join(folder.name, "flow45.db")
    url = f"sqlite:///{os.path.abspath(path)}"
    use_settings(Settings(database_url=url))
    connect(url, create=True)
    store_at_version_23()
    deploy_config(CONFIG)
    one_finished_run()
    with atomic():
        copy("run", args.runs, 1)
        for template in (1, 2):  # the run's two instances, each with its attempt and offer
            copy("task_instance", args.runs, template, "run_id")
            copy("attempt", args.runs, template, "instance_id", per=1)
            copy("outbox", args.runs, template, "instance")
        copy("event", 4 * args.runs, 1, "run", per=4)
    counts = {t: database.execute_sql(f'SELECT count(*) FROM "{t}"').fetchone()[0] for t in TABLES}
    print(f"store: {counts}, {os.path.getsize(path) / 1e6:,.0f} MB")
    started = time.perf_counter()
    before, after = migrate.upgrade()
    print(f"flow45 db upgrade {before} -> {after}: {time.perf_counter() - started:.1f} s")
    database.close()
    if folder is not None:
        folder.cleanup()


if __name__ == "__main__":
    main()
