"""The bridge's hot path alone: what one batch of worker messages costs on PostgreSQL (fsync on),
without RabbitMQ or workers. Prints, per batch shape, the wall time (p50, p99) and the round trips
to the server, beside a bare commit on the same server; and the same for a trigger.

    python benchmarks/hot_path.py [--chains 300]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.batch import Delivery, apply_batch  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import atomic, connect, database  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Run, TaskInstance  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402

TEAMS = {"bench": {"users": {"bench-worker": "worker"}}}


def delivery(body: bytes) -> Delivery:
    return Delivery(tag=0, exchange="flow45.in.bench", user_id="bench-worker", message_id=uuid.uuid4().hex,
                    reply_to=None, correlation_id=None, body=body)


def message(kind: str, instance: TaskInstance, **extra) -> bytes:
    import json

    return json.dumps({"type": kind, "instance": instance.id, "token": instance.token, **extra}).encode()


def bench_store(postgres, name: str) -> Settings:
    """A database of its own on `postgres`, bound as the store, with the bench team's workflows."""
    url = postgres.create_database(name)
    settings = Settings(database_url=url, teams=TEAMS)
    use_settings(settings)
    connect(url, create=True)
    ensure_schema()
    store.deploy(load_config(ROOT / "benchmarks" / "bench_config.yaml"), actor="bench")
    return settings


def available(run_ids: list[int]) -> list[TaskInstance]:
    return list(TaskInstance.select().where(TaskInstance.run.in_(run_ids) & (TaskInstance.state == "available"))
                .order_by(TaskInstance.id))


def timed(settings: Settings, batch: list[Delivery]) -> float:
    started = time.perf_counter()
    outcomes = apply_batch(settings, batch).outcomes
    elapsed = (time.perf_counter() - started) * 1000
    refused = [o.refusal for o in outcomes if o.refusal is not None]
    if refused:
        raise SystemExit(f"the benchmark's own message was refused: {refused[0].code}: {refused[0].message}")
    return elapsed


def report(name: str, values: list[float], trips: list[int]) -> None:
    values = sorted(values)
    print(f"  {name:34s} p50 {statistics.median(values):6.2f} ms  p99 {values[int(0.99 * (len(values) - 1))]:6.2f} ms"
          f"  {statistics.mean(trips):4.1f} round trips")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--chains", type=int, default=300, help="chain runs driven one message per batch")
    args = parser.parse_args()
    postgres = PostgresServer(durable=True).start()
    try:
        settings = bench_store(postgres, "flow45_hot_path")
        cursor = database.cursor()
        commits = []
        for _ in range(300):
            started = time.perf_counter()
            with atomic():
                cursor.execute("SELECT 1")
            commits.append((time.perf_counter() - started) * 1000)
        print(f"bare transaction (SELECT 1 + COMMIT): p50 {statistics.median(commits):.2f} ms")

        trips = _Trips()
        triggers: tuple[list[float], list[int]] = ([], [])
        runs = []
        for _ in range(args.chains):  # each in a transaction of its own, as the API and the command line do
            trips.reset()
            started = time.perf_counter()
            runs.append(store.trigger("bench", "chain", actor="bench"))
            triggers[0].append((time.perf_counter() - started) * 1000)
            triggers[1].append(trips.count)
        shapes: dict[str, tuple[list[float], list[int]]] = {"claim, one per batch": ([], []),
                                                            "submit + offer, one per batch": ([], [])}
        for _step in range(5):
            for instance in available(runs):
                for name, body in (("claim, one per batch", message("claim", instance, worker="bench")),
                                   ("submit + offer, one per batch",
                                    message("submit", instance, output={"uri": "noop://", "size": 1}))):
                    trips.reset()
                    shapes[name][0].append(timed(settings, [delivery(body)]))
                    shapes[name][1].append(trips.count)
        with atomic():
            runs = [store.trigger("bench", "chain", actor="bench") for _ in range(args.chains)]
        batched: tuple[list[float], list[int]] = ([], [])
        for _step in range(5):
            instances = available(runs)
            for start in range(0, len(instances), 100):
                chunk = instances[start:start + 100]
                for kind, extra in (("claim", {"worker": "bench"}), ("submit", {"output": {"uri": "noop://", "size": 1}})):
                    trips.reset()
                    elapsed = timed(settings, [delivery(message(kind, i, **extra)) for i in chunk])
                    batched[0].append(elapsed / len(chunk))
                    batched[1].append(trips.count)
        finished = Run.select().where(Run.status == "succeeded").count()
        print("a trigger of a chain run, one per transaction:")
        report("trigger", *triggers)
        print(f"one batch of worker messages ({finished} chain runs of 5 driven to the end):")
        for name, (values, counts) in shapes.items():
            report(name, values, counts)
        report("100 per batch, per message", *batched)
    finally:
        postgres.stop()


class _Trips:
    """Round trips to PostgreSQL: each cursor.execute (a multi-statement string is one)."""

    def __init__(self) -> None:
        self.count = 0
        connection = database.connection()
        trips = self
        base = type(connection.cursor())

        class CountingCursor(base):
            def execute(self, query, vars=None):
                trips.count += 1
                return super().execute(query, vars)

        connection.cursor_factory = CountingCursor  # peewee sends BEGIN and COMMIT through cursors too

    def reset(self) -> None:
        self.count = 0


if __name__ == "__main__":
    main()
