"""Processes with the clock pinned: `python -m tests.pinned 2026-12-01T05:30:00Z -m flow45 demo …`.

The clock starts at the given moment and ticks on from there, in every thread of the process. With
`pytest --clock MOMENT` the test process itself is pinned, and `command()` starts the processes a test
spawns at the test's own pinned time, so every process agrees on what time it is."""

from __future__ import annotations

import datetime as dt
import runpy
import sys


def _import_time_machine():
    """time_machine, without the pytest plugin and date parser it imports when it can (0.2-0.4 s of
    each pinned process's start; a pinned process needs neither)."""
    unwanted = [name for name in ("pytest", "dateutil.parser") if name not in sys.modules]
    sys.modules.update(dict.fromkeys(unwanted, None))  # None: an ImportError, which it expects
    try:
        import time_machine
    finally:
        for name in unwanted:
            del sys.modules[name]
    return time_machine


time_machine = _import_time_machine()

ACTIVE = False  # set when pytest runs with --clock


def command(argv: list[str]) -> list[str]:
    """`[sys.executable, …]` as given, or run through this module at the caller's pinned now."""
    if not ACTIVE:
        return argv
    assert argv[0] == sys.executable, argv
    now = dt.datetime.now(dt.timezone.utc).isoformat()
    return [sys.executable, "-m", "tests.pinned", now, *argv[1:]]


def moment_of(text: str) -> dt.datetime:
    moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    if moment.tzinfo is None:
        raise ValueError(f"{text} has no offset; write it in UTC with a trailing Z")
    return moment


def main(argv: list[str]) -> None:
    if len(argv) < 3 or argv[1] not in ("-m", "-c"):
        raise SystemExit("usage: python -m tests.pinned MOMENT (-m MODULE | -c CODE) [ARGS...]")
    moment, how, what, rest = argv[0], argv[1], argv[2], argv[3:]
    with time_machine.travel(moment_of(moment), tick=True):
        if how == "-c":
            sys.argv = ["-c", *rest]
            exec(compile(what, "<string>", "exec"), {"__name__": "__main__"})
        else:
            sys.argv = [what, *rest]
            runpy.run_module(what, run_name="__main__", alter_sys=True)


if __name__ == "__main__":
    main(sys.argv[1:])
