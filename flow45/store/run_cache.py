"""The runs a bridge has just written, kept as the database holds them, so that a run's next message
is applied in one round trip instead of two.

A batch locks its runs and reads them (a round trip) before the rules decide, then sends its writes
with the COMMIT (another). A chain's next message usually comes to the same bridge a few milliseconds
later, for a run nothing else has touched since. So once a batch is committed and answered, its
committer reads its open runs back with each row's version (PostgreSQL's `xmin`: the transaction that
wrote it), and the next batch of those runs takes its rows from here. It still locks the runs, in
the same order, and checks, after the locks, that every row is the version kept here, that no
instance came or went, and that no message of the batch was applied already; all of that goes ahead
of the batch's writes, with its COMMIT. Anything else fails the check, which rolls the whole
transaction back, and the batch is applied again at once, its runs read
(`flow45.store.batch.apply_taking_kept`). So the rules decide on exactly what a fresh read would
have given them.

Kept only while the bridge's connection to the database lasts: a database restored or failed over
could give a row version's number to another row's content."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Callable, Iterable

RUNS_KEPT = 4096  # the most recently written runs; a chain hop finds its run among them
MOST_INSTANCES = 200  # a run with more is not kept: read back after each commit, it would cost more than it saves
# A batch of more runs is not read back: batches that large come from a loaded bridge, whose messages
# wait for a committer anyway, and reading back costs the database and the bridge about as much as
# the locking reads it saves (at 1,300 instances/s, batches of 20: 7% fewer instances/s).
MOST_RUNS_READ_BACK = 4
# Where other writers change the kept runs (another bridge on the same inbox takes every other message
# of a run), most checks fail, and each failure costs a round trip and the batch's work again. So when
# more than a quarter of the last WINDOW batches that took kept runs failed, none is kept for the next
# REST batches, twice as many each time it happens again in a row.
WINDOW, REST, LONGEST_REST = 64, 256, 16384
# A row version is a 32-bit transaction number, which comes round again after about 4 billion
# transactions: a run is kept for minutes at most, never long enough to meet its version's number again.
LONGEST_KEPT = 600.0  # seconds


@dataclass(frozen=True)
class KeptRun:
    rows: list[tuple]  # the engine's rows of the run (instance columns, then the run's), by instance id
    run_version: str  # the run row's xmin
    instance_versions: dict[int, str]  # instance id -> its row's xmin


@dataclass(frozen=True)
class Hit:
    """Kept runs for a batch: their rows, and what the check compares them with."""

    run_ids: list[int]  # in id order, as the locks are taken
    rows: list[tuple]
    versions: list[str]  # "id:xmin" of the runs in id order, then of their instances in id order


class RunCache:
    """Shared by a bridge's committer threads."""

    def __init__(self, size: int = RUNS_KEPT, clock: Callable[[], float] = time.monotonic) -> None:
        # Imported here, by the bridge that keeps runs: prometheus_client would cost every command that
        # imports the store about 30 ms of its start.
        from flow45.metrics import KEPT_RUNS

        self._counted = {outcome: KEPT_RUNS.labels(outcome) for outcome in ("read", "kept", "changed")}
        self._size = size
        self._clock = clock
        self._runs: OrderedDict[int, KeptRun] = OrderedDict()  # the oldest kept first
        self._kept_at: dict[int, float] = {}  # run -> when it was kept (`clock`)
        self._run_of: dict[int, int] = {}  # instance -> run, for the runs kept
        self._lock = threading.Lock()
        self._committing = threading.local()  # each committer's runs to read back once its batch commits
        self.hits = self.misses = self.stale = 0
        self._window_hits = self._window_stale = 0
        self._rest, self._next_rest = 0, REST  # batches left keeping nothing; the next rest's length

    def __len__(self) -> int:
        return len(self._runs)

    def find(self, instance_ids: Iterable[int]) -> Hit | None:
        """The kept runs of these instances, if every one of them is kept."""
        with self._lock:
            run_ids = set()
            for instance_id in instance_ids:
                run_id = self._run_of.get(instance_id)
                if run_id is not None and self._clock() - self._kept_at[run_id] > LONGEST_KEPT:
                    self._drop(run_id)
                    run_id = None
                if run_id is None:
                    self.misses += 1
                    self._counted["read"].inc()
                    return None
                run_ids.add(run_id)
            kept = [(run_id, self._runs[run_id]) for run_id in sorted(run_ids)]
            self.hits += 1
            self._window_hits += 1
            if self._window_hits >= WINDOW:
                self._end_window()
            self._counted["kept"].inc()
        versions = [f"{run_id}:{run.run_version}" for run_id, run in kept]
        instances = sorted((i, v) for _, run in kept for i, v in run.instance_versions.items())
        return Hit([run_id for run_id, _ in kept], [row for _, run in kept for row in run.rows],
                   versions + [f"{i}:{v}" for i, v in instances])

    def keep(self, runs: Iterable[tuple[int, KeptRun]]) -> None:
        with self._lock:
            for run_id, run in runs:
                self._drop(run_id)
                self._runs[run_id], self._kept_at[run_id] = run, self._clock()
                self._run_of.update(dict.fromkeys(run.instance_versions, run_id))
            while len(self._runs) > self._size:
                self._drop(next(iter(self._runs)))

    def after_commit(self, written: Iterable[int], to_keep: list[int]) -> None:
        """In a batch's transaction: its runs are forgotten now (a batch of them that starts before
        they are read back reads them), and `to_keep` read back once it commits (`take_to_keep`),
        unless the cache rests."""
        with self._lock:
            for run_id in written:
                self._drop(run_id)
            if self._rest > 0:
                self._rest -= 1
                to_keep = []
        self._committing.runs = to_keep

    @property
    def resting(self) -> bool:
        return self._rest > 0

    def _end_window(self) -> None:
        if self._window_stale * 4 > self._window_hits:
            self._rest, self._next_rest = self._next_rest, min(self._next_rest * 2, LONGEST_REST)
            self._forget_all()
        else:
            self._next_rest = REST
        self._window_hits = self._window_stale = 0

    def take_to_keep(self) -> list[int]:
        """The runs this thread's last batch left to read back (once; none after a rollback)."""
        runs, self._committing.runs = getattr(self._committing, "runs", []), []
        return runs

    def found_stale(self, instance_ids: Iterable[int]) -> None:
        """A batch of these instances failed the check: forget their runs."""
        with self._lock:
            self.stale += 1
            self._window_stale += 1
            self._counted["changed"].inc()
            for run_id in {self._run_of.get(i) for i in instance_ids} - {None}:
                self._drop(run_id)

    def clear(self) -> None:
        with self._lock:
            self._forget_all()

    def _forget_all(self) -> None:
        self._runs.clear()
        self._run_of.clear()
        self._kept_at.clear()

    def _drop(self, run_id: int) -> None:
        self._kept_at.pop(run_id, None)
        run = self._runs.pop(run_id, None)
        if run is not None:
            for instance_id in run.instance_versions:
                if self._run_of.get(instance_id) == run_id:
                    del self._run_of[instance_id]


def kept_runs(rows: list[tuple], width: int) -> list[tuple[int, KeptRun]]:
    """Runs read back after a commit: each row is the engine's `width` columns (the run's id second),
    then the run row's version and the instance row's."""
    runs: dict[int, KeptRun] = {}
    for row in rows:
        run_id = row[1]
        run = runs.get(run_id)
        if run is None:
            run = runs[run_id] = KeptRun([], row[width], {})
        run.rows.append(row[:width])
        run.instance_versions[row[0]] = row[width + 1]
    return list(runs.items())
