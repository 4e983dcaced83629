"""Simulated remote dashboards for `benchmarks/e2e.py --dashboards N`: N operators' dashboards
reading through the bridge (read RPCs on flow45.read) while the workers' hops are measured, to show
that the reads do not move the hop latency.

Each dashboard has a thread and broker connections of its own (a `RemoteClient`, as `flow45 tui`
uses). The modes:

- `live` (the default): as `flow45 tui` in remote mode reads. On opening, what the runs screen
  reads (the newest ledger id, the workflows, a page of runs and the counts per status), then the
  newest run's page (the run, its spec, its newest events). Then it follows the team's event stream
  with the dashboard's own feed (`tui.live.Feed`), reading what the events changed for both screens
  through the very functions the screens use (`tui.data.changed_runs`, `changed_instances`); and
  every OPEN_EVERY seconds the operator opens the newest run again.
- `follow`: the event stream alone, no reads: what a notification or audit tool costs, and the part
  of a live dashboard's cost that is not its reads.
- `idle`: connected, nothing read or followed: the control. Its phases differ only by chance, so
  what they differ by is the smallest effect a sitting can show.
- `burst`: the stress case. Every PAUSE seconds each dashboard reads the first page of runs with the
  counts per status, the newest run with its instances and its newest events, one of its instances,
  and the ledger since the last burst, whether anything happened or not.

They run in one process of their own, beside the benchmark's, at the lowest CPU priority: a
dashboard runs on an operator's machine, so on this one it takes only the CPU the bridge, the
servers and the workers leave (the CPU it took is printed beside theirs):

    python benchmarks/dashboards.py OPERATOR_AMQP_URL COUNT [live|burst|follow|idle]

It prints `ready` once every dashboard has opened, reads until its standard input closes, then prints
one JSON line: the reads made and their latencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

MODES = ("live", "burst", "follow", "idle")
PAUSE = 1.0  # burst: seconds between a dashboard's bursts
OPEN_EVERY = 5.0  # live: seconds between the operator's openings of the newest run
PAGE = 100  # runs per page, as the dashboard reads them
TAIL = 300  # a run page's newest events, as the dashboard reads them


class Timed:
    """A client whose every read is timed into `took` (seconds); actions and the rest pass through."""

    READS = frozenset({"workflows", "runs", "run", "run_row", "status_counts", "instance", "events", "tail_events",
                       "latest_event_id", "run_spec"})

    def __init__(self, client, took: list[float]):
        self._client, self._took = client, took

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if name not in self.READS:
            return found

        def timed(*args, **kwargs):
            started = time.perf_counter()
            try:
                return found(*args, **kwargs)
            finally:
                self._took.append(time.perf_counter() - started)
        return timed


def burst(client, after: int) -> int:
    """One burst of reads; the newest ledger id seen."""
    from flow45.client import RunFilter

    runs = client.runs(RunFilter(), limit=PAGE)
    client.status_counts(RunFilter())
    if runs:
        run = client.run(runs[0].id)
        client.tail_events(run=run.id, n=TAIL)
        if run.instances:
            client.instance(run.instances[len(run.instances) // 2].id)
    events = client.events(after, limit=500)
    return events[-1].id if events else after


def burst_dashboard(client, stop: threading.Event, ready: threading.Barrier) -> None:
    after = burst(client, client.latest_event_id())
    ready.wait()
    while not stop.wait(PAUSE):
        after = burst(client, after)


class RunsList:
    """The runs screen's state and reads (`tui.screens.runs.RunsScreen`), without the screen."""

    def __init__(self, client):
        from flow45.client import RunFilter
        from tui import data

        self.client, self.filter = client, RunFilter()
        data.teams_and_workflows(client)
        self.loaded = [run.id for run in client.runs(self.filter, limit=data.PAGE)]
        client.status_counts(self.filter)

    def fetch_changes(self, events):
        from tui import data

        return data.changed_runs(self.client, self.filter, frozenset(self.loaded), events)

    def apply_changes(self, events, payload) -> None:
        if payload is not None:
            newest = self.loaded[0] if self.loaded else 0
            self.loaded = sorted((r.id for r in payload[0] if r.id > newest), reverse=True) + self.loaded


class RunPage:
    """A run's screen (`tui.screens.run.RunScreen`): what it reads on opening and on events."""

    def __init__(self, client, run_id: int):
        self.client, self.run_id = client, run_id
        self.size = len(client.run(run_id).instances)
        client.run_spec(run_id)
        client.tail_events(run=run_id, n=TAIL)

    def fetch_changes(self, events):
        from tui import data

        return data.changed_instances(self.client, self.run_id, events, self.size)

    def apply_changes(self, events, payload) -> None:
        pass


class App:
    """What the feed needs of the app: it hands each watcher what it read, as the app does."""

    def post_message(self, message) -> None:
        for watcher, payload, _error in getattr(message, "reads", ()):
            watcher.apply_changes(message.events, payload)


