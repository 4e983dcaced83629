"""What a run of thousands of tasks costs the store, message by message and sweep by sweep, beside a
run of a hundred. A change to one instance locks the run; in a run this process knows to be wide, it
reads its instance alone, and settling the run after a submit, fail or skip reads the states of the
instances not done (one narrow statement) and the pending instances downstream that became ready, so
a message costs about the same at any width, and the scheduler's sweeps read a run once for all of
its instances that came due.

For each width: one claim per batch, one submit per batch, and 50 of each in one batch (wall time
and this process's CPU, the bridge's share); then, in a run of the widest, a tick's worth (500) of
expired leases and of offers sent again, as the scheduler's sweeps take them.

    python benchmarks/wide_runs.py [--widths 100,1000,5000]

PostgreSQL (fsync on) is started by the test harness and removed afterwards.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from benchmarks.relay_backlog import TEAMS, deploy  # noqa: E402
from flow45 import messages as m  # noqa: E402
from flow45 import store  # noqa: E402
from flow45.db import atomic, connect, database  # noqa: E402
from flow45.migrate import ensure_schema  # noqa: E402
from flow45.models import TaskInstance  # noqa: E402
from flow45.settings import Settings, use_settings  # noqa: E402
from flow45.store.batch import Item, apply_worker_batch  # noqa: E402
from flow45.store.schedule_runs import reoffer_lost  # noqa: E402
from tests.harness.postgres import PostgresServer  # noqa: E402

AT = dt.datetime(2026, 12, 5, 12, 0, 0)


def apply(messages: list) -> tuple[float, float]:
    """Wall and CPU milliseconds of one batch."""
    wall, cpu = time.monotonic(), time.process_time()
    with atomic():
        apply_worker_batch([Item("big", None, message) for message in messages], AT)
    return (time.monotonic() - wall) * 1000, (time.process_time() - cpu) * 1000


def claim(row) -> m.Claim:
    return m.Claim(type="claim", instance=row.id, token=row.token, worker="w")


def submit(row) -> m.Submit:
    return m.Submit(type="submit", instance=row.id, token=row.token, output={"uri": "x"})


def instances(run: int) -> list:
    return list(TaskInstance.select(TaskInstance.id, TaskInstance.token)
                .where(TaskInstance.run == run).order_by(TaskInstance.id))


def messages_at(width: int) -> None:
    rows = instances(store.trigger("big", "wide", actor="bench", now=AT))
    alone, together = rows[:40], rows[40:90]
    claims = [apply([claim(row)]) for row in alone]
    submits = [apply([submit(row)]) for row in alone]
    claims_50, submits_50 = apply([claim(row) for row in together]), apply([submit(row) for row in together])

    def show(name: str, figures: list[tuple[float, float]]) -> str:
        return (f"{name} p50 {statistics.median(f[0] for f in figures):.1f} ms "
                f"(CPU {statistics.median(f[1] for f in figures):.1f} ms)")

    print(f"width {width:>5}: {show('claim', claims)}, {show('submit', submits)}; 50 in a batch: "
          f"claims {claims_50[0]:.1f} ms (CPU {claims_50[1]:.1f}), "
          f"submits {submits_50[0]:.1f} ms (CPU {submits_50[1]:.1f})")


def sweeps_at(width: int) -> None:
    run = store.trigger("big", "wide", actor="bench", now=AT)
    rows = instances(run)
    for start in range(0, len(rows), 500):
        apply([claim(row) for row in rows[start:start + 500]])
    started = time.monotonic()
    expired = store.expire_leases(AT + dt.timedelta(hours=1), limit=500)
    print(f"width {width:>5}: {len(expired)} expired leases of one run in one sweep: "
          f"{(time.monotonic() - started) * 1000:.0f} ms")
    run = store.trigger("big", "wide", actor="bench", now=AT)
    database.execute_sql("UPDATE outbox SET sent_at = %s WHERE sent_at IS NULL", (AT,))
    started = time.monotonic()
    again = reoffer_lost(AT + dt.timedelta(hours=1), quiet=60, limit=500)
    print(f"width {width:>5}: {len(again)} offers of one run sent again in one sweep: "
          f"{(time.monotonic() - started) * 1000:.0f} ms")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--widths", default="100,1000,5000", help="tasks of the run, comma separated (at most 5000)")
    args = parser.parse_args()
    widths = [int(w) for w in args.widths.split(",") if w.strip()]
    if not widths or any(not 90 <= w <= 5000 for w in widths):
        parser.error(f"--widths {args.widths!r}: give widths from 90 to 5000, separated by commas")
    postgres = PostgresServer(durable=True).start()
    try:
        for width in widths:
            url = postgres.create_database(f"flow45_wide_{width}")
            use_settings(Settings(database_url=url, teams=TEAMS, max_workflow_tasks=max(widths)))
            connect(url, create=True)
            ensure_schema()
            deploy(Path(tempfile.mkdtemp(prefix="flow45-wide-")), width)
            messages_at(width)
            if width == max(widths):
                sweeps_at(width)
            database.close()
    finally:
        postgres.stop()


if __name__ == "__main__":
    main()
