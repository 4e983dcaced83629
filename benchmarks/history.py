"""Cost flat with history: the bridge's per-message cost and the scheduler's tick as the ledger grows
from 1 thousand to 10 million rows (and the finished runs to 1 million), and again after a prune.

    python benchmarks/history.py [--sizes 1000,100000,1000000,10000000] [--chains 60] [--ticks 15]
                                 [--after-prune] [--reset]

PostgreSQL only. With FLOW45_DATABASE_URL=postgresql://… it uses that database (which must hold no
workflows, or pass --reset to empty it); without it, it starts a throwaway server with the test
harness (durable: fsync on) and removes it afterwards.

History is written by the server itself (INSERT … SELECT over generate_series, no row crosses the
wire), as the store leaves finished runs: each run of 4 tasks has 4 instances, attempts and sent
offers, 8 processed-message records (each worker's claim and submit) and 10 ledger events (trigger,
a claim and a submit per instance, the run's end). So 10 million ledger rows are 1 million runs.

At each size (ledger rows) it prints, beside the ratio to the smallest size:
- per message: a worker's claim, and its submit (which offers the next task), each applied alone as
  the bridge applies a batch (`bridge.batch.apply_batch`, one transaction), the median over
  --chains chain runs of 5 tasks; and the same messages 100 to a batch, per message;
- the scheduler's tick, idle and busy, as benchmarks/scheduler_tick.py measures it.
Target: within 2x from the smallest size to the largest. At the largest size the server counts the
sequential scans of history tables made by 50 claims and 50 submits (the hot path's prepared
statements included), and every statement of a busy tick is EXPLAINed; any that scans is printed.
With --after-prune, every finished run is then pruned (`flow45 prune`, 50 runs per transaction,
ledger kept: at 1 million runs that takes a while) and both figures measured again.
Loading 1 million runs (10 million ledger rows, 31 million rows in all) takes minutes: the time is
printed per size.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import textwrap
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.scheduler_tick import (  # noqa: E402
    CONFIG, EPOCH, FAR, LIVE_RUNS, TEAM, Copier, Filler, explain_busy_tick, measure, deploy_config,
    open_empty_store, bench_database,
)
from bridge.batch import Delivery, apply_batch  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.db import atomic, database  # noqa: E402
from flow45.models import TaskInstance, Workflow  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from flow45.store.prune import prune  # noqa: E402

SMALL = ("s0", "s1", "s2", "s3")
EVENTS_PER_RUN = 2 + 2 * len(SMALL)
HISTORY_CONFIG = CONFIG + f"""  small:
    max_active_runs: null
    tasks:
{chr(10).join(f"      {t}: {{function: f{t}, output: Blob}}" for t in SMALL)}
  chain:
    max_active_runs: null
    tasks:
      c1: {{function: chain_start, output: Blob}}
{chr(10).join(f"      c{i}: {{function: chain_step, output: Blob, inputs: {{prev: c{i - 1}}}}}" for i in range(2, 6))}
"""
SETTINGS_TEAMS = {TEAM: {"users": {"bench-worker": "worker"}}}
SERIAL = ("run", "task_instance", "attempt", "event", "outbox")
HISTORY_TABLES = (*SERIAL, "processed_message")


# ---- history, written by the server ---------------------------------------------------------------

def load_history(runs: int, first_at: dt.datetime) -> None:
    """`runs` finished runs of `small`, 30 s apart from `first_at`, in transactions of 100,000 runs."""
    small = Workflow.get((Workflow.team == TEAM) & (Workflow.name == "small"))
    workflow_id, version_id = small.id, small.versions.get().id
    superuser = database.execute_sql("SELECT rolsuper FROM pg_roles WHERE rolname = current_user").fetchone()[0]
    step = 100_000
    for start in range(0, runs, step):
        n = min(step, runs - start)
        base = {t: database.execute_sql(f"SELECT coalesce(max(id), 0) + 1 FROM {t}").fetchone()[0] for t in SERIAL}
        at = first_at + dt.timedelta(seconds=30 * start)
        k = len(SMALL)
        params = {"n": n, "at": at, "wf": workflow_id, "ver": version_id, "team": TEAM, "k": k,
                  **{f"{t}0": i for t, i in base.items()}}
        # g: the run's number in this chunk; i: the task's number in the run. Each row's time is its run's.
        runs_sql = "generate_series(0, %(n)s - 1) AS g"
        tasks_sql = f"{runs_sql} CROSS JOIN generate_series(0, %(k)s - 1) AS i"
        when = "(%(at)s::timestamp + g * interval '30 seconds')"
        done = f"({when} + interval '5 minutes')"
        instance = "(%(task_instance0)s + g * %(k)s + i)"
        statements = [
            ("run", "id, team, workflow_id, version_id, status, params, trigger, triggered_by, created_at, started_at, "
                    "finished_at, updated_at",
             f"SELECT %(run0)s + g, %(team)s, %(wf)s, %(ver)s, 'succeeded', '{{}}', 'api', 'bench', {when}, {when}, "
             f"{done}, {done} FROM {runs_sql}"),
            ("task_instance", "id, run_id, team, task, function, state, attempt, failures, priority, human, offered_at, "
                              "worker, progress_pct, updated_at",
             f"SELECT {instance}, %(run0)s + g, %(team)s, 's' || i, 'fs' || i, 'succeeded', 1, 0, 0, false, {when}, "
             f"'w', 100, {done} FROM {tasks_sql}"),
            ("attempt", "id, instance_id, number, token, status, worker, claimed_at, finished_at, output, archived",
             f"SELECT %(attempt0)s + g * %(k)s + i, {instance}, 1, 'tok' || {instance}, 'succeeded', 'w', {when}, "
             f"{done}, '{{\"uri\":\"s3://b/x\"}}', false FROM {tasks_sql}"),
            ("outbox", "id, team, kind, routing_key, priority, body, instance, created_at, sent_at",
             f"SELECT %(outbox0)s + g * %(k)s + i, %(team)s, 'offer', %(team)s || '.fs' || i, 0, "
             f"'{{\"instance\":' || {instance} || '}}', {instance}, {when}, {when} FROM {tasks_sql}"),
            ("processed_message", "message_id, team, kind, processed_at, reply, instance",
             f"SELECT %(team)s || '/' || kind || {instance}, %(team)s, kind, {when}, '{{\"ok\":true}}', {instance} "
             f"FROM {tasks_sql} CROSS JOIN (VALUES ('claim'), ('submit')) AS kinds(kind)"),
            # per run: its trigger, a claim and a submit per instance, its end
            ("event", "id, at, team, run, instance, kind, from_state, to_state, actor",
             f"SELECT %(event0)s + g * {EVENTS_PER_RUN}, {when}, %(team)s, %(run0)s + g, NULL, 'trigger', NULL, "
             f"'running', 'bench' FROM {runs_sql} "
             f"UNION ALL SELECT %(event0)s + g * {EVENTS_PER_RUN} + 1 + 2 * i, {when}, %(team)s, %(run0)s + g, "
             f"{instance}, 'claim', 'available', 'running', 'w' FROM {tasks_sql} "
             f"UNION ALL SELECT %(event0)s + g * {EVENTS_PER_RUN} + 2 + 2 * i, {done}, %(team)s, %(run0)s + g, "
             f"{instance}, 'submit', 'running', 'succeeded', 'w' FROM {tasks_sql} "
             f"UNION ALL SELECT %(event0)s + g * {EVENTS_PER_RUN} + {EVENTS_PER_RUN - 1}, {done}, %(team)s, "
             f"%(run0)s + g, NULL, 'run', 'running', 'succeeded', 'bench' FROM {runs_sql}"),
        ]
        with atomic():
            if superuser:  # the rows are consistent by construction: skip the per-row foreign key checks
                database.execute_sql("SET LOCAL session_replication_role = replica")
            for table, columns, select in statements:
                database.execute_sql(f"INSERT INTO {table} ({columns}) {select}", params)
        for table in SERIAL:
            database.execute_sql(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")


def ledger_rows() -> int:
    return database.execute_sql("SELECT count(*) FROM event").fetchone()[0]


# ---- the bridge's per-message cost ----------------------------------------------------------------

def _delivery(kind: str, instance: TaskInstance, **extra) -> Delivery:
    body = json.dumps({"type": kind, "instance": instance.id, "token": instance.token, **extra}).encode()
    return Delivery(tag=0, exchange=f"flow45.in.{TEAM}", user_id="bench-worker", message_id=uuid.uuid4().hex,
                    reply_to=None, correlation_id=None, body=body)


def _apply(settings: Settings, batch: list[Delivery]) -> float:
    started = time.perf_counter()
    outcomes = apply_batch(settings, batch).outcomes
    elapsed = time.perf_counter() - started
    refused = [o.refusal for o in outcomes if o.refusal is not None]
    if refused:
        raise SystemExit(f"the benchmark's own message was refused: {refused[0].code}: {refused[0].message}")
    return elapsed


def _offered(run_ids: list[int]) -> list[TaskInstance]:
    return list(TaskInstance.select().where(TaskInstance.run.in_(run_ids) & (TaskInstance.state == "available"))
                .order_by(TaskInstance.id))


def per_message(settings: Settings, chains: int, with_batches: bool = True) -> dict[str, float]:
    """Median seconds of a claim and of a submit applied one per batch, and per message 100 to a batch."""
    claims: list[float] = []
    submits: list[float] = []
    batched: list[float] = []
    output = {"output": {"uri": "noop://"}}
    with atomic():
        runs = [store.trigger(TEAM, "chain", actor="bench") for _ in range(chains)]
    for _step in range(5):
        for instance in _offered(runs):
            claims.append(_apply(settings, [_delivery("claim", instance, worker="bench")]))
            instance = TaskInstance.get_by_id(instance.id)  # the claim's token
            submits.append(_apply(settings, [_delivery("submit", instance, **output)]))
    if not with_batches:
        return {}
    with atomic():
        runs = [store.trigger(TEAM, "chain", actor="bench") for _ in range(chains)]
    for _step in range(5):
        instances = _offered(runs)
        for start in range(0, len(instances), 100):
            chunk = instances[start:start + 100]
            batched.append(_apply(settings, [_delivery("claim", i, worker="bench") for i in chunk]) / len(chunk))
            chunk = [TaskInstance.get_by_id(i.id) for i in chunk]
            batched.append(_apply(settings, [_delivery("submit", i, **output) for i in chunk]) / len(chunk))
    return {"claim": statistics.median(claims), "submit": statistics.median(submits),
            "batched": statistics.median(batched), "least": min(c + s for c, s in zip(claims, submits))}


def _seq_scans() -> dict[str, int]:
    rows = database.execute_sql("SELECT relname, seq_scan FROM pg_stat_user_tables WHERE relname = ANY(%s)",
                                (list(HISTORY_TABLES),)).fetchall()
    return dict(rows)


def seq_scans_of_messages(settings: Settings, chains: int = 10) -> dict[str, int]:
    """Sequential scans of history tables made while claims and submits are applied, counted by the
    server (so the hot path's prepared statements count too): table -> scans."""
    database.execute_sql("SELECT pg_sleep(1.1)")  # the server publishes a session's counts once a second
    database.execute_sql("SELECT pg_stat_clear_snapshot()")
    before = _seq_scans()
    per_message(settings, chains, with_batches=False)
    database.execute_sql("SELECT pg_sleep(1.1)")
    database.execute_sql("SELECT 1")  # idle again: the counts are flushed
    database.execute_sql("SELECT pg_stat_clear_snapshot()")
    after = _seq_scans()
    return {table: after[table] - before.get(table, 0) for table in after if after[table] > before.get(table, 0)}


# ---- the run --------------------------------------------------------------------------------------

def _row(label: str, m: dict, t: dict, first: tuple[dict, dict] | None) -> str:
    line = (f"  {label:>26}  {m['claim'] * 1e3:6.2f} {m['submit'] * 1e3:6.2f} {m['batched'] * 1e3:6.3f} ms"
            f"   {t['idle'] * 1e3:6.2f} {t['busy'] * 1e3:6.2f} ms")
    if first is not None:
        m0, t0 = first
        line += (f"   x{m['claim'] / m0['claim']:4.2f} x{m['submit'] / m0['submit']:4.2f} x{m['batched'] / m0['batched']:4.2f}"
                 f"  x{t['idle'] / t0['idle']:4.2f} x{t['busy'] / t0['busy']:4.2f}"
                 f"  least: x{m['least'] / m0['least']:4.2f} x{t['busy_min'] / t0['busy_min']:4.2f}")
    return line


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000,10000000", help="ledger rows, ascending")
    parser.add_argument("--chains", type=int, default=60, help="chain runs of 5 driven per figure")
    parser.add_argument("--ticks", type=int, default=15, help="scheduler ticks per figure")
    parser.add_argument("--after-prune", action="store_true", help="then prune every finished run and measure again")
    parser.add_argument("--reset", action="store_true", help="empty the FLOW45_DATABASE_URL database first")
    args = parser.parse_args(argv)
    try:
        sizes = sorted(int(s) for s in args.sizes.split(","))
    except ValueError:
        parser.error(f"--sizes: comma-separated whole numbers, not {args.sizes!r}")

    with bench_database(args.reset) as (url, where):
        settings = Settings(database_url=url, teams=SETTINGS_TEAMS)
        use_settings(settings)
        open_empty_store(url, args.reset, f"Flow45 cost with history: PostgreSQL {{version}}, {where}")
        deploy_config(HISTORY_CONFIG)
        filler = Filler()
        c = Copier()
        for _ in range(LIVE_RUNS):
            filler.live.append(filler.live_run(c, EPOCH, lease=FAR, retry_at=FAR, offered=FAR))
        c.flush()

        print(f"  {'ledger rows (runs)':>26}  {'claim submit 100/batch':>24}   {'tick idle busy':>17}"
              f"   ratio to the first size (medians; least: the fastest claim+submit and busy tick,"
              f" less disturbed by a loaded machine)")
        per_message(settings, max(2, args.chains // 5))  # warm up: the first figures are not the first calls
        results = []
        base, next_at = dt.datetime(2026, 1, 1), EPOCH
        for size in sizes:
            missing = (size - ledger_rows()) // EVENTS_PER_RUN
            started = time.perf_counter()
            if missing > 0:
                load_history(missing, next_at)
                next_at += dt.timedelta(seconds=30 * missing)
            loaded = time.perf_counter() - started
            ticks = measure(filler, base, args.ticks)  # also VACUUM ANALYZE and CHECKPOINT after the load
            messages = per_message(settings, args.chains)
            base += dt.timedelta(days=1)
            runs = database.execute_sql("SELECT count(*) FROM run").fetchone()[0]
            label = f"{ledger_rows():,} ({runs:,})"
            print(_row(label, messages, ticks, results[0] if results else None) + f"   loaded in {loaded:.0f}s",
                  flush=True)
            results.append((messages, ticks))

        scans = seq_scans_of_messages(settings)
        print(f"  sequential scans of history tables by 50 claims and 50 submits at {ledger_rows():,} ledger rows "
              f"(the server's counts): {scans or 'none'}")
        found = explain_busy_tick(filler, base)
        print(f"  EXPLAIN of a busy tick: {found[0]}, {len(found) - 1} with a sequential scan of a history table")
        for problem in found[1:]:
            print(textwrap.indent(problem, "    "))

        if args.after_prune:
            started = time.perf_counter()
            report = prune(base + dt.timedelta(days=3650), ledger="keep")
            took = time.perf_counter() - started
            database.execute_sql("VACUUM (ANALYZE)")
            print(f"  pruned {report.runs:,} runs, {report.instances:,} instances in {took:.0f}s "
                  f"({report.instances / max(took, 1e-9):,.0f} instances/s; ledger kept)")
            ticks = measure(filler, base + dt.timedelta(days=1), args.ticks)
            messages = per_message(settings, args.chains)
            runs = database.execute_sql("SELECT count(*) FROM run").fetchone()[0]
            print(_row(f"after prune: {runs:,} runs", messages, ticks, results[0]))


if __name__ == "__main__":
    main()
