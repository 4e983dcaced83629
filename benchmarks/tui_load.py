"""How the dashboard opens on a big store: 100,000 runs, and one run of 1,000 instances, on the
database (local mode) and through the broker (remote mode).

    python benchmarks/tui_load.py [--runs 100000] [--instances 1000] [--db PATH] [--keep] [--again]
    python benchmarks/tui_load.py --remote [--runs 100000] [--instances 1000]
    python benchmarks/tui_load.py --compare [--runs 100000] [--instances 1000]

Fills a store with bulk inserts (the runs as finished history of examples/config's monthly_report,
4 instances each), deploys a generated workflow of N tasks in 10 dependency levels to the same team
and triggers one run of it, then times with Textual's headless `run_test`: the runs screen's first
paint, paging on, opening the big run, and a worker's claims of 50 of its instances reaching the
screen (no key pressed; the claims are written to the store as the bridge applies a worker's).
Prints one line per figure.

Without a mode the store is a SQLite file and the dashboard reads it directly. `--remote` fills a
PostgreSQL store, starts a bridge (`flow45 bridge run`, its own process) and opens the dashboard of
the team's operator with only its broker URL: every read is a read RPC on flow45.read, and the live
update comes through the team's event stream. `--compare` measures both on the same PostgreSQL
store, local first, then remote, and prints them side by side.

PostgreSQL and RabbitMQ are throwaway servers started here (as the tests start them), unless these
name servers to use: FLOW45_BENCH_DATABASE_URL (an empty PostgreSQL database),
FLOW45_BENCH_AMQP_URL (a broker user that may do everything on its vhost: the bridge's) and
FLOW45_BENCH_OPERATOR_URL (an operator of team reports, as `flow45 bridge setup-broker` makes it).
FLOW45_BENCH_BRIDGE_LOG names a file for the bridge's log.
"""


from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Iterator
from urllib.parse import unquote, urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from flow45 import store  # noqa: E402
from flow45.client import Client, LocalClient, RunFilter  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import atomic, connect  # noqa: E402
from flow45.errors import Flow45Error  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Run, TaskInstance, Workflow, WorkflowVersion  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402

T0 = dt.datetime(2026, 1, 1)
SIZE = (160, 48)
TEAM = "reports"
OPERATOR, PASSWORD = "bench-ops", "bench-secret"  # the operator user made on a throwaway broker
LIVE = 50  # instances a worker changes while the run is on screen


