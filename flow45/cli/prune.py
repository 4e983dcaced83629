"""`flow45 prune`: retention of finished runs (flow45.store.prune)."""

from __future__ import annotations

import datetime as dt
import math
from pathlib import Path

from flow45.cli.base import UsageError, _open_store, command, read_settings
from flow45.cli.output import print_json
from flow45.clock import iso, utcnow
from flow45.durations import parse_duration
from flow45.errors import Flow45Error


def _age(text: str) -> dt.timedelta:
    if text.strip().replace(".", "", 1).isdigit():  # "90" as seconds would prune nearly everything
        raise UsageError(f"--finished-before {text}: give the age with its unit, e.g. {text.strip()}d for "
                         f"{text.strip()} days ({text.strip()} alone would be seconds)")
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        raise UsageError(f"--finished-before {text}: {exc}") from None
    if not math.isfinite(seconds) or seconds <= 0:
        raise UsageError(f"--finished-before {text}: the age must be a positive duration, e.g. 90d")
    try:
        return dt.timedelta(seconds=seconds)
    except OverflowError:
        raise UsageError(f"--finished-before {text}: too long ago to be a date") from None


@command("prune")
def cmd_prune(args) -> int:
    from flow45.store.export_file import ExportFailed, ExportFile
    from flow45.store.prune import MESSAGES_KEPT, prune

    age = _age(args.finished_before)
    if args.dry_run and args.export:
        raise UsageError("--dry-run changes and writes nothing: leave out --export")
    now = utcnow()
    try:
        cutoff = now - age
    except OverflowError:
        raise UsageError(f"--finished-before {args.finished_before}: too long ago to be a date") from None
    ledger = read_settings().ledger_retention
    _open_store()
    export = None
    if args.export:
        try:
            export = ExportFile(Path(args.export))  # never over an earlier export
        except FileExistsError:
            raise Flow45Error(f"--export {args.export}: the file exists; name a new one") from None
        except OSError as exc:
            raise Flow45Error(f"--export {args.export}: cannot create it: {exc.strerror}") from None
    try:
        report = prune(cutoff, ledger=ledger, export=export, dry_run=args.dry_run, now=now)
    except ExportFailed as failed:
        done = failed.report
        raise Flow45Error(f"--export {failed}; {done.runs} runs were removed and exported before it, "
                          "the others are kept") from None
    finally:
        if export is not None:
            export.close()
    if args.json:
        print_json(report.to_json())
        return 0
    verb = "would remove" if args.dry_run else "removed"
    print(f"{verb} {report.runs} runs finished before {iso(cutoff)}: {report.instances} instances, "
          f"{report.attempts} attempts, {report.outbox} outbox rows, {report.processed} processed messages")
    print(f"{verb} {report.processed_aged} records of messages about no task instance (triggers, cancels, notes…) "
          f"processed before {iso(min(cutoff, now - MESSAGES_KEPT))}")
    if ledger == "prune":
        print(f"ledger events {verb}: {report.events} (ledger_retention: prune)")
    else:
        print("ledger events kept (ledger_retention: keep)")
    if export is not None:
        print(f"{report.exported} runs exported to {args.export}")
    return 0


def add_parsers(add) -> None:
    p = add("prune", "remove finished runs' rows, oldest first, in small transactions (a pruned run cannot be undone)",
            True)
    p.add_argument("--finished-before", required=True, metavar="AGE",
                   help="prune runs that finished longer ago than this (e.g. 90d, 12h)")
    p.add_argument("--export", metavar="FILE", help="first write each pruned run as one JSON line to FILE (a new file)")
    p.add_argument("--dry-run", action="store_true", help="count what would be removed, change nothing")
