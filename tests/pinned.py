"""Run the flow45 command line with the clock pinned: `python -m tests.pinned 2026-12-01T05:30:00Z demo …`.

The clock starts at the given moment and ticks on from there, in every thread of the process, so a
subprocess test can play a whole demo on the 1st of a month or across New Year."""

from __future__ import annotations

import datetime as dt
import sys

import time_machine

from flow45.cli import main


def run(moment: str, argv: list[str]) -> int:
    start = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if start.tzinfo is None:
        raise SystemExit(f"tests.pinned: {moment} has no offset; write it in UTC with Z")
    with time_machine.travel(start, tick=True):
        return main(argv)


if __name__ == "__main__":
    sys.exit(run(sys.argv[1], sys.argv[2:]))
