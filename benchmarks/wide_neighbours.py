"""What a team's wide runs cost everyone else's hops, end to end. The servers and processes of
`benchmarks/e2e.py` (PostgreSQL with fsync on, RabbitMQ, the bridge, no-op SDK workers); the
latency phase of the bench team's chain runs alone, then again while another team (with workers of
its own) triggers runs of a wide fan-out (one root, then `--tasks` tasks after it) at `--wide-rate`
task instances a second. Prints the chains' hops in both phases and how long each wide run took from
its trigger to its end. With --same-team, the wide runs are the bench team's own, on its workers.

    python benchmarks/wide_neighbours.py [--tasks 2000] [--wide-rate 400] [--rate 20] [--seconds 10] [--same-team]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import e2e  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import database  # noqa: E402
from flow45.models import Run  # noqa: E402


WIDE_TEAM = "wide"


def deploy_wide(tasks: int, team: str) -> None:
    """`wide` for `team`: a root, then `tasks` steps that take its output (beside the bench team's
    workflows, for the bench team)."""
    steps = "\n".join(f"      s{n:05d}: {{function: step, output: Blob, inputs: {{prev: root}}}}" for n in range(tasks))
    bench = (ROOT / "benchmarks" / "bench_config.yaml").read_text()
    text = (bench if team == "bench" else bench.split("workflows:")[0].replace("team: bench", f"team: {team}")
            + "workflows:\n") + (
        f"  wide:\n    max_active_runs: null\n    tasks:\n      root: {{function: start, output: Blob}}\n{steps}\n")
    path = Path(tempfile.mkdtemp(prefix="flow45-wide-")) / f"{team}.yaml"
    path.write_text(text)
    store.deploy(load_config(path), actor="bench")


def trigger_wide(args: argparse.Namespace, stop: threading.Event, triggered: list[tuple[int, float]]) -> None:
    """A wide run every tasks/wide-rate seconds until `stop`."""
    interval = (args.tasks + 1) / args.wide_rate
    try:
        while not stop.is_set():
            triggered.append((store.trigger(args.wide_team, "wide", actor="bench"), time.monotonic()))
            stop.wait(interval)
    finally:
        database.close()  # this thread's connection


def wide_durations(triggered: list[tuple[int, float]], timeout: float) -> list[float]:
    """Seconds from each wide run's trigger to its end (as the store recorded both)."""
    e2e.wait_finished([run for run, _ in triggered], timeout)
    rows = Run.select(Run.created_at, Run.finished_at).where(Run.id.in_([run for run, _ in triggered]))
    return sorted((r.finished_at - r.created_at).total_seconds() for r in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=2000, help="steps of the wide fan-out (at most 4999)")
    parser.add_argument("--wide-rate", type=float, default=400, help="wide task instances triggered a second")
    parser.add_argument("--same-team", action="store_true", help="the wide runs are the bench team's own")
    e2e.latency_options(parser)
    args = parser.parse_args()
    args.wide_team = "bench" if args.same_team else WIDE_TEAM
    if not 64 < args.tasks < 5000 or args.wide_rate <= 0:
        parser.error("--tasks: from 65 to 4999; --wide-rate: more than 0")
    args.bridges, args.connections, args.concurrency, args.offers_only = 1, 4, 128, False
    other = {} if args.same_team else {WIDE_TEAM: {"users": {f"{WIDE_TEAM}-worker": "worker"}}}
    servers = e2e.start_servers(None, None, teams=other)
    try:
        e2e.measure_ceilings(servers, args)
        deploy_wide(args.tasks, args.wide_team)
        e2e.start_flow45(servers, args)
        if other:
            e2e.start_workers(servers, args, WIDE_TEAM)
        print("== chains alone")
        e2e.latency_phase(servers, args)
        print(f"== chains beside the {args.wide_team} team's wide runs of {args.tasks + 1:,} tasks, "
              f"{args.wide_rate:,.0f} wide instances/s")
        stop, triggered = threading.Event(), []
        wide = threading.Thread(target=trigger_wide, args=(args, stop, triggered), daemon=True)
        wide.start()
        try:
            e2e.latency_phase(servers, args)
        finally:
            stop.set()
            wide.join()
        took = wide_durations(triggered, timeout=600)
        print(f"wide runs: {len(took)}, each from its trigger to its end: "
              + ", ".join(f"{seconds:.1f} s" for seconds in took))
    finally:
        servers.stop()


if __name__ == "__main__":
    main()
