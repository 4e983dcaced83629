"""What a queue of `depends_on_past` instances costs the scheduler's sweep, as other workflows' runs pile
up between the nights.

    python benchmarks/past_queue.py [--sizes 1000,100000,1000000] [--nights 4] [--repeat 20] [--own] [--reset]

PostgreSQL only (FLOW45_DATABASE_URL, or a throwaway server as benchmarks/scheduler_tick.py starts one).
A nightly workflow's task `load` has `depends_on_past`; its first night's instance is offered and the
others wait queued. Between each two nights, another workflow's finished runs are written by the server
itself (INSERT … SELECT over generate_series), SIZE of them; with --own, SIZE x NIGHTS finished nights
of the nightly workflow itself, before the first measured (its run before is found among its own runs).
At each size it prints the sweep's offer of queued instances (`flow45.store.sweep.offer_queued`, which
finds those whose run before is done) and one offer's own check (`flow45.store.slots.why_queued`), the
median over --repeat calls, beside the ratio to the smallest size, and the machine's bare commit
(benchmarks/ceilings.py) above them. Target: within 2x from the smallest size to the largest.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ceilings import postgres_commits  # noqa: E402
from benchmarks.scheduler_tick import EPOCH, bench_database, deploy_config, open_empty_store  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.db import atomic, database  # noqa: E402
from flow45.models import Run, TaskInstance  # noqa: E402
from flow45.store import slots, sweep  # noqa: E402
from flow45.store.unit import Unit  # noqa: E402

CONFIG = """
team: bench
types: {Blob: {fields: {uri: string}}}
workflows:
  nightly:
    max_active_runs: null
    tasks:
      load: {function: load, output: Blob, depends_on_past: true}
  busy:
    max_active_runs: null
    tasks:
      x: {function: fx, output: Blob}
"""


def add_finished_runs(template: int, count: int, task: str = "x") -> None:
    """`count` finished runs copied from run `template` by the server, each a minute before the one
    before it (its logical time, when the template has one), each with its `task` succeeded."""
    database.execute_sql(f"""
        WITH made AS (
            INSERT INTO run (team, workflow_id, version_id, status, params, trigger, triggered_by, logical_time,
                             created_at, updated_at)
            SELECT team, workflow_id, version_id, 'succeeded', params, trigger, triggered_by,
                   logical_time - make_interval(mins => n), created_at, updated_at
            FROM run, generate_series(1, {int(count)}) AS n WHERE id = %s RETURNING id, team)
        INSERT INTO task_instance (run_id, task, team, function, state, attempt, failures, priority, human,
                                   updated_at)
        SELECT made.id, %s, made.team, 'f', 'succeeded', 1, 0, 0, false, now() FROM made""", (template, task))


def median_ms(call, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        call()
        times.append(time.perf_counter() - started)
    return statistics.median(times) * 1e3


def measure(size: int, nights: int, repeat: int, own: bool) -> dict[str, float]:
    database.execute_sql("TRUNCATE run, task_instance, attempt, event, outbox RESTART IDENTITY CASCADE")
    made = []
    if own:  # the nightly workflow's own finished nights, all before the ones measured
        template = store.trigger("bench", "nightly", actor="bench", now=EPOCH, logical_time=EPOCH)
        add_finished_runs(template, size * nights, task="load")
        store.cancel_run(template, actor="bench", now=EPOCH)
    else:
        template = store.trigger("bench", "busy", actor="bench", now=EPOCH)
    for night in range(nights):
        if not own:
            add_finished_runs(template, size)
        made.append(store.trigger("bench", "nightly", actor="bench", now=EPOCH + dt.timedelta(days=night + 1)))
    database.execute_sql("ANALYZE")
    last = TaskInstance.get(TaskInstance.run == made[-1])
    assert last.state == "queued", last.state

    def check_one() -> None:
        with atomic():
            unit = Unit(EPOCH)
            unit.lock_instances([last.id])
            assert slots.why_queued(unit, unit.instance(last.id)) is not None

    return {"sweep": median_ms(lambda: sweep.offer_queued(EPOCH), repeat), "check": median_ms(check_one, repeat),
            "runs": Run.select().count()}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="1000,100000,1000000", help="other runs between two nights, ascending")
    parser.add_argument("--nights", type=int, default=4, help="runs of the nightly workflow (all but one queued)")
    parser.add_argument("--repeat", type=int, default=20, help="calls per figure")
    parser.add_argument("--own", action="store_true", help="the runs between are the nightly workflow's own "
                        "earlier nights (SIZE x NIGHTS of them, before the first measured), not another workflow's")
    parser.add_argument("--reset", action="store_true", help="empty the FLOW45_DATABASE_URL database first")
    args = parser.parse_args(argv)
    with bench_database(args.reset) as (url, where):
        open_empty_store(url, args.reset, f"PostgreSQL {{version}}, {where}")
        deploy_config(CONFIG)
        commits = postgres_commits(url, seconds=2.0)
        print(f"  machine: a bare commit {commits.p50_ms:.2f} ms p50 ({commits.per_second:,.0f}/s)")
        print(f"  {'runs':>11}   {'sweep of the queue':>18}   {'one offer check':>15}")
        first = None
        for size in (int(s) for s in args.sizes.split(",")):
            found = measure(size, args.nights, args.repeat, args.own)
            first = first or found
            print(f"  {found['runs']:>11,}   {found['sweep']:>8.2f} ms {found['sweep'] / first['sweep']:>5.1f}x"
                  f"   {found['check']:>6.2f} ms {found['check'] / first['check']:>5.1f}x")


if __name__ == "__main__":
    main()
