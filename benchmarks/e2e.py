"""End-to-end benchmark: PostgreSQL (fsync on) and RabbitMQ on loopback, the bridge in its own
process, no-op SDK workers in another. Prints, in the same sitting:

- the machine's ceilings: a bare PostgreSQL commit (one connection: commits/s and its latency, back
  to back and at the latency phase's rate), publish and consume rates of bare pika (persistent
  messages), and the broker-only round trip of a hop (a quorum queue, an echo process that passes each
  message on to a durable queue, a consumer), also with a bare commit in it (the echo commits a row
  before passing each message on: the least a hop that keeps its promise can cost);
- task instances completed per second end to end (chains and fan-out/fan-in), and the CPU each
  process spent per instance meanwhile (the bridge, PostgreSQL's processes, RabbitMQ's, the worker);
  in both phases, how busy the cores were (and how much the host took) and how long each process's
  threads, ready to run, waited for a core;
- latency from an upstream submit to the downstream offer reaching a waiting worker (p50, p99)
  at a fixed moderate load, beside the broker-only round trip with a bare commit in it, and beside
  the round trip plus one bare commit (at that rate, and back to back); PostgreSQL's commits and WAL
  flushes per second meanwhile, and how much of the time the WAL was flushing; and the broker-only
  round trip with a bare commit in it again, a few a second while the phase runs: the least a hop
  that keeps its promise costs on the machine and the disk that load keeps busy, and the hop against it
  (with a 95% interval for that ratio: are the hops dearer at all);
- in both phases, the bridge's own account of its batches (flow45_batch_phase_seconds, read from its
  metrics port): the mean time per batch waiting for a committer, applying (the locking read and the
  rules), committing (the writes with the COMMIT) and answering, beside a bare commit.

With --fsync-delay-ms, one sitting per delay, each on a fresh PostgreSQL whose WAL flushes take that
much longer (benchmarks/slow_disk.py): the figures of a slower disk than this machine's.

    python benchmarks/e2e.py [--runs 200] [--concurrency 128] [--rate 20] [--seconds 10]
                             [--fsync-delay-ms 0.5,2,5] [--bridges 1] [--connections 4] [--dashboards 5]
                             [--dashboard-mode live|burst|follow|idle] [--rounds 1] [--offers-only]
                             [--unix-socket]

The workers take a downstream attempt in the answer to their submit where they can (eager
dispatch, bridge/sdk/worker.py); a hop is then the submit's round trip. With --offers-only they take
every task from its offer, a claim's round trip later.

With --unix-socket, every process (the ceilings' bare commits too) reaches PostgreSQL through its
Unix socket, as an installation on one machine would: each round trip costs less than over loopback TCP.

With --bridges 2, two bridge processes consume the one inbox (one of them relays the outbox and
publishes the event stream); their CPU is shown apart.

With --dashboards 5, the latency phase runs twice: without, then with 5 remote dashboards reading
through the bridge (benchmarks/dashboards.py): following the team's event stream as `flow45 tui`
does (--dashboard-mode live, the default), reading a fixed burst every second each (burst), or
taking the event stream with no reads at all (follow: the part of a live dashboard that is not reads),
or connected and doing nothing (idle: the control, whose phases differ only by chance).
With --rounds N, the two phases alternate N times and the hops of all rounds are pooled at the end:
the machine's speed drifts within minutes, and alternating lays that drift on both alike.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from peewee import fn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks import cpu, phases, wal  # noqa: E402
from benchmarks.ceilings import (RoundTripsMeanwhile, broker_round_trip, paced_commits, pika_rates,  # noqa: E402
                                 postgres_commits)
from benchmarks.dashboards import MODES, with_dashboards  # noqa: E402
from benchmarks.slow_disk import build_library, postgres_server  # noqa: E402
from bridge.setup_broker import plan  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.clock import utcnow  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import atomic, connect  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Run  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from tests.harness.ports import free_port  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.rabbitmq import RabbitMQServer  # noqa: E402

TEAMS = {"bench": {"users": {"bench-worker": "worker", "bench-ops": "operator"}}}
PASSWORD = "bench-secret"


@dataclass
class Sitting:
    """The servers and Flow45's processes of one sitting."""

    postgres: PostgresServer
    rabbit: RabbitMQServer
    db_url: str = ""
    env: dict[str, str] = field(default_factory=dict)
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)  # name -> Flow45's processes
    teams: dict = field(default_factory=lambda: TEAMS)  # the installation's teams and their broker users
    timings: Path | None = None  # the workers' offer and submit times
    commit_ms: float = 0.0  # a bare commit's latency (p50), back to back, measured with the ceilings
    paced_commit_ms: float = 0.0  # the same at the latency phase's rate, idle between
    round_trips: list[float] = field(default_factory=list)  # broker-only round trips (ms, sorted)
    committed_trips: list[float] = field(default_factory=list)  # the same, the echo committing a row for each
    metrics_port: int = 0  # the first bridge's

    def cpu_pids(self) -> dict[str, int]:
        """The process trees whose CPU is counted per instance."""
        ours = {name: p.pid for name, p in self.processes.items() if name.startswith(("bridge", "worker"))}
        return {**ours, "PostgreSQL": self.postgres.postmaster_pid(), "RabbitMQ": self.rabbit.proc.pid}

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        self.rabbit.stop()
        self.postgres.stop()


