"""Printing for the command line: aligned tables for people, JSON for programs."""

from __future__ import annotations

import contextlib
import sys
from typing import Any, Iterable, Iterator, Sequence

from flow45 import wire
from flow45.shown import visible


class _Visible:
    """A text stream whose writes show control characters as escapes; the rest is the stream's."""

    def __init__(self, stream) -> None:
        self._stream = stream

    def write(self, text: str) -> int:
        return self._stream.write(visible(text))

    def writelines(self, lines: Iterable[str]) -> None:
        self._stream.writelines(visible(line) for line in lines)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


@contextlib.contextmanager
def visible_output(enabled: bool = True) -> Iterator[None]:
    """stdout and stderr show control characters as escapes while the command runs."""
    if not enabled:
        yield
        return
    out, err = sys.stdout, sys.stderr
    # None: started with the stream closed (`>&-`); print() then writes nothing, as it did.
    sys.stdout, sys.stderr = (None if out is None else _Visible(out)), (None if err is None else _Visible(err))
    try:
        yield
    finally:
        sys.stdout, sys.stderr = out, err


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
