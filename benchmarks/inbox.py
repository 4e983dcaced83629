"""What one read of the human inbox costs with TASKS human tasks waiting: the statements it sends
and its seconds, on SQLite and on PostgreSQL. `flow45 inbox`, the dashboard's inbox screen (on
opening, and from its feed after every instance event of the team) and the bridge's inbox read all
make this read.

    python benchmarks/inbox.py [--tasks 500] [--reads 5]

The store is filled through the store's own writes: runs of a workflow whose `prepare` task feeds
five human tasks (assigned, due in 2 hours), one of which feeds a `publish` task, with `prepare` done
in each run, so that every human task waits and receives an upstream output. The read is the whole
page (`show: all`, as many tasks as wait); the median of READS reads is printed.

PostgreSQL is started by the test harness and removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flow45 import store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import connect, database  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import TaskInstance  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from flow45.store.inbox import human_inbox  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402

AT = dt.datetime(2026, 12, 5, 12, 0, 0)
HUMAN_PER_RUN = 5
CONFIG = """
team: reports
groups: {finance: [bob, carol]}
types:
  Doc: {fields: {uri: string, pages: integer}}
  Ok: {fields: {ok: boolean}}
  Month: {fields: {month: integer}}
workflows:
  review:
    params: Month
    max_active_runs: null
    tasks:
      prepare: {function: prep, output: Doc}
%s
      publish: {function: pub, output: Doc, inputs: {approval: approve_0, doc: prepare}}
"""
HUMAN = ("      approve_%d: {function: approve_%d, output: Ok, human: true, inputs: {doc: prepare},"
         " assignees: [ann, '@finance'], due: 2h}")


class Statements(logging.Handler):
    """Counts the statements peewee sends."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        self.count += isinstance(record.msg, tuple)


def fill(tasks: int) -> None:
    folder = Path(tempfile.mkdtemp(prefix="flow45-inbox-"))
    humans = "\n".join(HUMAN % (i, i) for i in range(HUMAN_PER_RUN))
    (folder / "reports.yaml").write_text(textwrap.dedent(CONFIG % humans))
    store.deploy(load_config(folder / "reports.yaml"), actor="bench", now=AT)
    for n in range(-(-tasks // HUMAN_PER_RUN)):
        run = store.trigger("reports", "review", {"month": n}, actor="bench", now=AT)
        prepare = TaskInstance.get((TaskInstance.run == run) & (TaskInstance.task == "prepare"))
        grant = store.claim(prepare.id, prepare.token, "w", now=AT)
        store.submit(grant.instance, grant.token, {"uri": f"s3://docs/{n}.pdf", "pages": 3}, now=AT)


def measure(name: str, url: str, tasks: int, reads: int) -> None:
    use_settings(Settings(database_url=url))
    connect(url, create=True)
    ensure_schema()
    fill(tasks)
    waiting = -(-tasks // HUMAN_PER_RUN) * HUMAN_PER_RUN
    statements, log = Statements(), logging.getLogger("peewee")
    log.addHandler(statements)
    log.setLevel(logging.DEBUG)
    took = []
    try:
        for _ in range(reads):
            started = time.perf_counter()
            found = human_inbox("reports", "ann", limit=waiting, now=AT)
            took.append(time.perf_counter() - started)
    finally:
        log.removeHandler(statements)
    assert len(found) == waiting, (len(found), waiting)
    print(f"{name:<10} {len(found)} human tasks waiting: {statements.count // reads} statements per read, "
          f"{statistics.median(took):.3f} s per read (median of {reads})")
    database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=500, help="human tasks waiting (rounded up to runs of 5)")
    parser.add_argument("--reads", type=int, default=5, help="reads timed; the median is printed")
    args = parser.parse_args()
    if args.tasks < 1 or args.reads < 1:
        parser.error("--tasks and --reads must be at least 1")
    measure("SQLite", f"sqlite:///{Path(tempfile.mkdtemp(prefix='flow45-inbox-')) / 'flow45.db'}", args.tasks,
            args.reads)
    postgres = PostgresServer().start()
    try:
        measure("PostgreSQL", postgres.create_database("flow45_inbox"), args.tasks, args.reads)
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
