"""The `reports` team's workers (examples/config/reports.yaml) written with the SDK.

    python examples/reports_worker.py --concurrency 4

With FLOW45_AMQP_URL set (a worker user of team reports), it works over RabbitMQ; without it, on
the embedded default's database through the local transport. SIGTERM or Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import argparse
import logging
import socket
import time
from pathlib import Path

from bridge.sdk import PermanentError, Task, Worker, load_types, run_forever, transport_from_settings
from flow45.messages import UndoNotice

CONFIG = Path(__file__).resolve().parent / "config"
types = load_types(CONFIG, "reports")
log = logging.getLogger("reports-worker")


def build(worker: Worker, pause: float = 0.05) -> Worker:
    """Register the team's handlers on `worker` (every function but the human approval)."""

    @worker.handler("extract_sales")
    def extract_sales(task: Task) -> types.SalesExtract:
        month = task.params.get("month") or "latest"
        task.progress(50, f"querying sales for {month}")
        time.sleep(pause)
        return types.SalesExtract(uri=f"file:///data/sales-{month}.parquet", rows=48213)

    @worker.handler("render_pdf")
    def render_pdf(task: Task, sales: types.SalesExtract) -> types.Document:
        if sales.rows == 0:
            task.skip("no sales: nothing to render")
        for page in (4, 8, 12):
            time.sleep(pause)
            task.progress(100 * page / 12, f"page {page} of 12")
        return types.Document(uri=sales.uri.replace(".parquet", f".v{task.attempt}.pdf"), pages=12)

    @worker.handler("publish_document")
    def publish_document(task: Task, document: types.Document, approval: types.Approval) -> types.Document:
        if not approval.approved:
            raise PermanentError(f"{approval.reviewer} did not approve: {approval.comment or 'no reason given'}")
        return types.Document(uri=document.uri.replace("/data/", "/published/"), pages=document.pages)

    @worker.on_undo("publish_document")
    def unpublish(notice: UndoNotice) -> None:
        log.info("withdrawing %s (%s)", notice.output["uri"], notice.reason)

    @worker.handler("load_partition")
    def load_partition(task: Task) -> types.Partition:
        region = task.name.removeprefix("load_")
        time.sleep(pause)
        return types.Partition(region=region, uri=f"file:///data/{region}.parquet", rows=1000)

    @worker.handler("summarize_partitions")
    def summarize_partitions(
        task: Task, emea: types.Partition | None, americas: types.Partition | None, apac: types.Partition | None,
    ) -> types.Summary:
        parts = [p for p in (emea, americas, apac) if p is not None]  # a skipped load passes None
        return types.Summary(uri="file:///data/summary.csv", total_rows=sum(p.rows for p in parts), partitions=parts)

    @worker.handler("notify_team")
    def notify_team(task: Task, summary: types.Summary) -> types.Document:
        log.info("%d rows over %d regions", summary.total_rows, len(summary.partitions))
        return types.Document(uri="mailto:reports@example.org", pages=1)

    return worker


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--name", default=f"reports-{socket.gethostname()}")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    worker = build(Worker(transport_from_settings("reports", args.name)))
    run_forever(worker, concurrency=args.concurrency)


if __name__ == "__main__":
    main()
