"""Printing for the command line: aligned tables for people, JSON for programs."""

from __future__ import annotations

import datetime as dt
import sys
from typing import Any, Iterable, Sequence

from flow45 import wire


def when(value: dt.datetime | None) -> str:
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M:%S")


def print_json(data: Any) -> None:
    sys.stdout.write(wire.dumps(data, indent=2) + "\n")


def print_table(headers: Sequence[str], rows: Iterable[Sequence[Any]]) -> None:
    text_rows = [["-" if cell is None else str(cell) for cell in row] for row in rows]
    widths = [max([len(h)] + [len(r[i]) for r in text_rows]) for i, h in enumerate(headers)]
    print("  ".join(h.upper().ljust(w) for h, w in zip(headers, widths)).rstrip())
    for row in text_rows:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())


def progress_bar(done: int, total: int, width: int = 12) -> str:
    filled = round(width * done / total) if total else 0
    return "#" * filled + "." * (width - filled) + f" {done}/{total}"


def counts_text(counts: dict[str, int]) -> str:
    return " ".join(f"{state}:{n}" for state, n in sorted(counts.items()))
