"""Run a module under cProfile in every thread, and write the merged profile when it exits.

`python -m cProfile` sees only the main thread, and the bridge does its work on others (the IO
loop, the committers, the reads and the event stream): its profile showed only a wait. A process
that ends with `os._exit` (the bridge does when a thread is late to stop) writes it first.

    python benchmarks/profile_threads.py OUT.prof -m MODULE [ARGS...]

Each thread's profile counts that thread's CPU time (`time.thread_time`), not wall time: in a process
of many threads, wall time is mostly waiting (for a queue, the socket, the GIL) and hides the work.
"""

from __future__ import annotations

import cProfile
import os
import pstats
import runpy
import sys
import threading
import time

_profiles: list[cProfile.Profile] = []
_lock = threading.Lock()
_thread_run = threading.Thread.run


def _profiled_run(self: threading.Thread) -> None:
    profile = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(profile)
    profile.enable()
    try:
        _thread_run(self)
    finally:
        profile.disable()


def _write(path: str) -> None:
    with _lock:
        profiles = [p for p in _profiles if p.getstats()]  # threads that ran nothing add nothing
    stats = pstats.Stats(profiles[0])
    for profile in profiles[1:]:
        stats.add(profile)  # a thread still running is cut off here: the process is exiting
    stats.dump_stats(path)


def main() -> None:
    if len(sys.argv) < 4 or sys.argv[2] != "-m":
        raise SystemExit(__doc__)
    path, module = sys.argv[1], sys.argv[3]
    sys.argv = [module, *sys.argv[4:]]
    threading.Thread.run = _profiled_run  # type: ignore[method-assign]
    main_thread = cProfile.Profile(time.thread_time)
    with _lock:
        _profiles.append(main_thread)
    exit_now = os._exit

    def written_then_exit(code: int) -> None:
        _write(path)
        exit_now(code)

    os._exit = written_then_exit  # type: ignore[assignment]
    main_thread.enable()
    try:
        runpy.run_module(module, run_name="__main__", alter_sys=True)
    finally:
        main_thread.disable()
        _write(path)


if __name__ == "__main__":
    main()
