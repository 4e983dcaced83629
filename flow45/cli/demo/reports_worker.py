"""The `reports` team's workers (examples/config/reports.yaml), written with the SDK.

    python examples/reports_worker.py --output reports-output --concurrency 4   (runs this module)

Two pipelines, each with its handlers below; every file they write lands under --output:

- monthly_report, a document pipeline: `extract_sales` writes the month's sales as CSV,
  `render_pdf` renders them as a PDF, an operator approves it (a human task: no handler here), and
  `publish_document` copies it to published/. Its task says `undo: notify`: when an operator undoes
  a publish that succeeded (or the render before it), `unpublish` gets an undo notice with the
  archived output and deletes the published file.
- nightly_sales, a data pipeline: `load_partition` writes one region's rows (fan-out: one task per
  region), `summarize_partitions` reads them all and writes a summary CSV (fan-in), a timer holds
  the run until 06:00, and `notify_team` writes the message it would mail. The summary's month
  starts that month's monthly_report (a connected workflow).

Outputs are small and operational (a file:// URI, a row count, a checksum), never the data itself.
With FLOW45_AMQP_URL set (a worker user of team reports) it works over RabbitMQ; without it, on
the embedded default's database through the local transport. SIGTERM or Ctrl-C stops it cleanly.
"""

from __future__ import annotations

import argparse
import csv
import datetime as dt
import hashlib
import logging
import random
import shutil
import socket
import time
from pathlib import Path
from typing import Iterable
from urllib.parse import unquote, urlsplit

from bridge.sdk import PermanentError, Task, Worker, load_types, run_forever, transport_from_settings
from flow45.clock import utcnow
from flow45.messages import UndoNotice

CONFIG = Path(__file__).resolve().parent / "config"
types = load_types(CONFIG, "reports")
log = logging.getLogger("reports-worker")

REGIONS = ("emea", "americas", "apac")
PRODUCTS = ("licences", "support", "training", "hardware")


