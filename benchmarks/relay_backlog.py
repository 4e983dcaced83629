"""How the relay drains a backlog of offers, and what it costs another team: one team's TASKS x RUNS
offers are written while the bridge is down (as a trigger storm, or a bridge back from an outage,
leaves them), another team's one offer after them; then the bridge starts. Prints how long the other
team's offer took to reach its queue, how many of the backlog had gone out by then, and the rate at
which the backlog drained, beside the machine's publish ceiling.

    python benchmarks/relay_backlog.py [--runs 20] [--tasks 5000]

PostgreSQL (fsync on) and RabbitMQ are started by the test harness and removed afterwards.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
import time
from pathlib import Path

import pika

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.ceilings import pika_rates  # noqa: E402
from bridge.service import Bridge  # noqa: E402
from bridge.setup_broker import plan  # noqa: E402
from flow45 import names, store  # noqa: E402
from flow45.config import load_config  # noqa: E402
from flow45.db import connect  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402
from tests.harness.rabbitmq import RabbitMQServer  # noqa: E402

TEAMS = {"big": {"users": {"big-worker": "worker"}}, "small": {"users": {"small-worker": "worker"}}}


def deploy(folder: Path, tasks: int) -> None:
    lines = "\n".join(f"      t{i:05d}: {{function: bulk, output: Doc}}" for i in range(tasks))
    (folder / "big.yaml").write_text("team: big\ntypes:\n  Doc: {fields: {uri: string}}\n"
                                     f"workflows:\n  wide:\n    max_active_runs: null\n    tasks:\n{lines}\n")
    (folder / "small.yaml").write_text("team: small\ntypes:\n  Doc: {fields: {uri: string}}\n"
                                       "workflows:\n  one:\n    tasks:\n      t: {function: quick, output: Doc}\n")
    store.deploy(load_config(folder / "big.yaml"), actor="bench")
    store.deploy(load_config(folder / "small.yaml"), actor="bench")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=20, help="runs of the big team's workflow")
    parser.add_argument("--tasks", type=int, default=5000, help="tasks of that workflow (at most max_workflow_tasks)")
    args = parser.parse_args()
    backlog = args.runs * args.tasks
    postgres, rabbit = PostgresServer(durable=True).start(), RabbitMQServer()
    try:
        rabbit.start()
        url = postgres.create_database("flow45_relay")
        settings = Settings(database_url=url, amqp_url=rabbit.amqp_url, teams=TEAMS,
                            offer_queue_max_messages=max(backlog, 1), max_workflow_tasks=max(args.tasks, 1))
        for argv in plan(settings, {"big-worker": "p", "small-worker": "p"})[0]:
            rabbit.ctl(*argv)
        use_settings(settings)
        connect(url, create=True)
        ensure_schema()
        published, _ = pika_rates(rabbit.amqp_url)
        print(f"machine ceiling: pika {published:,.0f} persistent messages published/s (confirms)")
        deploy(Path(tempfile.mkdtemp(prefix="flow45-relay-")), args.tasks)
        started = time.monotonic()
        for _ in range(args.runs):
            store.trigger("big", "wide", actor="bench")
        store.trigger("small", "one", actor="bench")
        print(f"backlog: {backlog:,} offers of team big written in {time.monotonic() - started:.1f}s, "
              "then one of team small")
        bridge = Bridge(settings, batch_size=50)
        thread = threading.Thread(target=bridge.run, daemon=True)
        thread.start()
        connection = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_url))
        channel = connection.channel()

        def waiting(queue: str) -> int:
            return channel.queue_declare(queue, passive=True).method.message_count

        while not bridge.consuming:
            time.sleep(0.01)
        started = time.monotonic()
        while not waiting(names.offer_queue("small", "quick")):
            time.sleep(0.005)
        small_at, ahead = time.monotonic() - started, waiting(names.offer_queue("big", "bulk"))
        while waiting(names.offer_queue("big", "bulk")) < backlog:
            time.sleep(0.05)
        drained = time.monotonic() - started
        print(f"team small's offer reached its queue {small_at * 1000:.0f} ms after the bridge started, "
              f"{ahead:,} of team big's offers ahead of it")
        print(f"team big's backlog drained in {drained:.1f}s: {backlog / drained:,.0f} offers/s")
        connection.close()
        bridge.stop()
        thread.join(10)
    finally:
        rabbit.stop()
        postgres.stop()


if __name__ == "__main__":
    main()
