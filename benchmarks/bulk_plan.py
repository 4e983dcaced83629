"""What planning a bulk action over a month of runs costs a remote operator, beside a local one: RUNS
runs of a three-task workflow (made with the store directly; the `load` of every third one failed),
then `flow45 bulk retry --workflow data/nightly --task load --dry-run` timed as the command an
operator runs, through a bridge with only the operator's broker URL and on the database, and the plan
alone (`flow45.bulk.select`) in this process, with the reads it sent to the bridge counted.

    python benchmarks/bulk_plan.py [--runs 2000] [--repeat 3]

PostgreSQL (fsync on) and RabbitMQ are started by the test harness and removed afterwards.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.remote import RemoteClient  # noqa: E402
from bridge.service import Bridge  # noqa: E402
from bridge.setup_broker import plan  # noqa: E402
from flow45 import bulk, store  # noqa: E402
from flow45.client import LocalClient, RunFilter  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import connect  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Run, TaskInstance  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.rabbitmq import RabbitMQServer  # noqa: E402

TEAMS = {"data": {"users": {"data-ops": "operator"}}}
PASSWORD = "p"
CONFIG = """team: data
types:
  Rows: {fields: {rows: integer}}
workflows:
  nightly:
    max_active_runs: null
    tasks:
      extract: {function: extract, output: Rows}
      load: {function: load, output: Rows, inputs: {rows: extract}}
      report: {function: report, output: Rows, inputs: {rows: load}}
"""
COMMAND = ("bulk", "retry", "--workflow", "data/nightly", "--task", "load", "--dry-run", "--json")


def make_runs(count: int) -> None:
    """`count` runs; in every third one, extract succeeded and load failed (so did the run)."""
    path = Path(tempfile.mkdtemp(prefix="flow45-bulk-")) / "data.yaml"
    path.write_text(CONFIG)
    store.deploy(load_config(path), actor="bench")
    runs = [store.trigger("data", "nightly", actor="bench") for _ in range(count)]
    failed = runs[::3]
    TaskInstance.update(state="succeeded").where(TaskInstance.run.in_(failed) & (TaskInstance.task == "extract")).execute()
    TaskInstance.update(state="failed").where(TaskInstance.run.in_(failed) & (TaskInstance.task == "load")).execute()
    Run.update(status="failed").where(Run.id.in_(failed)).execute()


def command_seconds(env: dict[str, str], repeat: int) -> tuple[float, str]:
    """The median wall time of the command as an operator runs it, and its output."""
    took, out = [], ""
    for _ in range(repeat):
        started = time.monotonic()
        done = subprocess.run([sys.executable, "-m", "flow45", *COMMAND], env=env, cwd=tempfile.gettempdir(),
                              capture_output=True, text=True, timeout=1800)
        took.append(time.monotonic() - started)
        if done.returncode != 0:
            raise SystemExit(f"flow45 {' '.join(COMMAND)} failed: {done.stderr}")
        out = done.stdout
    return statistics.median(took), out


def plan_seconds(client, repeat: int) -> tuple[float, int]:
    """The median time of the plan alone in this process, and how many reads one plan sent."""
    reads = 0
    if isinstance(client, RemoteClient):
        sent = client._read

        def counted(message):
            nonlocal reads
            reads += 1
            return sent(message)

        client._read = counted
        client.team  # who we are, asked once for the client's life: not the plan's
    took = []
    for _ in range(repeat):
        reads = 0
        started = time.monotonic()
        bulk.select(client, "retry", where=RunFilter(team="data", workflow="nightly"), task="load")
        took.append(time.monotonic() - started)
    return statistics.median(took), reads


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=2000, help="runs of the workflow")
    parser.add_argument("--repeat", type=int, default=3, help="times each is measured (the median is printed)")
    args = parser.parse_args()
    postgres, rabbit = PostgresServer(durable=True).start(), RabbitMQServer()
    try:
        rabbit.start()
        url = postgres.create_database("flow45_bulk")
        settings = Settings(database_url=url, amqp_url=rabbit.amqp_url, teams=TEAMS)
        for argv in plan(settings, {"data-ops": PASSWORD})[0]:
            rabbit.ctl(*argv)
        use_settings(settings)
        connect(url, create=True)
        ensure_schema()
        started = time.monotonic()
        make_runs(args.runs)
        print(f"{args.runs:,} runs made in {time.monotonic() - started:.1f}s")
        bridge = Bridge(settings, batch_size=50)
        thread = threading.Thread(target=bridge.run, daemon=True)
        thread.start()
        while not bridge.consuming:
            time.sleep(0.01)
        parts = urlsplit(rabbit.amqp_url)
        ops = f"amqp://data-ops:{PASSWORD}@{parts.hostname}:{parts.port}/%2F"
        base = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": tempfile.gettempdir(), "PYTHONPATH": str(ROOT)}
        remote, remote_out = command_seconds({**base, "FLOW45_AMQP_URL": ops}, args.repeat)
        local, local_out = command_seconds({**base, "FLOW45_DATABASE_URL": url}, args.repeat)
        if remote_out != local_out:
            raise SystemExit("the remote and the local plan differ")
        print(f"flow45 {' '.join(COMMAND)}: remote {remote:.2f}s, local {local:.2f}s (median of {args.repeat}, "
              "the interpreter's start included)")
        client = RemoteClient(ops, timeout=600)
        remote_plan, reads = plan_seconds(client, args.repeat)
        client.close()
        local_plan, _ = plan_seconds(LocalClient("bench", team="data"), args.repeat)
        print(f"the plan alone: remote {remote_plan:.2f}s in {reads:,} reads, local {local_plan:.2f}s")
        bridge.stop()
        thread.join(10)
    finally:
        rabbit.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