def start_servers(delay_ms: float | None, library: Path | None, unix_socket: bool = False,
                  teams: dict | None = None) -> Sitting:
    """PostgreSQL (its WAL flushes `delay_ms` slower, if given) and RabbitMQ, set up for the bench team
    (and `teams`, if given, each user's password PASSWORD). With `unix_socket`, every process reaches
    PostgreSQL through its Unix socket, not loopback TCP."""
    sitting = Sitting(postgres_server(delay_ms, library).start(), RabbitMQServer(), teams={**TEAMS, **(teams or {})})
    try:
        sitting.rabbit.start()
        sitting.db_url = sitting.postgres.create_database("flow45_bench")
        if unix_socket:
            pg = sitting.postgres
            sitting.db_url = f"postgresql://{pg.user}@{quote(str(pg.dir), safe='')}:{pg.port}/flow45_bench"
        settings = Settings(database_url=sitting.db_url, amqp_url=sitting.rabbit.amqp_url, teams=sitting.teams)
        users = {user for team in sitting.teams.values() for user in team["users"]}
        for argv in plan(settings, dict.fromkeys(users, PASSWORD))[0]:
            sitting.rabbit.ctl(*argv)
        use_settings(settings)
        connect(sitting.db_url, create=True)
        ensure_schema()
        store.deploy(load_config(ROOT / "benchmarks" / "bench_config.yaml"), actor="bench")
    except BaseException:
        sitting.stop()
        raise
    return sitting


def measure_ceilings(sitting: Sitting, args: argparse.Namespace) -> None:
    """Print the machine's ceilings, keeping what the latency phase compares with."""
    commits = postgres_commits(sitting.db_url)
    published, consumed = pika_rates(sitting.rabbit.amqp_url)
    sitting.commit_ms = commits.p50_ms
    rate = args.rate * 5
    sitting.paced_commit_ms = paced_commits(sitting.db_url, rate)
    sitting.round_trips = round_trips = broker_round_trip(sitting.rabbit.amqp_url, rate)
    sitting.committed_trips = committed = broker_round_trip(sitting.rabbit.amqp_url, rate, commit_url=sitting.db_url)
    print(f"machine ceilings: PostgreSQL {commits.per_second:,.0f} commits/s, {commits.p50_ms:.2f} ms each "
          f"(one connection, fsync on), {sitting.paced_commit_ms:.2f} ms each at {rate:.0f}/s; "
          f"pika {published:,.0f} published/s (confirms), {consumed:,.0f} consumed/s "
          f"(acks); broker-only round trip at {rate:.0f}/s p50 {percentile(round_trips, 0.5):.1f} ms, "
          f"p99 {percentile(round_trips, 0.99):.1f} ms; with a bare commit in it (the echo commits a row "
          f"before passing each message on) p50 {percentile(committed, 0.5):.1f} ms, "
          f"p99 {percentile(committed, 0.99):.1f} ms")


