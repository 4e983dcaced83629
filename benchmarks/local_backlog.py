"""How fast in-process workers (the local transport of the embedded default, `flow45 demo`, any
worker without a broker) complete tasks as offers pile up: RUNS runs of a two-task workflow are
triggered first, each offering its first task (and one run in ten of another workflow, whose offers
nobody takes); then one worker on `LocalTransport` works through them, each submit offering the
run's second task. Prints tasks completed per second at each number of pending runs, on SQLite and
on PostgreSQL. The rate must not fall as the number of pending offers grows.

    python benchmarks/local_backlog.py [--runs 500,5000,20000] [--tasks 500] [--concurrency 4] [--explain]

The worker's handlers do nothing; the first tenth of the tasks warms up and is not timed. With
--explain, the statements of one take of the outbox are counted and each SELECT among them is
explained, at each size. PostgreSQL (fsync on) is started by the test harness and removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import sys
import tempfile
import textwrap
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.sdk import LocalTransport, Worker  # noqa: E402
from flow45 import names, store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import atomic, connect, database  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Outbox  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from flow45.store import outbox  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402

AT = dt.datetime(2026, 12, 5, 12, 0, 0)
TEAM = "bench"
CONFIG = """
team: bench
types:
  Doc: {fields: {uri: string}}
workflows:
  pair:
    max_active_runs: null
    tasks:
      first: {function: first, output: Doc}
      second: {function: second, output: Doc, inputs: {doc: first}}
  other:
    max_active_runs: null
    tasks:
      elsewhere: {function: elsewhere, output: Doc}
"""
DOC = {"uri": "s3://bench/doc"}


def fill(runs: int, already: int) -> None:
    """More runs of `pair` (and one of `other` per ten, whose offers nobody takes) up to `runs`."""
    for start in range(already, runs, 500):
        with atomic():
            for n in range(start, min(start + 500, runs)):
                store.trigger(TEAM, "pair", actor="bench", now=AT)
                if n % 10 == 0:
                    store.trigger(TEAM, "other", actor="bench", now=AT)


def pending() -> int:
    return Outbox.select().where(Outbox.sent_at.is_null()).count()


class Statements(logging.Handler):
    """The statements peewee sends, with their parameters."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.sent: list[tuple[str, list]] = []

    def emit(self, record: logging.LogRecord) -> None:
        if isinstance(record.msg, tuple):
            self.sent.append(record.msg)


def explain(how: str) -> None:
    """The statements of one take of the transport (its rows put back after), each SELECT explained
    with `how` after the settings sent with it."""
    statements, log = Statements(), logging.getLogger("peewee")
    log.addHandler(statements)
    log.setLevel(logging.DEBUG)
    try:
        taken = outbox.take([names.offer_key(TEAM, "first")], limit=4)
    finally:
        log.removeHandler(statements)
    outbox.release([row.id for row in taken])
    print(f"       one take of {len(taken)} rows: {len(statements.sent)} statements")
    for sql, params in statements.sent:
        *settings, last = sql.split(";\n")
        if last.startswith("SELECT"):
            with atomic():
                for setting in settings:
                    database.execute_sql(setting)
                for row in database.execute_sql(f"{how} {last}", params).fetchall():
                    print("      ", " ".join(str(part) for part in row))


def work(tasks: int, concurrency: int) -> float:
    """Tasks per second of one worker, over the tasks after the first tenth."""
    done, marks, enough = [0], {}, threading.Event()
    lock = threading.Lock()
    warm = tasks // 10

    def count():
        with lock:
            done[0] += 1
            if done[0] in (warm, tasks):
                marks[done[0]] = time.perf_counter()
            if done[0] >= tasks:
                enough.set()

    worker = Worker(LocalTransport(TEAM, "bench-worker", poll_interval=0.05))

    @worker.handler("first")
    def first(task):
        count()
        return DOC

    @worker.handler("second")
    def second(task, doc):
        count()
        return DOC

    worker.start(concurrency)
    try:
        if not enough.wait(600):
            raise SystemExit(f"only {done[0]} of {tasks} tasks done in 10 minutes")
    finally:
        worker.stop()
        worker.join(timeout=60)
    return (tasks - warm) / (marks[tasks] - marks[warm])


def measure(name: str, url: str, sizes: list[int], tasks: int, concurrency: int, explain_with: str | None,
            analyze: bool) -> None:
    """`explain_with`: how to explain the take's read at each size (None: not at all); `analyze`: take
    statistics before each size, as autovacuum would have them."""
    use_settings(Settings(database_url=url))
    connect(url, create=True)
    ensure_schema()
    folder = Path(tempfile.mkdtemp(prefix="flow45-local-"))
    (folder / "bench.yaml").write_text(textwrap.dedent(CONFIG))
    store.deploy(load_config(folder / "bench.yaml"), actor="bench", now=AT)
    made = 0
    for runs in sizes:
        fill(runs, made)
        made = runs
        waiting = pending()
        if analyze:
            database.execute_sql("ANALYZE")
        rate = work(tasks, concurrency)
        print(f"{name:<10} {runs:>6} runs, {waiting:>6} offers pending: {rate:7.1f} tasks/s", flush=True)
        if explain_with:
            explain(explain_with)
    database.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", default="500,5000,20000", help="pending runs, ascending, comma-separated")
    parser.add_argument("--tasks", type=int, default=500,
                        help="tasks completed at each size (at most the first size: the offers stay about as many)")
    parser.add_argument("--concurrency", type=int, default=4, help="the worker's handlers at once")
    parser.add_argument("--explain", action="store_true", help="print the plan of the outbox read at each size")
    parser.add_argument("--only", choices=("sqlite", "postgres"), help="one database only")
    args = parser.parse_args()
    sizes = [int(size) for size in args.runs.split(",")]
    if sizes != sorted(sizes) or args.tasks < 10 or args.tasks > sizes[0] or args.concurrency < 1:
        parser.error("--runs ascending, --tasks from 10 to the first of --runs, --concurrency at least 1")
    def on_sqlite() -> None:
        measure("SQLite", f"sqlite:///{Path(tempfile.mkdtemp(prefix='flow45-local-')) / 'flow45.db'}", sizes,
                args.tasks, args.concurrency, "EXPLAIN QUERY PLAN" if args.explain else None, analyze=False)

    def on_postgres() -> None:
        postgres = PostgresServer(durable=True).start()
        try:
            measure("PostgreSQL", postgres.create_database("flow45_local"), sizes, args.tasks, args.concurrency,
                    "EXPLAIN ANALYZE" if args.explain else None, analyze=True)
        finally:
            postgres.stop()

    for name, run in {"sqlite": on_sqlite, "postgres": on_postgres}.items():
        if args.only in (None, name):
            run()


if __name__ == "__main__":
    main()
