"""Memory over a long steady load: does a process that runs for months keep growing?

PostgreSQL (fsync on) and RabbitMQ on loopback, the bridge, the scheduler and the no-op SDK workers
each in a process of its own, as `benchmarks/e2e.py` starts them. Chain runs are triggered at a fixed
rate for the whole sitting; every few seconds each process's resident memory is read from /proc,
beside the instances finished so far. At the end, each process's growth from the first sample after
the warm-up to the last, per 100 thousand instances, over all the samples and over each half of them:
a leak grows with the work done; a bounded cache grows only until it is full, so its second half is flat.

    python benchmarks/soak.py [--minutes 10] [--rate 40] [--every 30] [--warm-up 60] [--fsync-delay-ms 0]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.e2e import start_flow45, start_servers  # noqa: E402
from benchmarks.slow_disk import build_library  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.db import atomic  # noqa: E402
from flow45.models import TaskInstance  # noqa: E402

CHAIN_LENGTH = 5


def resident_mb(pid: int) -> float:
    """VmRSS of the process, in MB (0 once it is gone)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def finished_instances() -> int:
    return TaskInstance.select().where(TaskInstance.state == "succeeded").count()


def growth_per_100k(samples: list[tuple[float, int, dict[str, float]]], name: str) -> float:
    """MB per 100 thousand instances: the least-squares slope of the samples' resident memory over the
    instances finished (one unlucky sample at either end does not make the figure)."""
    xs = [done for _at, done, _rss in samples]
    ys = [rss[name] for _at, _done, rss in samples]
    mean_x, mean_y = sum(xs) / len(xs), sum(ys) / len(ys)
    spread = sum((x - mean_x) ** 2 for x in xs)
    if spread == 0:
        return 0.0
    return sum((x - mean_x) * (y - mean_y) for x, y in zip(xs, ys)) / spread * 100_000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--minutes", type=float, default=10, help="how long the steady load lasts")
    parser.add_argument("--rate", type=float, default=40, help="chain runs triggered per second")
    parser.add_argument("--every", type=float, default=30, help="seconds between samples")
    parser.add_argument("--warm-up", type=float, default=60, help="seconds before the first sample that counts")
    parser.add_argument("--fsync-delay-ms", type=float, default=None, help="PostgreSQL's WAL flushes that much slower")
    parser.add_argument("--concurrency", type=int, default=128, help="tasks the workers run at once")
    args = parser.parse_args()
    args.bridges, args.connections, args.offers_only = 1, 4, False
    library = build_library() if args.fsync_delay_ms is not None else None
    sitting = start_servers(args.fsync_delay_ms, library)
    try:
        start_flow45(sitting, args)
        sitting.processes["scheduler"] = subprocess.Popen(
            [sys.executable, "-m", "flow45", "scheduler"], env=sitting.env, stderr=subprocess.DEVNULL)
        watched = {name: process.pid for name, process in sitting.processes.items()}
        print(f"steady load: {args.rate:g} chains of {CHAIN_LENGTH} a second for {args.minutes:g} minutes "
              f"({args.rate * CHAIN_LENGTH:g} instances/s); resident memory (MB) every {args.every:g} s")
        print("  seconds  instances  " + "  ".join(f"{name:>9}" for name in watched))
        samples: list[tuple[float, int, dict[str, float]]] = []
        started = next_sample = time.monotonic()
        deadline = started + args.minutes * 60
        next_trigger = started
        while time.monotonic() < deadline:
            with atomic():  # a second's runs in one transaction: the benchmark must not take the CPU it measures
                for _ in range(int(args.rate)):
                    store.trigger("bench", "chain", actor="bench")
            next_trigger += 1.0
            if time.monotonic() >= next_sample:
                at, done = time.monotonic() - started, finished_instances()
                rss = {name: resident_mb(pid) for name, pid in watched.items()}
                print(f"  {at:7.0f}  {done:9,}  " + "  ".join(f"{rss[name]:9.1f}" for name in watched), flush=True)
                if at >= args.warm_up:
                    samples.append((at, done, rss))
                next_sample += args.every
            time.sleep(max(0.0, next_trigger - time.monotonic()))
        if len(samples) < 2:
            raise SystemExit("too few samples after the warm-up: give more --minutes or a shorter --every")
        first, last = samples[0], samples[-1]
        print(f"after the warm-up, {last[1] - first[1]:,} instances in {last[0] - first[0]:.0f} s:")
        half = len(samples) // 2
        for name in watched:
            print(f"  {name}: {first[2][name]:.1f} -> {last[2][name]:.1f} MB, "
                  f"{growth_per_100k(samples, name):+.2f} MB per 100k instances (the samples' slope); "
                  f"first half {growth_per_100k(samples[:half + 1], name):+.2f}, "
                  f"second half {growth_per_100k(samples[half:], name):+.2f}")
    finally:
        sitting.stop()


if __name__ == "__main__":
    main()