def start_flow45(sitting: Sitting, args: argparse.Namespace) -> None:
    """The bridge and the no-op workers, each in a process of its own."""
    rabbit = sitting.rabbit
    sitting.env = {**os.environ, "FLOW45_DATABASE_URL": sitting.db_url, "FLOW45_AMQP_URL": rabbit.amqp_url,
                   "FLOW45_TEAMS": json.dumps(sitting.teams), "PYTHONPATH": str(ROOT)}
    bridge_log = open(os.environ.get("FLOW45_BENCH_BRIDGE_LOG", os.devnull), "w")
    profile = os.environ.get("FLOW45_BENCH_BRIDGE_PROFILE")  # a path: cProfile the bridge (every thread) into it
    wrapper = [str(ROOT / "benchmarks" / "profile_threads.py"), profile] if profile else []
    sitting.metrics_port = free_port()
    for n in range(args.bridges):  # the first one profiled, and read for its batches' phases
        sitting.processes["bridge" if n == 0 else f"bridge {n + 1}"] = subprocess.Popen(
            [sys.executable, *(wrapper if n == 0 else []), "-m", "flow45", "bridge", "run",
             "--connections", str(args.connections),
             *(["--metrics-port", str(sitting.metrics_port)] if n == 0 else [])],
            env=sitting.env, stderr=bridge_log)
    time.sleep(2)
    sitting.timings = start_workers(sitting, args, "bench")
    time.sleep(2)


def start_workers(sitting: Sitting, args: argparse.Namespace, team: str) -> Path:
    """The no-op workers of `team` (its user `TEAM-worker`) in a process of their own; returns the
    file of their timings."""
    timings = Path(tempfile.mkdtemp(prefix="flow45-bench-")) / "timings.jsonl"
    worker_url = sitting.rabbit.amqp_url.replace("guest:guest", f"{team}-worker:{PASSWORD}")
    worker_profile = os.environ.get("FLOW45_BENCH_WORKER_PROFILE")  # a path: cProfile the worker (every thread)
    workers = ([str(ROOT / "benchmarks" / "profile_threads.py"), worker_profile, "-m", "benchmarks.noop_workers"]
               if worker_profile and team == "bench" else [str(ROOT / "benchmarks" / "noop_workers.py")])
    sitting.processes["worker" if team == "bench" else f"worker {team}"] = subprocess.Popen(
        [sys.executable, *workers, worker_url, str(args.concurrency), str(timings),
         "offers" if args.offers_only else "eager", team], env=sitting.env, stderr=subprocess.DEVNULL)
    return timings


def throughput_phase(sitting: Sitting, args: argparse.Namespace) -> None:
    """A burst of runs committed at once, timed from that commit until all finished; with the CPU
    each process spent meanwhile."""
    with atomic():
        run_ids = [store.trigger("bench", "chain", actor="bench") for _ in range(args.runs)]
        run_ids += [store.trigger("bench", "fanout", actor="bench") for _ in range(args.runs)]
    started = utcnow()
    before, batches = cpu.load(sitting.cpu_pids()), phases.read(sitting.metrics_port)
    elapsed = (wait_finished(run_ids, timeout=600) - started).total_seconds()
    after = cpu.load(sitting.cpu_pids())
    batched = phases.describe(batches, phases.read(sitting.metrics_port), sitting.commit_ms)
    spent = cpu.per_instance(before.cpu, after.cpu, instances := args.runs * (5 + 8))
    print(f"throughput: {instances:,} task instances in {elapsed:.1f}s = "
          f"{instances / elapsed:,.0f} instances/s end to end "
          f"({args.runs} chains of 5 and {args.runs} fan-outs of 8, {args.concurrency} worker slots, "
          f"{args.bridges} bridge{'s' if args.bridges > 1 else ''}, {args.connections} connection(s) each)")
    print("CPU per instance: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in spent.items())
          + f"; {sum(spent.values()):.2f} ms in all")
    print("  meanwhile: " + cpu.describe_load(before, after))
    print("  " + batched)