def build(worker: Worker, pause: float = 0.05, output: Path | str = "reports-output",
          fail_first: Iterable[str] = ()) -> Worker:
    """Register the team's handlers on `worker` (every function but the human approval).

    `pause`: seconds per work step (each task takes a few steps); `output`: the folder files go to;
    `fail_first`: regions whose load fails on its first attempt, to watch Flow45 retry it."""
    out = Path(output).resolve()
    flaky = set(fail_first)

    def step(task: Task, percent: float, message: str) -> None:
        """A step of work, then its progress (which also renews the lease). An attempt that is no
        longer current (its lease expired, or an operator undid it) stops here."""
        time.sleep(pause)
        if not task.progress(percent, message):
            task.raise_if_cancelled()
        log.info("progress of run %s %s: %.0f%%, %s", task.run, task.name, percent, message)

    # ---- the document pipeline: monthly_report --------------------------------------------

    @worker.handler("extract_sales")
    def extract_sales(task: Task) -> types.SalesExtract:
        # The month before the run's tick (a backfill's, or one undone later), not before today here.
        month = task.params.get("month") or _previous_month((task.logical_time or utcnow()).date())
        rows = _month_of_sales(month)
        for week in range(1, 5):
            step(task, week * 25, f"querying sales for {month}: week {week} of 4")
        path = _write_csv(out / "documents" / f"sales-{month}.csv", rows)
        return types.SalesExtract(uri=path.as_uri(), rows=len(rows) - 1)

    @worker.handler("render_pdf")
    def render_pdf(task: Task, sales: types.SalesExtract) -> types.Document:
        if sales.rows == 0:
            task.skip("no sales: nothing to render")
        source = _path(sales.uri)
        if not source.exists():
            raise PermanentError(f"cannot read {sales.uri}: no such file on this machine")
        with source.open(newline="") as f:
            records = list(csv.DictReader(f))
        pages = _report_pages(source.stem.removeprefix("sales-"), records)
        for number in range(1, len(pages) + 1):
            step(task, 100 * number / len(pages), f"page {number} of {len(pages)}")
        target = out / "documents" / f"report-{source.stem.removeprefix('sales-')}.attempt{task.attempt}.pdf"
        _write_pdf(target, pages)
        return types.Document(uri=target.as_uri(), pages=len(pages), checksum=_sha256(target))

    @worker.handler("publish_document")
    def publish_document(task: Task, document: types.Document, approval: types.Approval) -> types.Document:
        if not approval.approved:
            raise PermanentError(f"{approval.reviewer} did not approve: {approval.comment or 'no reason given'}")
        source = _path(document.uri)
        if document.checksum and _sha256(source) != document.checksum:
            raise PermanentError(f"{document.uri} changed since it was rendered and approved")
        step(task, 50, f"approved by {approval.reviewer}; publishing")
        target = out / "published" / (source.name.split(".attempt")[0].removesuffix(".pdf") + ".pdf")
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(source, target)
        step(task, 100, f"published {target.name}")
        log.info("published %s", target)
        return types.Document(uri=target.as_uri(), pages=document.pages, checksum=_sha256(target))

    @worker.on_undo("publish_document")
    def unpublish(notice: UndoNotice) -> None:
        """Compensation: delete the published file, unless it was replaced since (a later publish
        of the same report). Notices come at least once, so a file already gone is fine."""
        path = _path(notice.output["uri"])
        why = f"undo of run {notice.run} {notice.task} by {notice.actor}: {notice.reason}"
        if not path.exists():
            log.info("%s: %s is already gone", why, path)
        elif notice.output.get("checksum") not in (None, _sha256(path)):
            log.info("%s: %s was replaced since; leaving it", why, path)
        else:
            path.unlink()
            log.info("%s: removed the published file %s", why, path)

    # ---- the data pipeline: nightly_sales ---------------------------------------------------

    @worker.handler("load_partition")
    def load_partition(task: Task) -> types.Partition:
        region = task.name.removeprefix("load_")
        rows = _partition_rows(region, task.run)
        for quarter in range(1, 5):
            if quarter == 3 and region in flaky and task.attempt == 1:
                raise ConnectionError(f"sales database of {region}: connection reset by peer")
            step(task, quarter * 25, f"{region}: {quarter * len(rows) // 4} of {len(rows)} rows")
        path = _write_csv(out / "nightly" / f"run-{task.run}" / f"{region}.csv", [("day", "product", "units", "amount"), *rows])
        return types.Partition(region=region, uri=path.as_uri(), rows=len(rows))

    @worker.handler("summarize_partitions")
    def summarize_partitions(
        task: Task, emea: types.Partition | None, americas: types.Partition | None, apac: types.Partition | None,
    ) -> types.Summary:
        parts = [p for p in (emea, americas, apac) if p is not None]  # a skipped load passes None
        table = [("region", "rows", "units", "amount")]
        for number, part in enumerate(parts, start=1):
            with _path(part.uri).open(newline="") as f:
                records = list(csv.DictReader(f))
            table.append((part.region.value, len(records), sum(int(r["units"]) for r in records),
                          round(sum(float(r["amount"]) for r in records), 2)))
            step(task, 100 * number / len(parts), f"read {part.region.value}: {len(records)} rows")
        table.append(("total", *(sum(row[i] for row in table[1:]) for i in (1, 2)),
                      round(sum(row[3] for row in table[1:]), 2)))
        path = _write_csv(out / "nightly" / f"run-{task.run}" / "summary.csv", table)
        day = task.logical_time or utcnow()  # the night it loaded; a run started by hand has none
        return types.Summary(uri=path.as_uri(), total_rows=sum(p.rows for p in parts), partitions=parts,
                             month=f"{day:%Y-%m}")

    @worker.handler("notify_team")
    def notify_team(task: Task, summary: types.Summary) -> types.Document:
        regions = ", ".join(f"{p.region.value} {p.rows}" for p in summary.partitions)  # region: an enum
        text = (f"To: reports@example.org\nSubject: nightly sales, run {task.run}\n\n"
                f"{summary.total_rows} rows loaded ({regions}).\nSummary: {summary.uri}\n")
        step(task, 100, "message written")
        path = out / "nightly" / f"run-{task.run}" / "message.txt"
        path.write_text(text)
        log.info("nightly run %s: %d rows over %d regions, message in %s", task.run, summary.total_rows,
                 len(summary.partitions), path)
        return types.Document(uri=path.as_uri(), pages=1, checksum=_sha256(path))

    return worker


# ---- the data the examples make up, and the files they write ----------------------------------

def _previous_month(day: dt.date) -> str:
    first = day.replace(day=1)
    return f"{first - dt.timedelta(days=1):%Y-%m}"