def wide_config(path: Path, tasks: int, levels: int = 10) -> None:
    """A workflow of `tasks` tasks in `levels` dependency levels, for the same team as the history."""
    per = max(1, tasks // levels)
    lines = [f"team: {TEAM}", "types:", "  WideOut: {fields: {uri: string}}", "workflows:", "  wide:",
             "    max_active_runs: null", "    tasks:"]
    for n in range(tasks):
        level, index = divmod(n, per)
        after = ""
        if level:
            ups = {f"t{(level - 1) * per + (index + k) % per}" for k in (0, 1)}
            after = f", after: [{', '.join(sorted(ups))}]"
        lines.append(f"      t{n}: {{function: work, output: WideOut{after}}}")
    path.write_text("\n".join(lines) + "\n")


def fill_history(runs: int) -> None:
    """`runs` finished monthly_report runs, inserted in bulk (the store's verbs are per-row)."""
    workflow = Workflow.get((Workflow.team == TEAM) & (Workflow.name == "monthly_report"))
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
                rows.append({"team": TEAM, "workflow": workflow.id, "version": version.id, "status": status,
                             "params": {"month": "2026-01"}, "logical_time": None, "trigger": "api",
                             "triggered_by": "bench", "created_at": at, "started_at": at, "finished_at": at,
                             "updated_at": at})
            Run.insert_many(rows).execute()
            first = Run.select(Run.id).order_by(Run.id.desc()).limit(1).scalar() - len(rows) + 1
            TaskInstance.insert_many([
                {"run": run_id, "team": TEAM, "task": task, "function": function,
                 "state": "failed" if (run_id % 97 == 0 and task == "publish") else "succeeded",
                 "attempt": 1, "human": human, "updated_at": T0}
                for run_id in range(first, first + len(rows)) for task, function, human in tasks
            ]).execute()


def fill(folder: Path, runs: int, instances: int) -> int:
    """The history and the big run in the bound (empty) store; the big run's id."""
    config = folder / "config"
    config.mkdir(exist_ok=True)
    shutil.copy(ROOT / "examples" / "config" / "reports.yaml", config / "reports.yaml")
    wide_config(config / "wide.yaml", instances)
    ensure_schema()
    store.deploy(load_config(config), actor="bench", now=T0)
    t = time.perf_counter()
    fill_history(runs)
    big_run = store.trigger(TEAM, "wide", actor="bench")
    print(f"filled {runs:,} runs and a run of {instances:,} instances in {time.perf_counter() - t:.1f} s")
    return big_run


# ---- measuring -------------------------------------------------------------------------------

Figures = dict[str, tuple[float, str]]  # label -> (milliseconds, a note)


def _figure(figures: Figures, label: str, seconds: float, note: str = "") -> None:
    figures[label] = (1000 * seconds, note)
    print(f"{label:<42} {1000 * seconds:8.1f} ms  {note}".rstrip())


async def measure(client: Client, big_run: int, instances: int) -> Figures:
    """The figures of a dashboard on `client` (the big run is the newest run the client sees)."""
    from tests.tui.conftest import wait_until
    from tui import data
    from tui.app import Dashboard
    from tui.screens.run import RunScreen
    from tui.screens.runs import RunsScreen
    from tui.widgets.dag import DagView

    figures: Figures = {}
    t = time.perf_counter()
    client.latest_event_id()  # through the broker, this also connects and asks who we are
    _figure(figures, "client: first read (newest ledger id)", time.perf_counter() - t)
    t = time.perf_counter()
    client.runs(RunFilter(), limit=data.PAGE)
    _figure(figures, f"client: first page of {data.PAGE} runs", time.perf_counter() - t)
    t = time.perf_counter()
    counts = client.status_counts(RunFilter())
    _figure(figures, "client: counts per status", time.perf_counter() - t, f"({sum(counts.values()):,} runs)")
    t = time.perf_counter()
    client.run(big_run)
    _figure(figures, f"client: a run of {instances:,} instances", time.perf_counter() - t)

    started = time.perf_counter()
    app = Dashboard("bench", client=client)
    async with app.run_test(size=SIZE) as pilot:
        await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded, timeout=60)
        await pilot.pause()
        runs = app.screen
        _figure(figures, "tui: runs screen first paint", time.perf_counter() - started,
                f"({len(runs.loaded)} rows loaded of {sum(runs.counts.values()):,})")
        if not runs.exhausted:
            t = time.perf_counter()
            await pilot.press("end")
            await wait_until(pilot, lambda: len(runs.loaded) > data.PAGE, timeout=60)
            await pilot.pause()
            _figure(figures, "tui: next page on reaching the end", time.perf_counter() - t,
                    f"({len(runs.loaded)} rows loaded)")
        await pilot.press("home")
        t = time.perf_counter()
        await pilot.press("enter")  # the newest run: the big one
        await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None, timeout=60)
        await pilot.pause()
        _figure(figures, f"tui: open the run of {instances:,} instances", time.perf_counter() - t)
        dag = app.screen.query_one(DagView)
        t = time.perf_counter()
        await pilot.press("pagedown", "pagedown", "end", "home")
        await pilot.pause()
        _figure(figures, "tui: page down ×2, end, home", time.perf_counter() - t)
        offered = [i for i in dag.instances if i.state == "available"][:LIVE]
        if len(offered) < LIVE:
            print(f"tui: live update skipped (fewer than {LIVE} available instances left in the big run)")
            return figures
        t = time.perf_counter()
        for view in offered:  # as the bridge applies a worker's claim (progress alone writes no ledger event)
            store.claim(view.id, TaskInstance.get_by_id(view.id).token, "bench-worker")
        written = time.perf_counter() - t
        ids = {v.id for v in offered}
        t = time.perf_counter()
        await wait_until(pilot, lambda: all(v.state == "running" for v in dag.instances if v.id in ids), timeout=60)
        _figure(figures, f"tui: {LIVE} claims shown (no key)", time.perf_counter() - t,
                f"after the last write (writes took {1000 * written:.0f} ms;"
                f" feed read {1000 * app.feed.last_fetch_seconds:.0f} ms)")
    return figures


def side_by_side(columns: dict[str, Figures]) -> None:
    names = list(columns)
    labels = list(dict.fromkeys(label for figures in columns.values() for label in figures))
    print()
    print(f"{'':<42} " + " ".join(f"{name:>16}" for name in names))
    for label in labels:
        cells = [columns[name].get(label) for name in names]
        print(f"{label:<42} " + " ".join(f"{cell[0]:13.1f} ms" if cell else f"{'-':>16}" for cell in cells))


# ---- servers and the bridge --------------------------------------------------------------------

