"""How long the scheduler's tick takes with 1 thousand and with 1 million task instances in the store.

    python benchmarks/scheduler_tick.py [--ticks 25] [--sizes 1000,1000000] [--reset]

PostgreSQL only. With FLOW45_DATABASE_URL=postgresql://… it uses that database (which must hold no
workflows, or pass --reset to empty it); without it, it starts a throwaway server with the test
harness (tests/harness/postgres.py, durable: fsync on) and removes it afterwards.

The store is filled with finished history by COPY (runs, instances, attempts, ledger events and sent
outbox rows, as the store would have written them), around a constant live set: running runs whose
instances hold leases, wait to retry or are offered. Two figures per size, each the median (and the
minimum, less disturbed by whatever else the machine runs) of --ticks ticks:
- idle: nothing is due; what every tick of a quiet installation costs;
- busy: each tick makes one scheduled run, expires one lease, offers two due retries again and
  re-sends one offer that may be lost.
The tick must not grow with history (target: within 2x from 1 thousand to 1 million). At the end
every statement of a busy tick is EXPLAINed at the largest size, to show that none scans a table
that grows with history.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gc
import io
import logging
import os
import statistics
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Iterator

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flow45 import store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import connect, database  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Workflow  # noqa: E402
from flow45.scheduler import tick  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402

TEAM = "bench"
TASKS = [f"t{i}" for i in range(10)]  # t0 -> t1, t2, t3; t1 -> t4 .. t9
CONFIG = f"""
team: {TEAM}
types:
  Blob: {{fields: {{uri: string}}}}
workflows:
  history:
    max_active_runs: null
    tasks:
      t0: {{function: f0, output: Blob}}
      t1: {{function: f1, output: Blob, after: [t0], retries: 3, retry_delay: 30s, lease: 5m}}
      t2: {{function: f2, output: Blob, after: [t0], retries: 3, retry_delay: 30s}}
      t3: {{function: f3, output: Blob, after: [t0]}}
{chr(10).join(f"      t{i}: {{function: f{i}, output: Blob, after: [t1]}}" for i in range(4, 10))}
  minutely:
    schedule: {{cron: "* * * * *", catchup: latest}}
    max_active_runs: null
    tasks:
      a: {{function: fa, output: Blob}}
      b: {{function: fb, output: Blob, inputs: {{src: a}}}}
      c: {{function: fc, output: Blob, inputs: {{src: b}}}}
