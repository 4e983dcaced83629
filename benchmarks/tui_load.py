"""How the dashboard opens on a big store: 100,000 runs, and one run of 1,000 instances.

    python benchmarks/tui_load.py [--runs 100000] [--instances 1000] [--db PATH] [--keep]

Fills a SQLite store with bulk inserts (the runs as finished history of examples/config's
monthly_report, 4 instances each), deploys a generated workflow of N tasks in 10 dependency
levels and triggers one run of it, then times with Textual's headless `run_test`:
the runs screen's first paint, paging on, opening the big run, and a worker's changes to 50 of
its instances reaching the screen (no key pressed). Prints one line per figure.
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import os
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flow45 import store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import atomic, connect  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Run, TaskInstance, Workflow, WorkflowVersion  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402

T0 = dt.datetime(2026, 1, 1)
SIZE = (160, 48)


def wide_config(path: Path, tasks: int, levels: int = 10) -> None:
    per = max(1, tasks // levels)
    lines = ["team: bench", "types:", "  Out: {fields: {uri: string}}", "workflows:", "  wide:",
             "    max_active_runs: null", "    tasks:"]
    for n in range(tasks):
        level, index = divmod(n, per)
        after = ""
        if level:
            ups = {f"t{(level - 1) * per + (index + k) % per}" for k in (0, 1)}
            after = f", after: [{', '.join(sorted(ups))}]"
        lines.append(f"      t{n}: {{function: work, output: Out{after}}}")
    path.write_text("\n".join(lines) + "\n")


def fill_history(runs: int) -> None:
    """`runs` finished monthly_report runs, inserted in bulk (the store's verbs are per-row)."""
    workflow = Workflow.get((Workflow.team == "reports") & (Workflow.name == "monthly_report"))
    version = WorkflowVersion.get(WorkflowVersion.workflow == workflow)
    tasks = [("extract", "extract_sales", False), ("render", "render_pdf", False),
             ("approve", "approve_report", True), ("publish", "publish_document", False)]
    batch = 2000
    for start in range(0, runs, batch):
        with atomic():
            rows = []
            for n in range(start, min(runs, start + batch)):
                at = T0 + dt.timedelta(minutes=n)
                status = "failed" if n % 97 == 0 else "succeeded"
                rows.append({"team": "reports", "workflow": workflow.id, "version": version.id, "status": status,
                             "params": '{"month":"2026-01"}', "logical_time": None, "trigger": "api",
                             "triggered_by": "bench", "created_at": at, "started_at": at, "finished_at": at,
                             "updated_at": at})
            Run.insert_many(rows).execute()
            first = Run.select(Run.id).order_by(Run.id.desc()).limit(1).scalar() - len(rows) + 1
            TaskInstance.insert_many([
                {"run": run_id, "team": "reports", "task": task, "function": function,
                 "state": "failed" if (run_id % 97 == 0 and task == "publish") else "succeeded",
                 "attempt": 1, "human": human, "updated_at": T0}
                for run_id in range(first, first + len(rows)) for task, function, human in tasks
            ]).execute()


async def measure(url: str, big_run: int, instances: int) -> None:
    from flow45.client import LocalClient, RunFilter
    from tests.tui.conftest import wait_until
    from tui import data
    from tui.app import Dashboard
    from tui.screens.run import RunScreen
    from tui.screens.runs import RunsScreen
    from tui.widgets.dag import DagView

    client = LocalClient("bench")
    t = time.perf_counter()
    client.runs(RunFilter(), limit=data.PAGE)
    print(f"store: first page of {data.PAGE} runs          {1000 * (time.perf_counter() - t):7.1f} ms")
    t = time.perf_counter()
    counts = client.status_counts(RunFilter())
    print(f"store: counts per status ({sum(counts.values()):,} runs) {1000 * (time.perf_counter() - t):7.1f} ms")
    t = time.perf_counter()
    store.get_run(big_run)
    print(f"store: get_run of {instances:,} instances      {1000 * (time.perf_counter() - t):7.1f} ms")

    started = time.perf_counter()
    app = Dashboard("bench", database_url=url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=30)
        await pilot.pause()
        print(f"tui: runs screen first paint           {1000 * (time.perf_counter() - started):7.1f} ms"
              f"  ({len(app.screen.loaded)} rows loaded of {sum(app.screen.counts.values()):,})")
        runs = app.screen
        if not runs.exhausted:
            t = time.perf_counter()
            await pilot.press("end")
            await wait_until(pilot, lambda: len(runs.loaded) > data.PAGE, timeout=30)
            await pilot.pause()
            print(f"tui: next page on reaching the end     {1000 * (time.perf_counter() - t):7.1f} ms"
                  f"  ({len(runs.loaded)} rows loaded)")
        await pilot.press("home")
        t = time.perf_counter()
        await pilot.press("enter")  # the newest run: the big one
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None, timeout=30)
        await pilot.pause()
        print(f"tui: open the run of {instances:,} instances    {1000 * (time.perf_counter() - t):7.1f} ms")
        dag = app.screen.query_one(DagView)
        t = time.perf_counter()
        await pilot.press("pagedown", "pagedown", "end", "home")
        await pilot.pause()
        print(f"tui: page down ×2, end, home           {1000 * (time.perf_counter() - t):7.1f} ms")
        offered = [i for i in dag.instances if i.state == "available"][:50]
        if len(offered) < 50:
            print("tui: live update skipped (fewer than 50 available instances left in the big run)")
            return
        t = time.perf_counter()
        for view in offered:
            row = TaskInstance.get_by_id(view.id)
            grant = store.claim(row.id, row.token, "bench-worker")
            store.progress(row.id, grant.token, 30, "working")
        written = time.perf_counter() - t
        ids = {v.id for v in offered}
        t = time.perf_counter()
        await wait_until(pilot, lambda: all(v.progress_pct == 30 for v in dag.instances if v.id in ids), timeout=30)
        print(f"tui: 50 claims+progress shown (no key) {1000 * (time.perf_counter() - t):7.1f} ms after the last"
              f" write (writes took {1000 * written:.0f} ms; feed read {1000 * app.feed.last_fetch_seconds:.0f} ms)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=1_000)
    parser.add_argument("--db", help="SQLite file (default: a temporary one)")
    parser.add_argument("--keep", action="store_true", help="keep the database file")
    parser.add_argument("--again", action="store_true", help="measure again on --db, filled by an earlier run")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="flow45-tui-bench-"))
    path = Path(args.db) if args.db else folder / "bench.db"
    url = f"sqlite:///{path}"
    use_settings(Settings(database_url=url))
    if args.again and args.db:
        connect(url)
        big_run = Run.select(Run.id).order_by(Run.id.desc()).limit(1).scalar()
        instances = TaskInstance.select().where(TaskInstance.run == big_run).count()
        asyncio.run(measure(url, big_run, instances))
        return 0
    path.unlink(missing_ok=True)
    connect(url, create=True)
    ensure_schema()
    store.deploy(load_config(ROOT / "examples" / "config"), actor="bench", now=T0)
    t = time.perf_counter()
    fill_history(args.runs)
    wide_config(folder / "wide.yaml", args.instances)
    store.deploy(load_config(folder / "wide.yaml"), actor="bench", now=T0)
    big_run = store.trigger("bench", "wide", actor="bench")
    print(f"filled {args.runs:,} runs and a run of {args.instances:,} instances in {time.perf_counter() - t:.1f} s"
          f" ({path}, {os.path.getsize(path) / 1e6:.0f} MB)")
    asyncio.run(measure(url, big_run, args.instances))
    if not args.keep and not args.db:
        path.unlink()
    return 0


if __name__ == "__main__":
    sys.exit(main())
