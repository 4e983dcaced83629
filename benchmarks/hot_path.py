"""The bridge's hot path alone: what one batch of worker messages costs on PostgreSQL (fsync on),
without RabbitMQ or workers. Prints, per batch shape, the wall time (p50, p99), the CPU this process
spent (the bridge's share of the work: parsing, the rules, building statements, reading rows), the
round trips to the server and the WAL it wrote (p50: what each commit gives the disk to flush),
beside a bare commit on the same server; and the same for a trigger.
The shapes: a claim; a submit whose next task is offered; a submit whose next task is granted in its
answer (eager dispatch, the hop of `benchmarks/e2e.py`), its run read, then kept from the batch before
as the bridge keeps it (flow45.store.run_cache: read back after each answer, shown apart); and
batches of 100.

    python benchmarks/hot_path.py [--chains 300]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import uuid
from pathlib import Path
from typing import Any, Callable

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bridge.batch import Delivery, apply_batch  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import atomic, connect, database  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import Run, TaskInstance  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from flow45.store.run_cache import RunCache  # noqa: E402
from flow45.store.unit import read_back  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402

TEAMS = {"bench": {"users": {"bench-worker": "worker"}}}


def delivery(body: bytes) -> Delivery:
    return Delivery(tag=0, exchange="flow45.in.bench", user_id="bench-worker", message_id=uuid.uuid4().hex,
                    reply_to=None, correlation_id=None, body=body)


def message(kind: str, instance: TaskInstance, **extra) -> bytes:
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


class Shape:
    """What one shape costs: wall time, this process's CPU and round trips, per message."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.wall: list[float] = []
        self.cpu: list[float] = []
        self.trips: list[int] = []
        self.wal: list[int] = []

    def timed(self, trips: _Trips, messages: int, work: Callable[[], Any]) -> Any:
        wal = _wal_position()
        trips.reset()
        cpu, started = time.process_time(), time.perf_counter()
        result = work()
        self.wall.append((time.perf_counter() - started) * 1000 / messages)
        self.cpu.append((time.process_time() - cpu) * 1000 / messages)
        self.trips.append(trips.count)
        self.wal.append((_wal_position() - wal) // messages)
        return result

    def batch(self, trips: _Trips, settings: Settings, bodies: list[bytes], kept: RunCache | None = None) -> list:
        """Apply one batch of these messages (taking and giving `kept` runs); returns their answers."""
        outcomes = self.timed(trips, len(bodies), lambda: apply_batch(settings, [delivery(b) for b in bodies],
                                                                      kept=kept).outcomes)
        refused = [o.refusal for o in outcomes if o.refusal is not None]
        if refused:
            raise SystemExit(f"the benchmark's own message was refused: {refused[0].code}: {refused[0].message}")
        return [o.result for o in outcomes]

    def report(self) -> None:
        wall = sorted(self.wall)
        print(f"  {self.name:38s} p50 {statistics.median(wall):6.2f} ms  p99 {wall[int(0.99 * (len(wall) - 1))]:6.2f} ms"
              f"  CPU {statistics.mean(self.cpu):5.2f} ms  {statistics.mean(self.trips):4.1f} round trips"
              f"  WAL {statistics.median(self.wal):6,.0f} B")


OUTPUT = {"uri": "noop://", "size": 1}


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
        trigger = Shape("trigger")
        runs = [trigger.timed(trips, 1, lambda: store.trigger("bench", "chain", actor="bench"))
                for _ in range(args.chains)]  # each in a transaction of its own, as the API and the command line do
        claim, offered = Shape("claim, one per batch"), Shape("submit + offer, one per batch")
        for _step in range(5):
            for instance in available(runs):
                claim.batch(trips, settings, [message("claim", instance, worker="bench")])
                offered.batch(trips, settings, [message("submit", instance, output=OUTPUT)])
        eager = Shape("submit + next granted, one per batch")
        with atomic():
            runs = [store.trigger("bench", "chain", actor="bench") for _ in range(args.chains)]
        for instance in available(runs):
            claim.batch(trips, settings, [message("claim", instance, worker="bench")])
            current = {"instance": instance.id, "token": instance.token}
            while current:  # the worker's next task comes back in the answer, down to the chain's end
                (answer,) = eager.batch(trips, settings, [json.dumps(
                    {"type": "submit", **current, "output": OUTPUT, "next": ["step"]}).encode()])
                current = {k: answer["next"][k] for k in ("instance", "token")} if answer.get("next") else None
        # As the bridge applies them: each batch's run kept, read back once the answer is on its way.
        kept, kept_eager = RunCache(), Shape("the same, its run kept")
        reading_back = Shape("  its run read back, after the answer")
        with atomic():
            runs = [store.trigger("bench", "chain", actor="bench") for _ in range(args.chains)]
        for instance in available(runs):
            claim.batch(trips, settings, [message("claim", instance, worker="bench")], kept)
            read_back(kept)
            current = {"instance": instance.id, "token": instance.token}
            while current:
                (answer,) = kept_eager.batch(trips, settings, [json.dumps(
                    {"type": "submit", **current, "output": OUTPUT, "next": ["step"]}).encode()], kept)
                reading_back.timed(trips, 1, lambda: read_back(kept))
                current = {k: answer["next"][k] for k in ("instance", "token")} if answer.get("next") else None
        batched = Shape("100 per batch, per message")
        with atomic():
            runs = [store.trigger("bench", "chain", actor="bench") for _ in range(args.chains)]
        for _step in range(5):
            instances = available(runs)
            for start in range(0, len(instances), 100):
                chunk = instances[start:start + 100]
                batched.batch(trips, settings, [message("claim", i, worker="bench") for i in chunk])
                batched.batch(trips, settings, [message("submit", i, output=OUTPUT) for i in chunk])
        finished = Run.select().where(Run.status == "succeeded").count()
        print("a trigger of a chain run, one per transaction:")
        trigger.report()
        print(f"worker messages ({finished} chain runs of 5 driven to the end):")
        for shape in (claim, offered, eager, kept_eager, reading_back, batched):
            shape.report()
    finally:
        postgres.stop()


def _wal_position() -> int:
    """Bytes of WAL the server has written so far (this benchmark is its only writer)."""
    (position,) = database.execute_sql("SELECT pg_current_wal_insert_lsn() - '0/0'").fetchone()
    return int(position)


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
