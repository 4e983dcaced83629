"""CPU time of the benchmark's processes, read from /proc: a process with all its descendants
(PostgreSQL's backends and WAL writer under the postmaster, the Erlang VM under rabbitmq-server),
children that already exited included (their parent's cutime and cstime). Also how long their
threads were ready to run but waited for a core, and how busy the machine's cores were (and how
much of them the host took): on a loaded 2-core machine every hop waits in the run queue."""

from __future__ import annotations

import os
from dataclasses import dataclass
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


def _waited_ns(pid: int) -> int:
    """Nanoseconds the live threads of `pid` spent runnable, waiting for a core (schedstat's second field)."""
    total = 0
    try:
        for thread in Path(f"/proc/{pid}/task").iterdir():
            total += int((thread / "schedstat").read_text().split()[1])
    except (OSError, IndexError, ValueError):  # gone meanwhile, or a kernel without schedstats
        pass
    return total


def waits(pids: dict[str, int]) -> dict[str, float]:
    """Seconds so far that each named process tree's live threads waited for a core."""
    children = _children()
    result = {}
    for name, pid in pids.items():
        total, todo = 0, [pid]
        while todo:
            current = todo.pop()
            total += _waited_ns(current)
            todo.extend(children.get(current, ()))
        result[name] = total / 1e9
    return result


def cores() -> list[int]:
    """The machine's cumulative core time by kind (/proc/stat: user nice system idle iowait irq softirq steal)."""
    return [int(field) for field in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]


@dataclass(frozen=True)
class Load:
    """One reading: each process tree's CPU seconds and seconds waited for a core, and the machine's cores."""

    cpu: dict[str, float]
    waits: dict[str, float]
    cores: list[int]


def load(pids: dict[str, int]) -> Load:
    return Load(sample(pids), waits(pids), cores())


def describe_load(before: Load, after: Load) -> str:
    """The cores' use between two readings, and each process's share of its runnable time spent waiting."""
    spent = [b - a for a, b in zip(before.cores, after.cores)]
    total = sum(spent) or 1
    idle, steal = spent[3] + spent[4], spent[7]
    waited = []
    for name in before.cpu:
        ran = after.cpu[name] - before.cpu[name]
        queued = after.waits[name] - before.waits[name]
        if ran + queued > 0:
            waited.append(f"{name} {queued / (ran + queued):.0%}")
    return (f"cores {1 - idle / total:.0%} busy ({steal / total:.0%} taken by the host), {idle / total:.0%} idle; "
            f"share of runnable time spent waiting for a core: " + ", ".join(waited))