"""
LIVE_RUNS = 20
FAR = dt.datetime(2099, 1, 1)  # "offered a moment ago", "lease good for long": not due in any measured tick
EPOCH = dt.datetime(2025, 1, 1)  # history starts here
BIG_TABLES = ("task_instance", "run", "attempt", "event", "outbox", "processed_message")


# ---- writing rows fast ----------------------------------------------------------------------------

def _text(value) -> str:
    if value is None:
        return r"\N"
    if value is True:
        return "t"
    if value is False:
        return "f"
    if isinstance(value, dt.datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    return str(value)


class Copier:
    """COPY rows into the store's tables with ids chosen here, in batches."""

    COLUMNS = {
        "run": "id team workflow_id version_id status params logical_time trigger triggered_by created_at "
               "started_at finished_at updated_at",
        "task_instance": "id run_id team task function state attempt token failures priority human "
                         "lease_expires_at not_before offered_at worker progress_pct progress_message updated_at",
        "attempt": "id instance_id number token status worker claimed_at finished_at output error archived archived_by",
        "event": "id at team run instance kind from_state to_state actor detail",
        "outbox": "id team kind routing_key priority body instance created_at sent_at",
    }

    def __init__(self):
        self.buffers = {table: io.StringIO() for table in self.COLUMNS}
        self.next_id = {
            table: database.execute_sql(f"SELECT coalesce(max(id), 0) + 1 FROM {table}").fetchone()[0]
            for table in self.COLUMNS
        }
        self.pending = 0

    def add(self, table: str, *values) -> int:
        return self.add_line(table, "\t".join(_text(v) for v in values))

    def add_line(self, table: str, line: str) -> int:
        """One row as COPY text, without its id (which is returned)."""
        row_id = self.next_id[table]
        self.next_id[table] = row_id + 1
        self.buffers[table].write(f"{row_id}\t{line}\n")
        self.pending += 1
        if self.pending >= 250_000:
            self.flush()
        return row_id

    def flush(self) -> None:
        # A fresh session: PostgreSQL caches the plan of its foreign key checks per session, and one
        # made while `run` was tiny (a sequential scan) would make the load quadratic.
        database.close()
        cursor = database.connection().cursor()
        for table, buffer in self.buffers.items():
            if buffer.tell():
                buffer.seek(0)
                cursor.copy_expert(f"COPY {table} ({', '.join(self.COLUMNS[table].split())}) FROM STDIN", buffer)
            self.buffers[table] = io.StringIO()
        database.connection().commit() if not database.connection().autocommit else None
        for table in self.COLUMNS:
            database.execute_sql(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
        self.pending = 0


class Filler:
    def __init__(self):
        history = Workflow.get((Workflow.team == TEAM) & (Workflow.name == "history"))
        self.workflow_id = history.id
        self.version_id = history.versions.get().id
        self.serial = 0
        self.live: list[int] = []  # the constant live set's runs

    def _instance(self, c: Copier, run_id: int, task: str, state: str, at: dt.datetime, **extra) -> int:
        self.serial += 1
        token = extra.get("token")
        return c.add(
            "task_instance", run_id, TEAM, task, "f" + task[1:], state, extra.get("attempt", 1), token,
            extra.get("failures", 0), 0, False, extra.get("lease"), extra.get("not_before"), extra.get("offered", at),
            extra.get("worker"), None, None, extra.get("updated", at),
        )

    def _run(self, c: Copier, status: str, at: dt.datetime) -> int:
        finished = at + dt.timedelta(minutes=5) if status == "succeeded" else None
        return c.add(
            "run", TEAM, self.workflow_id, self.version_id, status, "{}", None, "api", "bench",
            at, at, finished, finished or at,
        )

    def history(self, c: Copier, runs: int, start: dt.datetime) -> None:
        """Finished runs as the store leaves them: every instance succeeded, one attempt each, the
        offer sent, a claim and a submit event per instance. Rows are written as COPY text directly:
        this is the hot loop of the load."""
        team, out = TEAM, '{"uri":"s3://b/x"}'
        for n in range(runs):
            at = start + dt.timedelta(seconds=30 * n)
            t, t_end = _text(at), _text(at + dt.timedelta(minutes=5))
            run_id = c.add_line("run", f"{team}\t{self.workflow_id}\t{self.version_id}\tsucceeded\t{{}}\t\\N\tapi\tbench\t{t}\t{t}\t{t_end}\t{t_end}")
            c.add_line("event", f"{t}\t{team}\t{run_id}\t\\N\ttrigger\t\\N\trunning\tbench\t\\N")
            for task in TASKS:
                self.serial += 1
                fn = "f" + task[1:]
                instance = c.add_line(
                    "task_instance",
                    f"{run_id}\t{team}\t{task}\t{fn}\tsucceeded\t1\t\\N\t0\t0\tf\t\\N\t\\N\t{t}\tw\t100\t\\N\t{t_end}",
                )
                c.add_line("attempt", f"{instance}\t1\ttok{self.serial:012d}\tsucceeded\tw\t{t}\t{t_end}\t{out}\t\\N\tf\t\\N")
                c.add_line("outbox", f"{team}\toffer\t{team}.{fn}\t0\t{{\"instance\":{instance}}}\t{instance}\t{t}\t{t}")
                c.add_line("event", f"{t}\t{team}\t{run_id}\t{instance}\tclaim\tavailable\trunning\tw\t\\N")
                c.add_line("event", f"{t_end}\t{team}\t{run_id}\t{instance}\tsubmit\trunning\tsucceeded\tw\t\\N")
            c.add_line("event", f"{t_end}\t{team}\t{run_id}\t\\N\trun\trunning\tsucceeded\tbench\t\\N")

    def live_run(self, c: Copier, at: dt.datetime, *, lease: dt.datetime, retry_at: dt.datetime,
                 offered: dt.datetime) -> int:
        """A running run: t0 done, t1 running (lease until `lease`), t2 waiting to retry (until
        `retry_at`), t3 offered at `offered` (and sent), the rest pending."""
        run_id = self._run(c, "running", at)
        for task in TASKS:
            token = f"tok{self.serial:012d}"
            if task == "t0":
                self._instance(c, run_id, task, "succeeded", at)
            elif task == "t1":
                instance = self._instance(c, run_id, task, "running", at, token=token, lease=lease, worker="w")
                c.add("attempt", instance, 1, token, "running", "w", at, None, None, None, False, None)
            elif task == "t2":
                self._instance(c, run_id, task, "retry_wait", at, failures=1, not_before=retry_at)
            elif task == "t3":
                instance = self._instance(c, run_id, task, "available", offered, token=token, offered=offered, updated=offered)
                c.add("outbox", TEAM, "offer", f"{TEAM}.f3", 0, '{"instance":%d}' % instance, instance, offered, offered)
            else:
                self._instance(c, run_id, task, "pending", at, attempt=0, offered=None)
        return run_id

    def finish_previous_round(self) -> None:
        """Everything a previous round left unfinished becomes history, and its offers sent, so each
        round starts from the same live set."""
        keep = ", ".join(str(i) for i in self.live) or "0"
        database.execute_sql(
            "UPDATE task_instance SET state = 'succeeded', token = NULL, lease_expires_at = NULL, not_before = NULL "
            f"WHERE state IN ('pending', 'available', 'running', 'retry_wait') AND run_id NOT IN ({keep})"
        )
        database.execute_sql(
            "UPDATE run SET status = 'succeeded', finished_at = updated_at "
            f"WHERE status IN ('running', 'queued') AND id NOT IN ({keep})"
        )
        database.execute_sql("UPDATE outbox SET sent_at = created_at WHERE sent_at IS NULL")


def instance_count() -> int:
    return database.execute_sql("SELECT count(*) FROM task_instance").fetchone()[0]


# ---- measuring ------------------------------------------------------------------------------------

class Statements(logging.Handler):
    """Collects the SQL peewee runs, to EXPLAIN it."""

    def __init__(self):
        super().__init__(logging.DEBUG)
        self.seen: list[tuple[str, tuple]] = []

    def emit(self, record) -> None:
        if isinstance(record.msg, tuple) and len(record.msg) == 2:
            self.seen.append(record.msg)


def timed_tick(now: dt.datetime, work: dict[str, int] | None = None) -> float:
    started = time.perf_counter()
    report = tick(now)
    elapsed = time.perf_counter() - started
    if report.errors:
        raise SystemExit(f"tick failed: {report.errors}")
    if work is not None:
        for name in ("created", "expired", "retried", "reoffered"):
            work[name] = work.get(name, 0) + len(getattr(report, name))
    return elapsed


def measure(filler: Filler, base: dt.datetime, ticks: int) -> dict:
    """Median idle and busy tick times around `base` (a whole minute), and what the busy ticks did."""
    filler.finish_previous_round()
    c = Copier()
    for k in range(ticks):  # what comes due at busy tick k (at base + k minutes + 1s)
        due = base + dt.timedelta(minutes=k, seconds=1)
        filler.live_run(c, base - dt.timedelta(hours=1), lease=due - dt.timedelta(milliseconds=500),
                        retry_at=due - dt.timedelta(milliseconds=500), offered=due - dt.timedelta(seconds=60.5))
    c.flush()
    # A store with a year of history has been vacuumed and checkpointed long since; a freshly
    # loaded one has not, and autovacuum and the checkpointer would run during the measurement.
    database.execute_sql("VACUUM (ANALYZE)")
    database.execute_sql("CHECKPOINT")
    gc.collect()  # the load left millions of freed strings behind
    idle_at = base - dt.timedelta(minutes=5, seconds=-30)
    for _ in range(ticks):
        tick(idle_at)  # warm up (the first one makes the scheduled run of that minute)
    idle = [timed_tick(idle_at) for _ in range(ticks)]
    work: dict[str, int] = {}
    busy = [timed_tick(base + dt.timedelta(minutes=k, seconds=1), work) for k in range(ticks)]
    return {
        "idle": statistics.median(idle), "idle_min": min(idle), "busy": statistics.median(busy), "busy_min": min(busy),
        "work": {name: count / ticks for name, count in work.items()},
    }


def explain_busy_tick(filler: Filler, base: dt.datetime) -> list[str]:
    """EXPLAIN every statement of one busy tick; the ones that scan a history table in full."""
    filler.finish_previous_round()
    c = Copier()
    due = base + dt.timedelta(seconds=1)
    filler.live_run(c, base - dt.timedelta(hours=1), lease=due - dt.timedelta(milliseconds=500),
                    retry_at=due - dt.timedelta(milliseconds=500), offered=due - dt.timedelta(seconds=60.5))
    c.flush()
    handler = Statements()
    peewee_log = logging.getLogger("peewee")
    peewee_log.addHandler(handler)
    peewee_log.setLevel(logging.DEBUG)
    try:
        tick(due)
    finally:
        peewee_log.removeHandler(handler)
    shapes: dict[str, tuple] = {}
    for sql, params in handler.seen:
        if sql.lstrip().upper().startswith(("SELECT", "UPDATE", "DELETE")):
            shapes.setdefault(sql, params)
    problems = []
    for sql, params in shapes.items():
        plan = "\n".join(row[0] for row in database.execute_sql("EXPLAIN " + sql, params).fetchall())
        for table in BIG_TABLES:
            if f"Seq Scan on {table}" in plan:
                problems.append(f"{sql}\n{textwrap.indent(plan, '    ')}")
    return [f"{len(shapes)} distinct statements"] + problems


def prepare_database(reset: bool):
    """(url, server or None)."""
    url = os.environ.get("FLOW45_DATABASE_URL")
    if url:
        from flow45.dialect import names_server

        if not names_server(url):
            raise SystemExit("FLOW45_DATABASE_URL must be a postgresql:// URL: this benchmark is for PostgreSQL")
        return url, None, "FLOW45_DATABASE_URL"
    from tests.harness.postgres import PostgresServer, available

    ok, reason = available()
    if not ok:
        raise SystemExit(f"no FLOW45_DATABASE_URL and cannot start PostgreSQL here: {reason}")
    try:
        server, durability = PostgresServer(durable=True), "fsync on"  # as on the reference machine
    except TypeError:  # a harness without the option
        server, durability = PostgresServer(), "fsync off"
    server.start()
    return server.create_database("flow45_bench"), server, f"throwaway server (tests/harness/postgres.py, {durability})"


@contextlib.contextmanager
def bench_database(reset: bool) -> Iterator[tuple[str, str]]:
    """(url, where it is) of the benchmark's database (`prepare_database`); afterwards the connection is
    closed and a throwaway server stopped."""
    url, server, where = prepare_database(reset)
    try:
        yield url, where
    finally:
        database.close()
        if server is not None:
            server.stop()


def open_empty_store(url: str, reset: bool, title: str) -> None:
    """Connect to `url` with the schema in place and no workflows (emptied with `reset`), then print
    `title` with `{version}` filled in by the server's."""
    connect(url, create=True)
    ensure_schema()
    if Workflow.select().exists():
        if not reset:
            raise SystemExit("the database already holds workflows: pass --reset to empty it first")
        tables = "run, task_instance, attempt, event, outbox, processed_message, workflow, team, schedule_cursor"
        database.execute_sql(f"TRUNCATE {tables}, workflow_version RESTART IDENTITY CASCADE")
    print(title.format(version=database.execute_sql("SHOW server_version").fetchone()[0]))


def deploy_config(text: str) -> None:
    """Deploy a team's YAML given as text (load_config reads files: a temporary one)."""
    config = Path(tempfile.gettempdir()) / f"flow45-bench-{os.getpid()}.yaml"
    config.write_text(text)
    try:
        store.deploy(load_config(config), actor="bench", now=EPOCH)
    finally:
        config.unlink()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ticks", type=int, default=25, help="ticks per figure (median and minimum shown)")
    parser.add_argument("--sizes", default="1000,1000000", help="task instances in the store, ascending")
    parser.add_argument("--reset", action="store_true", help="empty the FLOW45_DATABASE_URL database first")
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes.split(",")]

    with bench_database(args.reset) as (url, where):
        use_settings(Settings(database_url=url))
        open_empty_store(url, args.reset, f"Flow45 scheduler tick: PostgreSQL {{version}}, {where}")
        deploy_config(CONFIG)
        filler = Filler()
        c = Copier()
        for n in range(LIVE_RUNS):
            filler.live.append(filler.live_run(c, EPOCH, lease=FAR, retry_at=FAR, offered=FAR))
        c.flush()

        results = []
        base = dt.datetime(2026, 1, 1)
        history_start = EPOCH
        for size in sizes:
            missing = size - instance_count() - args.ticks * len(TASKS)
            started = time.perf_counter()
            if missing > 0:
                c = Copier()
                runs = missing // len(TASKS)
                filler.history(c, runs, history_start)
                history_start += dt.timedelta(seconds=30 * runs)
                c.flush()
            loaded = time.perf_counter() - started
            figures = measure(filler, base, args.ticks)
            count = instance_count()
            rows = {t: database.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in ("run", "event", "outbox", "attempt")}
            print(
                f"  {count:>11,} instances ({rows['run']:,} runs, {rows['attempt']:,} attempts, {rows['event']:,} events, "
                f"{rows['outbox']:,} outbox rows; loaded in {loaded:.1f}s)"
            )
            results.append((count, figures))
            base += dt.timedelta(days=1)

        print()
        print(f"  {'instances':>11}   {'idle tick p50 (min)':>21}   {'busy tick p50 (min)':>21}")
        for count, f in results:
            print(
                f"  {count:>11,}   {f['idle'] * 1e3:>8.2f} ms ({f['idle_min'] * 1e3:5.2f} ms)"
                f"   {f['busy'] * 1e3:>8.2f} ms ({f['busy_min'] * 1e3:5.2f} ms)"
            )
        if len(results) > 1:
            (small, a), (large, b) = results[0], results[-1]
            print(
                f"  {'ratio':>11}   {b['idle'] / a['idle']:>8.2f} x  ({b['idle_min'] / a['idle_min']:5.2f} x)"
                f"   {b['busy'] / a['busy']:>8.2f} x  ({b['busy_min'] / a['busy_min']:5.2f} x)"
                f"   target: within 2x from {small:,} to {large:,}"
            )
        work = results[-1][1]["work"]
        print(
            f"  a busy tick did on average: {work['created']:.1f} scheduled run (3 tasks), {work['expired']:.1f} lease "
            f"expired, {work['retried']:.1f} retries offered again, {work['reoffered']:.1f} offer re-sent"
        )
        found = explain_busy_tick(filler, base)
        print(f"  EXPLAIN of a busy tick at {instance_count():,} instances: {found[0]}, "
              f"{len(found) - 1} with a sequential scan of a history table")
        for problem in found[1:]:
            print(textwrap.indent(problem, "    "))


if __name__ == "__main__":
    main()
