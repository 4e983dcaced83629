"""End-to-end benchmark: PostgreSQL (fsync on) and RabbitMQ on loopback, the bridge in its own
process, no-op SDK workers in another. Prints, in the same run:

- the machine's ceilings: commits/s of a bare PostgreSQL connection, publish and consume rates
  of bare pika (persistent messages) on the same broker;
- task instances completed per second end to end (chains and fan-out/fan-in);
- latency from an upstream submit to the downstream offer reaching a waiting worker (p50, p99)
  at a fixed moderate load.

    python benchmarks/e2e.py [--runs 200] [--concurrency 32] [--rate 20] [--seconds 10]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pika
import psycopg2
from peewee import fn

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.setup_broker import plan  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.clock import utcnow  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import atomic, connect  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Run  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.rabbitmq import RabbitMQServer  # noqa: E402

TEAMS = {"bench": {"users": {"bench-worker": "worker", "bench-ops": "operator"}}}
PASSWORD = "bench-secret"


def postgres_commits_per_second(url: str, seconds: float = 3.0) -> float:
    connection = psycopg2.connect(url)
    cursor = connection.cursor()
    cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit (id serial primary key, at timestamp)")
    connection.commit()
    count, deadline = 0, time.monotonic() + seconds
    while time.monotonic() < deadline:
        cursor.execute("INSERT INTO bench_commit (at) VALUES (now())")
        connection.commit()
        count += 1
    connection.close()
    return count / seconds


def _publish_with_confirms(amqp_url: str, messages: int) -> float:
    """Persistent messages published on pika's asynchronous connection, confirms tracked by delivery
    tag (as the relay does): messages per second until the last one is confirmed."""
    state = {"acked": 0, "started": 0.0, "done": 0.0}

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel):
        def on_declared(_frame):
            channel.confirm_delivery(on_confirm)
            properties = pika.BasicProperties(delivery_mode=2)
            state["started"] = time.monotonic()
            for _ in range(messages):
                channel.basic_publish("", "bench.ceiling", b'{"noop": true}', properties)

        def on_confirm(frame):
            state["acked"] = frame.method.delivery_tag
            if state["acked"] >= messages:
                state["done"] = time.monotonic()
                channel.connection.close()

        channel.queue_declare("bench.ceiling", durable=True, callback=on_declared)

    connection = pika.SelectConnection(pika.URLParameters(amqp_url), on_open_callback=on_open,
                                       on_close_callback=lambda c, _r: c.ioloop.stop())
    connection.ioloop.start()
    return messages / (state["done"] - state["started"])


def pika_rates(amqp_url: str, messages: int = 20000) -> tuple[float, float]:
    """(published/s with publisher confirms, consumed/s with manual acks), persistent messages."""
    published = _publish_with_confirms(amqp_url, messages)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)
    received = 0
    started = time.monotonic()
    for method, _props, _body in channel.consume("bench.ceiling", inactivity_timeout=2):
        if method is None:
            break
        received += 1
        if received % 100 == 0 or received == messages:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if received == messages:
            break
    consumed = received / (time.monotonic() - started)
    connection.close()
    return published, consumed


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


def latencies(timings_path: Path, run_ids: set[int]) -> list[float]:
    offers: dict[tuple[int, str], float] = {}
    submits: dict[tuple[int, str], float] = {}
    for line in timings_path.read_text().splitlines():
        kind, run, task, at = json.loads(line)
        if run in run_ids:
            (offers if kind == "offer" else submits).setdefault((run, task), at)
    chain = ["t1", "t2", "t3", "t4", "t5"]
    found = []
    for run in run_ids:
        for upstream, downstream in zip(chain, chain[1:]):
            if (run, upstream) in submits and (run, downstream) in offers:
                found.append((offers[(run, downstream)] - submits[(run, upstream)]) * 1000)
    return sorted(found)


def percentile(values: list[float], fraction: float) -> float:
    return values[min(len(values) - 1, int(fraction * len(values)))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=200, help="runs of each workflow in the throughput phase")
    parser.add_argument("--concurrency", type=int, default=128, help="tasks the workers run at once")
    parser.add_argument("--rate", type=float, default=20, help="chain runs per second in the latency phase")
    parser.add_argument("--seconds", type=float, default=10, help="length of the latency phase")
    args = parser.parse_args()

    postgres, rabbit = PostgresServer(durable=True).start(), RabbitMQServer().start()
    processes: list[subprocess.Popen] = []
    try:
        db_url = postgres.create_database("flow45_bench")
        users = {"bench-worker": PASSWORD, "bench-ops": PASSWORD}
        settings = Settings(database_url=db_url, amqp_url=rabbit.amqp_url, teams=TEAMS)
        for argv in plan(settings, users)[0]:
            rabbit.ctl(*argv)
        use_settings(settings)
        connect(db_url, create=True)
        ensure_schema()
        store.deploy(load_config(ROOT / "benchmarks" / "bench_config.yaml"), actor="bench")

        commits = postgres_commits_per_second(db_url)
        published, consumed = pika_rates(rabbit.amqp_url)
        print(f"machine ceilings: PostgreSQL {commits:,.0f} commits/s (fsync on); "
              f"pika {published:,.0f} published/s (confirms), {consumed:,.0f} consumed/s (acks)")

        env = {**os.environ, "FLOW45_DATABASE_URL": db_url, "FLOW45_AMQP_URL": rabbit.amqp_url,
               "FLOW45_TEAMS": json.dumps(TEAMS), "PYTHONPATH": str(ROOT)}
        bridge_log = open(os.environ.get("FLOW45_BENCH_BRIDGE_LOG", os.devnull), "w")
        profile = os.environ.get("FLOW45_BENCH_BRIDGE_PROFILE")  # a path: cProfile the bridge into it
        wrapper = ["-m", "cProfile", "-o", profile] if profile else []
        processes.append(subprocess.Popen([sys.executable, *wrapper, "-m", "flow45", "bridge", "run"], env=env,
                                          stderr=bridge_log))
        time.sleep(2)
        timings = Path(tempfile.mkdtemp(prefix="flow45-bench-")) / "timings.jsonl"
        worker_url = rabbit.amqp_url.replace("guest:guest", f"bench-worker:{PASSWORD}")
        processes.append(subprocess.Popen(
            [sys.executable, str(ROOT / "benchmarks" / "noop_workers.py"), worker_url, str(args.concurrency), str(timings)],
            env=env, stderr=subprocess.DEVNULL))
        time.sleep(2)

        # Throughput: a burst of runs committed at once, timed from that commit until all finished.
        with atomic():
            run_ids = [store.trigger("bench", "chain", actor="bench") for _ in range(args.runs)]
            run_ids += [store.trigger("bench", "fanout", actor="bench") for _ in range(args.runs)]
        started = utcnow()
        elapsed = (wait_finished(run_ids, timeout=600) - started).total_seconds()
        instances = args.runs * (5 + 8)
        print(f"throughput: {instances:,} task instances in {elapsed:.1f}s = "
              f"{instances / elapsed:,.0f} instances/s end to end "
              f"({args.runs} chains of 5 and {args.runs} fan-outs of 8, {args.concurrency} worker slots)")

        # Latency: chain runs at a fixed moderate rate.
        latency_runs: list[int] = []
        deadline, interval = time.monotonic() + args.seconds, 1.0 / args.rate
        next_at = time.monotonic()
        while time.monotonic() < deadline:
            latency_runs.append(store.trigger("bench", "chain", actor="bench"))
            next_at += interval
            time.sleep(max(0.0, next_at - time.monotonic()))
        wait_finished(latency_runs, timeout=120)
        time.sleep(0.5)
        values = latencies(timings, set(latency_runs))
        print(f"latency submit -> downstream offer at {args.rate:.0f} chains/s ({args.rate * 5:.0f} instances/s), "
              f"{len(values)} hops: p50 {percentile(values, 0.5):.1f} ms, p99 {percentile(values, 0.99):.1f} ms, "
              f"max {values[-1]:.1f} ms, mean {statistics.mean(values):.1f} ms")
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
        rabbit.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