def latency_phase(sitting: Sitting, args: argparse.Namespace) -> list[float]:
    """Chain runs at a fixed moderate rate; the hops (ms) beside the broker-only round trip plus one commit."""
    latency_runs: list[int] = []
    flushed = wal.read()
    before, batches = cpu.load(sitting.cpu_pids()), phases.read(sitting.metrics_port)
    own_before, started = time.process_time(), time.monotonic()
    meanwhile = RoundTripsMeanwhile(sitting.rabbit.amqp_url, sitting.db_url, args.seconds)
    deadline, interval = time.monotonic() + args.seconds, 1.0 / args.rate
    next_at = time.monotonic()
    while time.monotonic() < deadline:
        latency_runs.append(store.trigger("bench", "chain", actor="bench"))
        next_at += interval
        time.sleep(max(0.0, next_at - time.monotonic()))
    wait_finished(latency_runs, timeout=120)
    meanwhile.wait()
    after = cpu.load(sitting.cpu_pids())
    flushes = wal.describe(flushed, wal.read(), sitting.commit_ms)
    batched = phases.describe(batches, phases.read(sitting.metrics_port), sitting.commit_ms)
    load = cpu.describe_load(before, after)
    spent = cpu.per_instance(before.cpu, after.cpu, len(latency_runs) * 5)
    own = (time.process_time() - own_before) / (time.monotonic() - started)  # the triggers and the round trips
    time.sleep(0.5)
    values, granted = latencies(sitting.timings, set(latency_runs))
    started, _ = latencies(sitting.timings, set(latency_runs), until="start")
    p50, p99 = percentile(values, 0.5), percentile(values, 0.99)
    print(f"latency submit -> downstream offer at {args.rate:.0f} chains/s ({args.rate * 5:.0f} instances/s), "
          f"{len(values)} hops ({granted} granted with the submit's answer): p50 {p50:.1f} ms, p99 {p99:.1f} ms, "
          f"max {values[-1]:.1f} ms, mean {statistics.mean(values):.1f} ms")
    print(f"  submit -> downstream handler started (an offer's claim answered, or at once when granted): "
          f"p50 {percentile(started, 0.5):.1f} ms, p99 {percentile(started, 0.99):.1f} ms")
    trip = percentile(sitting.round_trips, 0.5)
    bound, paced = trip + sitting.commit_ms, trip + sitting.paced_commit_ms
    committed = percentile(sitting.committed_trips, 0.5)
    print(f"  p50 against the broker-only round trip with a bare commit in it ({committed:.1f} ms): "
          f"{p50 / committed:.2f}x; against the round trip plus a bare commit at this rate ({paced:.1f} ms): "
          f"{p50 / paced:.2f}x, plus one back to back ({bound:.1f} ms): {p50 / bound:.2f}x; p99/p50 {p99 / p50:.1f}")
    if meanwhile.trips:
        least, its_commit = percentile(meanwhile.trips, 0.5), percentile(meanwhile.commits, 0.5)
        low, high = ratio_interval(values, meanwhile.trips)
        print(f"  meanwhile, the broker-only round trip with a bare commit in it ({meanwhile.rate:.0f}/s, "
              f"{len(meanwhile.trips)} of them): p50 {least:.1f} ms, its commit {its_commit:.2f} ms; "
              f"p50 against that: {p50 / least:.2f}x (95% interval {low:.2f}-{high:.2f}x)")
        brokered = percentile(meanwhile.brokered, 0.5)
        print(f"  meanwhile, those round trips less their own commit (the broker's part under this load): "
              f"p50 {brokered:.1f} ms; the hop p50 less that: {p50 - brokered:.1f} ms, against one bare commit: "
              f"{sitting.commit_ms:.2f} ms back to back, {sitting.paced_commit_ms:.2f} at this rate, "
              f"{its_commit:.2f} in the echo meanwhile")
    print(f"  {batched}")
    print(f"  meanwhile: {load}; the benchmark's own triggers and round trips took {own:.0%} of a core")
    print(f"  {flushes}")
    print("  CPU per instance at this rate, idle work included: " + ", ".join(f"{name} {ms:.2f} ms" for name, ms in spent.items())
          + f"; {sum(spent.values()):.2f} ms in all")
    return values


def wait_finished(run_ids: list[int], timeout: float) -> dt.datetime:
    """When the last of the runs finished, as the store recorded it. Polls slowly: the benchmark must
    not take the CPU it measures."""
    deadline = time.monotonic() + timeout
    finished = Run.status.in_(["succeeded", "failed", "cancelled"])
    while time.monotonic() < deadline:
        left = Run.select().where(Run.id.in_(run_ids) & ~finished).count()
        if left == 0:
            return Run.select(fn.MAX(Run.finished_at)).where(Run.id.in_(run_ids)).scalar()
        time.sleep(0.25)
    raise SystemExit(f"runs did not finish within {timeout:.0f}s")