def _month_of_sales(month: str) -> list[tuple]:
    """A header and one row per day, region and product; the same month always gives the same rows."""
    rng = random.Random(month)
    start = dt.date.fromisoformat(f"{month}-01")
    days = [start + dt.timedelta(days=n) for n in range(31) if (start + dt.timedelta(days=n)).month == start.month]
    rows: list[tuple] = [("day", "region", "product", "units", "amount")]
    for day in days:
        for region in REGIONS:
            for product in PRODUCTS:
                units = rng.randint(0, 40)
                rows.append((day.isoformat(), region, product, units, round(units * rng.uniform(80, 120), 2)))
    return rows


def _partition_rows(region: str, run: int) -> list[tuple]:
    """One row per sale of the region's day; the same region and run always give the same rows."""
    rng = random.Random(f"{region}-{run}")
    rows = []
    for n in range(rng.randint(180, 260)):
        units = rng.randint(1, 30)
        rows.append((f"day-{n // len(PRODUCTS) + 1}", PRODUCTS[n % len(PRODUCTS)], units, round(units * rng.uniform(80, 120), 2)))
    return rows


def _report_pages(month: str, records: list[dict]) -> list[list[str]]:
    """A cover page with the totals per region, then one page per region with its products."""
    def total(rows: list[dict]) -> float:
        return sum(float(r["amount"]) for r in rows)

    cover = [f"Sales report {month}", "", f"{len(records)} sales lines, total {total(records):,.2f}", ""]
    cover += [f"{region:<10} {total([r for r in records if r['region'] == region]):>14,.2f}" for region in REGIONS]
    pages = [cover]
    for region in REGIONS:
        mine = [r for r in records if r["region"] == region]
        page = [f"{region.upper()} - {month}", ""]
        page += [f"{product:<10} {sum(int(r['units']) for r in mine if r['product'] == product):>6} units "
                 f"{total([r for r in mine if r['product'] == product]):>14,.2f}" for product in PRODUCTS]
        pages.append(page)
    return pages


def _write_csv(path: Path, rows: list[tuple]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        csv.writer(f).writerows(rows)
    return path


def _write_pdf(path: Path, pages: list[list[str]]) -> None:
    """A minimal PDF: one page of Helvetica text per list of lines."""
    def text(line: str) -> str:
        return line.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")

    objects = [b"<< /Type /Catalog /Pages 2 0 R >>", b"", b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"]
    kids = []
    for lines in pages:
        stream = ("BT /F1 12 Tf 64 770 Td 18 TL " + " ".join(f"({text(line)}) '" for line in lines) + " ET").encode(
            "latin-1", "replace")
        objects.append(b"<< /Length %d >>\nstream\n%s\nendstream" % (len(stream), stream))
        objects.append(b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 595 842] /Contents %d 0 R "
                       b"/Resources << /Font << /F1 3 0 R >> >> >>" % len(objects))
        kids.append(len(objects))
    objects[1] = b"<< /Type /Pages /Kids [%s] /Count %d >>" % (b" ".join(b"%d 0 R" % k for k in kids), len(kids))
    data, offsets = bytearray(b"%PDF-1.4\n"), []
    for number, body in enumerate(objects, start=1):
        offsets.append(len(data))
        data += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(data)
    data += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    data += b"".join(b"%010d 00000 n \n" % offset for offset in offsets)
    data += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n" % (len(objects) + 1, xref) + b"%%EOF\n"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(bytes(data))


def _path(uri: str) -> Path:
    parts = urlsplit(uri)
    if parts.scheme != "file":
        raise PermanentError(f"{uri}: this example reads file:// URIs only")
    return Path(unquote(parts.path))


def _sha256(path: Path) -> str:
    return "sha256:" + hashlib.sha256(path.read_bytes()).hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--concurrency", type=int, default=4, help="tasks at once (default 4)")
    parser.add_argument("--name", default=f"reports-{socket.gethostname()}", help="the worker's name in Flow45")
    parser.add_argument("--output", default="reports-output", help="folder for the files (default ./reports-output)")
    parser.add_argument("--pause", type=float, default=0.5, help="seconds per work step (default 0.5)")
    parser.add_argument("--fail-first", action="append", default=[], choices=REGIONS, metavar="REGION",
                        help="fail the first attempt of this region's load, to watch a retry")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    worker = build(Worker(transport_from_settings("reports", args.name)), pause=args.pause, output=args.output,
                   fail_first=args.fail_first)
    run_forever(worker, concurrency=args.concurrency)


if __name__ == "__main__":
    main()
