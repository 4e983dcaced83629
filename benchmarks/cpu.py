"""CPU time of the benchmark's processes, read from /proc: a process with all its descendants
(PostgreSQL's backends and WAL writer under the postmaster, the Erlang VM under rabbitmq-server),
children that already exited included (their parent's cutime and cstime)."""

from __future__ import annotations

import os
from pathlib import Path

TICKS = os.sysconf("SC_CLK_TCK")


def _stat(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None


def _children() -> dict[int, list[int]]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and (fields := _stat(int(entry.name))) is not None:
            children.setdefault(int(fields[1]), []).append(int(entry.name))
    return children


def seconds(pid: int, children: dict[int, list[int]] | None = None) -> float:
    """User plus system seconds of `pid` and everything under it, exited children included."""
    children = _children() if children is None else children
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        fields = _stat(current)
        if fields is None:
            continue
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        todo.extend(children.get(current, ()))
    return total / TICKS


def sample(pids: dict[str, int]) -> dict[str, float]:
    """CPU seconds so far of each named process tree."""
    children = _children()
    return {name: seconds(pid, children) for name, pid in pids.items()}


def per_instance(before: dict[str, float], after: dict[str, float], instances: int) -> dict[str, float]:
    """CPU milliseconds per instance of each process tree between the two samples."""
    return {name: (after[name] - before[name]) * 1000 / instances for name in before}