@contextlib.contextmanager
def servers() -> Iterator[tuple[str, str, str]]:
    """(database URL, the bridge's broker URL, the operator's broker URL): the FLOW45_BENCH_* ones,
    else throwaway servers started here and stopped afterwards."""
    given = [os.environ.get(f"FLOW45_BENCH_{name}_URL") for name in ("DATABASE", "AMQP", "OPERATOR")]
    if all(given):
        yield given[0], given[1], given[2]
        return
    if any(given):
        raise SystemExit("tui_load: set all of FLOW45_BENCH_DATABASE_URL, FLOW45_BENCH_AMQP_URL and "
                         "FLOW45_BENCH_OPERATOR_URL, or none (throwaway servers are started)")
    from bridge.setup_broker import plan
    from tests.harness.postgres import PostgresServer
    from tests.harness.rabbitmq import RabbitMQServer

    postgres, rabbit = PostgresServer(), RabbitMQServer()
    try:
        postgres.start()
        rabbit.start()
        settings = Settings(amqp_url=rabbit.amqp_url, teams=teams_of(OPERATOR))
        for argv in plan(settings, {OPERATOR: PASSWORD})[0]:
            rabbit.ctl(*argv)
        yield (postgres.create_database("flow45_tui_bench"), rabbit.amqp_url,
               rabbit.amqp_url.replace("guest:guest", f"{OPERATOR}:{PASSWORD}"))
    finally:
        rabbit.stop()
        postgres.stop()


def teams_of(operator: str) -> dict:
    return {TEAM: {"users": {operator: "operator"}}}


@contextlib.contextmanager
def bridge(db_url: str, amqp_url: str, operator_url: str) -> Iterator[None]:
    """`flow45 bridge run` in its own process, answering the operator's reads once this yields."""
    from bridge.rpc import Rpc

    operator = unquote(urlsplit(operator_url).username or "")
    env = {**os.environ, "FLOW45_DATABASE_URL": db_url, "FLOW45_AMQP_URL": amqp_url,
           "FLOW45_TEAMS": json.dumps(teams_of(operator)), "PYTHONPATH": str(ROOT)}
    log = open(os.environ.get("FLOW45_BENCH_BRIDGE_LOG", os.devnull), "w")
    process = subprocess.Popen([sys.executable, "-m", "flow45", "bridge", "run"], env=env, stderr=log)
    try:
        deadline, problem = time.monotonic() + 60, ""
        while True:
            rpc = Rpc(operator_url, timeout=2)
            try:
                rpc.read({"type": "whoami"})
                break
            except Flow45Error as exc:
                problem = exc.message
            finally:
                rpc.close()
            if process.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tui_load: the bridge does not answer reads ({problem}); "
                                 "FLOW45_BENCH_BRIDGE_LOG=FILE keeps its log")
            time.sleep(0.5)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


def on_postgres(args: argparse.Namespace, folder: Path) -> None:
    from bridge.remote import RemoteClient

    with servers() as (db_url, amqp_url, operator_url):
        use_settings(Settings(database_url=db_url))
        connect(db_url)
        big_run = fill(folder, args.runs, args.instances)
        columns: dict[str, Figures] = {}
        if args.compare:
            print("\nlocal (the dashboard on PostgreSQL):")
            columns["local"] = asyncio.run(measure(LocalClient("bench", database_url=db_url), big_run, args.instances))
        with bridge(db_url, amqp_url, operator_url):
            print("\nremote (the team operator's dashboard through the broker):")
            remote = RemoteClient(operator_url)
            try:
                columns["remote"] = asyncio.run(measure(remote, big_run, args.instances))
            finally:
                remote.close()
        if args.compare:
            side_by_side(columns)


def on_sqlite(args: argparse.Namespace, folder: Path) -> None:
    path = Path(args.db) if args.db else folder / "bench.db"
    url = f"sqlite:///{path}"
    use_settings(Settings(database_url=url))
    if args.again and args.db:
        connect(url)
        big_run = Run.select(Run.id).order_by(Run.id.desc()).limit(1).scalar()
        instances = TaskInstance.select().where(TaskInstance.run == big_run).count()
        asyncio.run(measure(LocalClient("bench", database_url=url), big_run, instances))
        return
    path.unlink(missing_ok=True)
    connect(url, create=True)
    big_run = fill(folder, args.runs, args.instances)
    print(f"({path}, {os.path.getsize(path) / 1e6:.0f} MB)")
    asyncio.run(measure(LocalClient("bench", database_url=url), big_run, args.instances))
    if not args.keep and not args.db:
        path.unlink()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=100_000)
    parser.add_argument("--instances", type=int, default=1_000)
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--remote", action="store_true", help="PostgreSQL, RabbitMQ and a bridge; the dashboard "
                      "through the broker")
    mode.add_argument("--compare", action="store_true", help="on PostgreSQL: local, then remote, side by side")
    parser.add_argument("--db", help="SQLite file (default: a temporary one; local mode only)")
    parser.add_argument("--keep", action="store_true", help="keep the SQLite file")
    parser.add_argument("--again", action="store_true", help="measure again on --db, filled by an earlier run")
    args = parser.parse_args()
    if (args.remote or args.compare) and (args.db or args.keep or args.again):
        parser.error("--db, --keep and --again are for the SQLite store (without --remote or --compare)")
    folder = Path(tempfile.mkdtemp(prefix="flow45-tui-bench-"))
    try:
        (on_postgres if args.remote or args.compare else on_sqlite)(args, folder)
    finally:
        if not args.keep:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