def latencies(timings_path: Path, run_ids: set[int], until: str = "offer") -> tuple[list[float], int]:
    """The hops (ms, sorted) of these runs' chains, from a submit to its downstream's offer (or grant)
    reaching the worker, or `until="start"` to its handler starting; and how many came with a submit's answer."""
    offers: dict[tuple[int, str], float] = {}
    submits: dict[tuple[int, str], float] = {}
    granted: set[tuple[int, str]] = set()
    ends = ("start",) if until == "start" else ("offer", "granted")
    for line in timings_path.read_text().splitlines():
        kind, run, task, at = json.loads(line)
        if run in run_ids:
            if kind == "submit":
                submits.setdefault((run, task), at)
            elif kind in ends:
                offers.setdefault((run, task), at)
            if kind == "granted":
                granted.add((run, task))
    chain = ["t1", "t2", "t3", "t4", "t5"]
    found = []
    for run in run_ids:
        for upstream, downstream in zip(chain, chain[1:]):
            if (run, upstream) in submits and (run, downstream) in offers:
                found.append((offers[(run, downstream)] - submits[(run, upstream)]) * 1000)
    return sorted(found), len(granted)


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


def ratio_interval(hops: list[float], trips: list[float], resamples: int = 1000) -> tuple[float, float]:
    """A 95% interval for the ratio of the two p50s (bootstrap: both samples drawn again with
    replacement): with a hundred round trips, whether a hop 5% dearer than them is dearer at all."""
    draw = random.Random(0)
    ratios = sorted(statistics.median(draw.choices(hops, k=len(hops))) /
                    statistics.median(draw.choices(trips, k=len(trips))) for _ in range(resamples))
    return percentile(ratios, 0.025), percentile(ratios, 0.975)


def sitting(args: argparse.Namespace, delay_ms: float | None, library: Path | None) -> None:
    """Every phase on fresh servers."""
    if delay_ms is not None:
        print(f"== WAL flushes {delay_ms:g} ms slower")
    servers = start_servers(delay_ms, library, args.unix_socket)
    try:
        measure_ceilings(servers, args)
        start_flow45(servers, args)
        throughput_phase(servers, args)
        with_dashboards(args.dashboards, servers.rabbit.amqp_url.replace("guest:guest", f"bench-ops:{PASSWORD}"),
                        lambda: latency_phase(servers, args), servers.cpu_pids, args.dashboard_mode, args.rounds)
    finally:
        servers.stop()


def delays(text: str) -> list[float]:
    try:
        values = [float(part) for part in text.split(",") if part.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds separated by commas, such as 0.5,2,5") from None
    if not values or any(v < 0 for v in values):
        raise argparse.ArgumentTypeError(f"{text!r}: give milliseconds (0 or more) separated by commas")
    return values


def latency_options(parser: argparse.ArgumentParser) -> None:
    """The latency phase's options, for the benchmarks that run it."""
    parser.add_argument("--rate", type=float, default=20, help="chain runs per second in the latency phase")
    parser.add_argument("--seconds", type=float, default=10, help="length of the latency phase")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs of each workflow in the throughput phase")
    parser.add_argument("--concurrency", type=int, default=128, help="tasks the workers run at once")
    latency_options(parser)
    parser.add_argument("--fsync-delay-ms", type=delays, metavar="MS[,MS...]",
                        help="one sitting per delay, PostgreSQL's WAL flushes that much slower (e.g. 0.5,2,5)")
    parser.add_argument("--bridges", type=int, default=1, help="bridge processes consuming the one inbox")
    parser.add_argument("--connections", type=int, default=4, help="database connections each bridge commits on")
    parser.add_argument("--dashboards", type=int, default=0, metavar="N",
                        help="the latency phase without, then with N remote dashboards reading through the bridge")
    parser.add_argument("--rounds", type=int, default=1, metavar="N",
                        help="with --dashboards: alternate the phases without and with them N times, then pool the hops")
    parser.add_argument("--dashboard-mode", choices=MODES, default=MODES[0],
                        help="live: each dashboard reads as `flow45 tui` does, on the team's events; "
                             "burst: each reads a fixed burst every second, events or not (the stress case); "
                             "follow: the event stream alone; idle: connected only (the control)")
    parser.add_argument("--unix-socket", action="store_true",
                        help="reach PostgreSQL through its Unix socket (as on a machine that runs both), not loopback TCP")
    parser.add_argument("--offers-only", action="store_true",
                        help="the workers take every task from its offer (no eager dispatch), for comparison")
    args = parser.parse_args()
    library = build_library() if args.fsync_delay_ms else None
    for delay_ms in args.fsync_delay_ms or [None]:
        sitting(args, delay_ms, library)


if __name__ == "__main__":
    main()
