"""Simulated remote dashboards for `benchmarks/e2e.py --dashboards N`: N operators' dashboards
reading through the bridge (read RPCs on flow45.read) while the workers' hops are measured, to show
that the reads do not move the hop latency.

Each dashboard has a thread and a broker connection of its own (a `RemoteClient`, as `flow45 tui`
uses) and reads in bursts, as an operator moving about does: the first page of runs with the counts
per status, the newest run with its instances and its newest events, one of its instances, and the
ledger since the last burst; then it pauses. They run in one process of their own, beside the
benchmark's (a dashboard runs on an operator's machine, not in the bridge):

    python benchmarks/dashboards.py OPERATOR_AMQP_URL COUNT [PAUSE_SECONDS]

It prints `ready` once every dashboard has answered a first burst, reads until its standard input
closes, then prints one JSON line: the reads made and their latencies.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAUSE = 1.0  # seconds between a dashboard's bursts
PAGE = 100  # runs per page, as the dashboard reads them


def burst(client, after: int) -> tuple[int, list[float]]:
    """One burst of a dashboard's reads; (the newest ledger id seen, each read's seconds)."""
    from flow45.client import RunFilter

    took: list[float] = []

    def timed(read: Callable):
        started = time.perf_counter()
        found = read()
        took.append(time.perf_counter() - started)
        return found

    runs = timed(lambda: client.runs(RunFilter(), limit=PAGE))
    timed(lambda: client.status_counts(RunFilter()))
    if runs:
        run = timed(lambda: client.run(runs[0].id))
        timed(lambda: client.tail_events(run=run.id, n=300))
        if run.instances:
            timed(lambda: client.instance(run.instances[len(run.instances) // 2].id))
    events = timed(lambda: client.events(after, limit=500))
    return (events[-1].id if events else after), took


def dashboard(url: str, pause: float, stop: threading.Event, ready: threading.Barrier, took: list[float],
              failures: list[str]) -> None:
    from bridge.remote import RemoteClient
    from flow45.errors import Flow45Error

    client = RemoteClient(url, timeout=30)
    try:
        after = client.latest_event_id()
        after, first = burst(client, after)
        took.extend(first)
        ready.wait()
        while not stop.wait(pause):
            after, more = burst(client, after)
            took.extend(more)
    except Flow45Error as exc:
        failures.append(exc.message)
        ready.abort()
    except threading.BrokenBarrierError:  # another dashboard could not start
        pass
    finally:
        client.close()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3):
        print(__doc__, file=sys.stderr)
        return 2
    url, count, pause = argv[0], int(argv[1]), float(argv[2]) if len(argv) == 3 else PAUSE
    stop, ready = threading.Event(), threading.Barrier(count + 1)
    took: list[float] = []
    failures: list[str] = []
    threads = [threading.Thread(target=dashboard, args=(url, pause, stop, ready, took, failures), daemon=True)
               for _ in range(count)]
    for thread in threads:
        thread.start()
    try:
        ready.wait(timeout=60)
    except threading.BrokenBarrierError:
        print(json.dumps({"failures": failures or ["the dashboards did not start within 60 s"]}), flush=True)
        return 1
    print("ready", flush=True)
    started, before = time.monotonic(), len(took)
    sys.stdin.read()  # until the benchmark closes it
    stop.set()
    for thread in threads:
        thread.join(timeout=30)
    reads = sorted(took[before:])
    print(json.dumps({"reads": len(reads), "seconds": time.monotonic() - started, "failures": failures,
                      "p50_ms": 1000 * reads[len(reads) // 2] if reads else None,
                      "p99_ms": 1000 * reads[min(len(reads) - 1, int(0.99 * len(reads)))] if reads else None}),
          flush=True)
    return 0


def with_dashboards(count: int, url: str, phase: Callable[[], None],
                    processes: Callable[[], dict[str, int]] | None = None) -> None:
    """Run `phase` (the benchmark's latency phase); with `count` dashboards, run it first without any,
    then again while they read, so the two figures come from one sitting. With `processes` (name ->
    pid), each run also prints the CPU those processes spent per second meanwhile: what the reads
    cost the bridge."""
    if count <= 0:
        phase()
        return
    print("without dashboards:")
    _with_cpu(phase, processes)
    process = subprocess.Popen([sys.executable, str(Path(__file__)), url, str(count)], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout.readline().strip() != "ready":
            raise SystemExit(f"dashboards: did not start: {process.stdout.read().strip() or 'no answer'}")
        print(f"with {count} remote dashboards reading in bursts (every {PAUSE:g} s each):")
        _with_cpu(phase, processes)
        summary, _ = process.communicate("", timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    found = json.loads(summary)
    line = (f"  the dashboards made {found['reads']:,} reads ({found['reads'] / found['seconds']:.0f}/s) meanwhile, "
            f"p50 {found['p50_ms'] or 0:.1f} ms, p99 {found['p99_ms'] or 0:.1f} ms")
    if found["failures"]:
        line += f"; failures: {'; '.join(found['failures'][:3])}"
    print(line)


def _with_cpu(phase: Callable[[], None], processes: Callable[[], dict[str, int]] | None) -> None:
    if processes is None:
        phase()
        return
    from benchmarks import cpu

    before, started = cpu.sample(processes()), time.monotonic()
    phase()
    after, seconds = cpu.sample(processes()), time.monotonic() - started
    print("  CPU meanwhile, seconds per second: "
          + ", ".join(f"{name} {(after[name] - before[name]) / seconds:.2f}" for name in before))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
