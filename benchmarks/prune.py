"""How fast `flow45 prune` removes finished history: load N finished task instances, prune them all.

    python benchmarks/prune.py [--instances 1000000] [--chunk 50] [--ledger keep|prune] [--export FILE] [--reset]

PostgreSQL only. With FLOW45_DATABASE_URL=postgresql://… it uses that database (which must hold no
workflows, or pass --reset to empty it); without it, it starts a throwaway server with the test
harness (durable: fsync on) and removes it afterwards.

The history is loaded by COPY, as the store leaves finished runs: runs of 10 instances, each
instance with one attempt, one sent offer, a claim and a submit event and the two processed-message
records of the worker's claim and submit; a trigger and a run event per run. Then every run is
pruned, 50 per transaction by default, as `flow45 prune` does, and the rate printed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import io
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scheduler_tick import (  # noqa: E402
    CONFIG, EPOCH, TASKS, TEAM, _text, deploy_config, open_empty_store, bench_database,
)
from flow45.db import database  # noqa: E402
from flow45.models import Workflow  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from flow45.store import stats  # noqa: E402
from flow45.store.export_file import ExportFile  # noqa: E402
from flow45.store.prune import candidates, deletes, prune  # noqa: E402

COLUMNS = {
    "run": "id team workflow_id version_id status params logical_time trigger triggered_by created_at "
           "started_at finished_at updated_at",
    "task_instance": "id run_id team task function state attempt token failures priority human "
                     "lease_expires_at not_before offered_at worker progress_pct progress_message updated_at",
    "attempt": "id instance_id number token status worker claimed_at finished_at output error archived archived_by",
    "event": "id at team run instance kind from_state to_state actor detail",
    "outbox": "id team kind routing_key priority body instance created_at sent_at",
    "processed_message": "message_id team kind processed_at reply instance",
}
SERIAL = ("run", "task_instance", "attempt", "event", "outbox")


def load(instances: int) -> None:
    """`instances` finished instances (rounded down to whole runs), COPYed 200,000 runs' rows at a time."""
    history = Workflow.get((Workflow.team == TEAM) & (Workflow.name == "history"))
    workflow_id, version_id = history.id, history.versions.get().id
    next_id = {t: database.execute_sql(f"SELECT coalesce(max(id), 0) + 1 FROM {t}").fetchone()[0] for t in SERIAL}
    buffers = {t: io.StringIO() for t in COLUMNS}

    def row(table: str, line: str) -> int:
        if table not in SERIAL:
            buffers[table].write(line + "\n")
            return 0
        row_id = next_id[table]
        next_id[table] += 1
        buffers[table].write(f"{row_id}\t{line}\n")
        return row_id

    def flush() -> None:
        cursor = database.connection().cursor()
        for table, buffer in buffers.items():
            buffer.seek(0)
            cursor.copy_expert(f"COPY {table} ({', '.join(COLUMNS[table].split())}) FROM STDIN", buffer)
            buffers[table] = io.StringIO()
        database.connection().commit()

    out, reply = '{"uri":"s3://b/x"}', '{"ok":true}'
    for n in range(instances // len(TASKS)):
        at = EPOCH + dt.timedelta(seconds=30 * n)
        t, t_end = _text(at), _text(at + dt.timedelta(minutes=5))
        run_id = row("run", f"{TEAM}\t{workflow_id}\t{version_id}\tsucceeded\t{{}}\t\\N\tapi\tbench\t{t}\t{t}\t{t_end}\t{t_end}")
        row("event", f"{t}\t{TEAM}\t{run_id}\t\\N\ttrigger\t\\N\trunning\tbench\t\\N")
        for task in TASKS:
            fn = "f" + task[1:]
            instance = row("task_instance", f"{run_id}\t{TEAM}\t{task}\t{fn}\tsucceeded\t1\t\\N\t0\t0\tf\t\\N\t\\N\t{t}\tw\t100\t\\N\t{t_end}")
            row("attempt", f"{instance}\t1\ttok{instance:012d}\tsucceeded\tw\t{t}\t{t_end}\t{out}\t\\N\tf\t\\N")
            row("outbox", f"{TEAM}\toffer\t{TEAM}.{fn}\t0\t{{\"instance\":{instance}}}\t{instance}\t{t}\t{t}")
            row("event", f"{t}\t{TEAM}\t{run_id}\t{instance}\tclaim\tavailable\trunning\tw\t\\N")
            row("event", f"{t_end}\t{TEAM}\t{run_id}\t{instance}\tsubmit\trunning\tsucceeded\tw\t\\N")
            row("processed_message", f"{TEAM}/c{instance}\t{TEAM}\tclaim\t{t}\t{reply}\t{instance}")
            row("processed_message", f"{TEAM}/s{instance}\t{TEAM}\tsubmit\t{t_end}\t{reply}\t{instance}")
        row("event", f"{t_end}\t{TEAM}\t{run_id}\t\\N\trun\trunning\tsucceeded\tbench\t\\N")
        if n % 20_000 == 19_999:
            flush()
    flush()
    for table in SERIAL:
        database.execute_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")
    database.execute_sql("ANALYZE")


def seq_scans(queries: dict) -> list[str]:
    """The statements whose plan reads a whole history table."""
    found = []
    for name, query in queries.items():
        sql, params = query.sql()
        plan = "\n".join(r[0] for r in database.execute_sql("EXPLAIN " + sql, params).fetchall())
        if any(f"Seq Scan on {table}" in plan for table in COLUMNS):
            found.append(f"{name}:\n{plan}")
    return found


def counts() -> dict[str, int]:
    return {t: database.execute_sql(f"SELECT count(*) FROM {t}").fetchone()[0] for t in COLUMNS}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--instances", type=int, default=1_000_000, help="finished task instances to load and prune")
    parser.add_argument("--chunk", type=int, default=50, help="runs per transaction")
    parser.add_argument("--ledger", choices=["keep", "prune"], default="keep", help="ledger_retention")
    parser.add_argument("--export", metavar="FILE", help="export the pruned runs as JSON lines to FILE")
    parser.add_argument("--reset", action="store_true", help="empty the FLOW45_DATABASE_URL database first")
    args = parser.parse_args(argv)

    with bench_database(args.reset) as (url, where):
        use_settings(Settings(database_url=url))
        open_empty_store(url, args.reset, f"Flow45 prune: PostgreSQL {{version}}, {where}")
        deploy_config(CONFIG)

        started = time.perf_counter()
        load(args.instances)
        before = counts()
        print(f"  loaded in {time.perf_counter() - started:.1f}s: " + ", ".join(f"{n:,} {t}" for t, n in before.items()))

        if args.export:
            Path(args.export).unlink(missing_ok=True)  # the benchmark's own file of an earlier run
        export = ExportFile(args.export) if args.export else None
        cutoff = EPOCH + dt.timedelta(days=3650)
        grouped, outbox = stats.queries(cutoff)
        first = [run_id for _, run_id in candidates(cutoff, None, args.chunk).tuples()]
        shapes = {"scrape: live instances": grouped, "scrape: outbox backlog": outbox,
                  "prune: next runs": candidates(cutoff, (EPOCH, 0), args.chunk),
                  **{f"prune: delete {name}": q for name, q in deletes(first, "prune")}}
        scans = seq_scans(shapes)
        print(f"  EXPLAIN at {before['task_instance']:,} instances: {len(shapes)} statements (the scrape's and a "
              f"prune transaction's), {len(scans)} with a sequential scan of a history table")
        for scan in scans:
            print("    " + scan.replace("\n", "\n    "))
        started = time.perf_counter()
        try:
            report = prune(cutoff, ledger=args.ledger, export=export, chunk=args.chunk)
        finally:
            if export is not None:
                export.close()
        took = time.perf_counter() - started
        after = counts()
        print(f"  pruned {report.runs:,} runs, {report.instances:,} instances, {report.attempts:,} attempts, "
              f"{report.outbox:,} outbox rows, {report.processed:,} processed messages, {report.events:,} events "
              f"(ledger {args.ledger}{', exported' if export else ''}) in {took:.1f}s, {args.chunk} runs per transaction")
        print(f"  rate: {report.instances / took:,.0f} instances/s, {report.runs / took:,.0f} runs/s")
        print("  left: " + ", ".join(f"{n:,} {t}" for t, n in after.items()))


if __name__ == "__main__":
    main()
