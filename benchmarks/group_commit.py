"""Group commit on a slow disk: one-message batches applied at once on several connections, as the
bridge's committers apply them, on a PostgreSQL whose WAL flushes take `--fsync-delay-ms` longer
(benchmarks/slow_disk.py). Prints batches per second and each batch's latency, per number of
connections, beside a bare commit; each with the batch committing as the bridge does (no
notification) and with a NOTIFY in its transaction, as writers that wake the relay do; then runs of
one task, each submit finishing its run.

PostgreSQL holds one lock over every commit that notifies, its flush included, so notifying commits
flush one at a time; the others share flushes. Runs of one workflow that finish at once share its
lock (only while runs are queued do they take turns, to start them), so they share flushes too.

    python benchmarks/group_commit.py [--fsync-delay-ms 5] [--connections 1,4,8] [--chains 120]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ceilings import postgres_commits  # noqa: E402
from benchmarks.hot_path import available, bench_store, delivery, message  # noqa: E402
from benchmarks.slow_disk import postgres_server  # noqa: E402
from bridge.batch import parse_one  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.clock import utcnow  # noqa: E402
from flow45.db import atomic, database  # noqa: E402
from flow45.models import TaskInstance  # noqa: E402
from flow45.settings import Settings  # noqa: E402
from flow45.store.batch import Item, apply_worker_batch  # noqa: E402

STEPS = {"chain": 5, "single": 1}  # tasks of the workflows driven: a claim and a submit each


def apply_one(settings: Settings, body: bytes, notify: bool) -> float:
    """One message in a transaction of its own; its latency in ms."""
    parsed = parse_one(settings, delivery(body))
    item = Item(parsed.team, parsed.message_id, parsed.message)
    started = time.perf_counter()
    with atomic():
        apply_worker_batch([item], utcnow(), wake_relays=notify)
    elapsed = (time.perf_counter() - started) * 1000
    if item.error is not None:
        raise SystemExit(f"the benchmark's own message was refused: {item.error.code}: {item.error.message}")
    return elapsed


def drive(settings: Settings, runs: list[int], steps: int, notify: bool, latencies: list[float]) -> None:
    """Claim and submit each run's tasks in turn, one message per transaction, on this thread's connection."""
    try:
        for _ in range(steps):
            for instance in available(runs):
                latencies.append(apply_one(settings, message("claim", instance, worker="bench"), notify))
                fresh = TaskInstance.get_by_id(instance.id)
                latencies.append(apply_one(settings, message("submit", fresh, output={"uri": "noop://", "size": 1}),
                                           notify))
    finally:
        database.close()


def sitting(settings: Settings, connections: int, chains: int, notify: bool, workflow: str = "chain") -> str:
    with atomic():
        runs = [store.trigger("bench", workflow, actor="bench") for _ in range(chains * STEPS["chain"] // STEPS[workflow])]
    shares = [runs[n::connections] for n in range(connections)]  # no two connections touch one run
    latencies: list[list[float]] = [[] for _ in shares]
    threads = [threading.Thread(target=drive, args=(settings, share, STEPS[workflow], notify, out))
               for share, out in zip(shares, latencies)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    values = sorted(v for out in latencies for v in out)
    return (f"{len(values) / elapsed:7.0f} batches/s, p50 {statistics.median(values):6.2f} ms, "
            f"p99 {values[int(0.99 * (len(values) - 1))]:6.2f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fsync-delay-ms", type=float, default=5.0, help="extra time each WAL flush takes")
    parser.add_argument("--connections", default="1,4,8", help="numbers of connections committing at once")
    parser.add_argument("--chains", type=int, default=120, help="chain runs driven per sitting")
    args = parser.parse_args()
    try:
        counts = [int(part) for part in args.connections.split(",") if part.strip()]
    except ValueError:
        raise SystemExit(f"--connections {args.connections!r}: give numbers separated by commas, such as 1,4,8") from None
    if not counts or min(counts) < 1:
        raise SystemExit(f"--connections {args.connections!r}: give numbers of 1 or more")
    postgres = postgres_server(args.fsync_delay_ms).start()
    try:
        settings = bench_store(postgres, "flow45_group_commit")
        commits = postgres_commits(settings.database_url)
        print(f"WAL flushes {args.fsync_delay_ms:g} ms slower; a bare commit on one connection: "
              f"{commits.per_second:,.0f}/s, p50 {commits.p50_ms:.2f} ms")
        for connections in counts:
            for notify in (False, True):
                how = "with NOTIFY" if notify else "as the bridge"
                print(f"  {connections} connection(s), chains, {how:13s} {sitting(settings, connections, args.chains, notify)}")
            print(f"  {connections} connection(s), runs of one task    "
                  f"{sitting(settings, connections, args.chains, False, 'single')}")
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