def live_dashboard(client, stop: threading.Event, ready: threading.Barrier) -> None:
    """The runs screen, and the newest run opened on top of it (both live), following the event
    stream; the newest run opened again every OPEN_EVERY seconds (from a thread of its own, with
    its own connection, as the dashboard's UI thread reads apart from its feed)."""
    from tui.live import Feed

    after = client.latest_event_id()
    runs = RunsList(client)
    pages = [RunPage(client, runs.loaded[0])] if runs.loaded else []
    feed = Feed(App(), client, after)
    feed.watch([runs, *pages])
    ready.wait()

    def operator() -> None:
        while not stop.wait(OPEN_EVERY):
            if runs.loaded:
                feed.watch([runs, RunPage(client, runs.loaded[0])])
        client.close()

    threading.Thread(target=operator, daemon=True).start()
    following = threading.Thread(target=feed.run, daemon=True)
    following.start()
    stop.wait()
    feed.stop()
    following.join(timeout=10)


def follower(client, stop: threading.Event, ready: threading.Barrier) -> None:
    """The team's event stream, each event taken and dropped."""
    taken = []
    unsubscribe = client.subscribe(lambda: None, taken.append)
    ready.wait()
    while not stop.wait(1.0):
        taken.clear()
    unsubscribe()


def idle(client, stop: threading.Event, ready: threading.Barrier) -> None:
    """Connected, and nothing else."""
    client.team  # noqa: B018 - one read, to be connected as the others are
    ready.wait()
    stop.wait()


def dashboard(url: str, mode: str, stop: threading.Event, ready: threading.Barrier, took: list[float],
              failures: list[str]) -> None:
    from bridge.remote import RemoteClient
    from flow45.errors import Flow45Error

    client = Timed(RemoteClient(url, timeout=30), took)
    try:
        {"live": live_dashboard, "burst": burst_dashboard, "follow": follower, "idle": idle}[mode](client, stop, ready)
    except Flow45Error as exc:
        failures.append(exc.message)
        ready.abort()
    except threading.BrokenBarrierError:  # another dashboard could not start
        pass
    finally:
        client.close()


def main(argv: list[str]) -> int:
    if len(argv) not in (2, 3) or (len(argv) == 3 and argv[2] not in MODES):
        print(__doc__, file=sys.stderr)
        return 2
    url, count, mode = argv[0], int(argv[1]), argv[2] if len(argv) == 3 else MODES[0]
    os.nice(19)  # standing for operators' machines: what they do here must not take the bridge's CPU
    stop, ready = threading.Event(), threading.Barrier(count + 1)
    took: list[float] = []
    failures: list[str] = []
    threads = [threading.Thread(target=dashboard, args=(url, mode, stop, ready, took, failures), daemon=True)
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


def with_dashboards(count: int, url: str, phase: Callable[[], list[float]],
                    processes: Callable[[], dict[str, int]] | None = None, mode: str = MODES[0],
                    rounds: int = 1) -> None:
    """Run `phase` (the benchmark's latency phase, which returns the hops it measured, in ms); with
    `count` dashboards, run it first without any, then again while they read (`mode`: live or burst),
    so the two figures come from one sitting; `rounds` times over, alternating, and then the hops of
    all rounds pooled, so that the machine's drift falls on both alike. With `processes` (name -> pid),
    each run also prints the CPU those processes spent per second meanwhile: what the reads cost the
    bridge."""
    if count <= 0:
        phase()
        return
    pooled: dict[str, list[float]] = {"without": [], "with": []}
    for round_ in range(rounds):
        if rounds > 1:
            print(f"round {round_ + 1} of {rounds}")
        print("without dashboards:")
        pooled["without"] += _with_cpu(phase, processes)
        pooled["with"] += _phase_with_dashboards(count, url, phase, processes, mode)
    if rounds > 1:
        print(f"all {rounds} rounds pooled:")
        for name, hops in pooled.items():
            hops.sort()
            print(f"  {name} dashboards: {len(hops)} hops, p50 {_rank(hops, 0.5):.1f} ms, p99 {_rank(hops, 0.99):.1f} ms")


def _rank(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))] if values else 0.0


def _phase_with_dashboards(count: int, url: str, phase: Callable[[], list[float]],
                           processes: Callable[[], dict[str, int]] | None, mode: str) -> list[float]:
    process = subprocess.Popen([sys.executable, str(Path(__file__)), url, str(count), mode], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    try:
        if process.stdout.readline().strip() != "ready":
            raise SystemExit(f"dashboards: did not start: {process.stdout.read().strip() or 'no answer'}")
        print(f"with {count} remote dashboards " + {
            "live": "following the event stream, as `flow45 tui` does:",
            "follow": "taking the event stream alone, with no reads:",
            "burst": f"reading in bursts (every {PAUSE:g} s each):",
            "idle": "connected, reading nothing (the control):"}[mode])
        hops = _with_cpu(phase, processes and (lambda: {**processes(), "dashboards": process.pid}))
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
    return hops


def _with_cpu(phase: Callable[[], list[float]], processes: Callable[[], dict[str, int]] | None) -> list[float]:
    if processes is None:
        return phase()
    from benchmarks import cpu

    before, started = cpu.sample(processes()), time.monotonic()
    hops = phase()
    after, seconds = cpu.sample(processes()), time.monotonic() - started
    print("  CPU meanwhile, seconds per second: "
          + ", ".join(f"{name} {(after[name] - before[name]) / seconds:.2f}" for name in before))
    return hops


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
