"""Group commit: the bridge applies batches on several database connections at once, off the IO loop.

A commit costs a disk flush. Applied on the IO loop, one batch at a time, every message waited
behind the flushes of all the batches before it. Here the IO loop only forms batches and hands each
to a free committer thread (a database connection of its own); while one batch flushes, the next is
formed and applied on another connection, and PostgreSQL flushes commits that arrive together once.
So a message waits for about one commit, whatever queues behind it.

Batches are formed from the teams in turn, and the messages of teams without a backlog in the bridge
go first, in a batch of their own: another team's message waits for a free committer, never behind
the backlog nor in a batch with it (the broker already delivers each team's inbox beside the
others'). Two batches in flight never share a run (`Lanes`): a message whose run a batch in flight holds
waits for that batch, then goes with the next. So claims and progress never wait behind submits of
other runs, and batches do not queue on each other's row locks. Operator and callback messages,
which may touch any run of their team, go one at a time for each team, each in a batch of its own: a
trigger of thousands of tasks holds up one committer, not another team's operators nor anyone's
workers. Messages of a run this bridge has not published an offer for are kept apart by instance; if
two batches meet on a run anyway, the lifecycle's run locks order them (taken in id order: a deadlock
is rare, and retried).

Everything still goes through the one writer (flow45.store.unit) in one transaction per batch, and a
delivery is answered and acked only after its batch committed: the committer publishes the replies
on a connection of its own (bridge.direct_replies), and the IO loop acks (and publishes what the
committer could not) when the committer hands the result back (`add_callback_threadsafe`, as pika's
threaded consumer example does).
"""

from __future__ import annotations

import functools
import itertools
import logging
import queue
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Callable, Hashable, Iterable

from bridge.batch import Applied, Conflict, DatabaseUnavailable, apply_parsed
from bridge.direct_replies import DirectReplies
from bridge.inbound import Delivery, Inbound
from flow45 import metrics
from flow45.db import database, dialect
from flow45.store.run_cache import RunCache
from flow45.store.sweep import hand_on
from flow45.store.unit import read_back
from flow45.turns import in_turns

log = logging.getLogger("flow45.bridge")

OPERATORS = "operators"  # (OPERATORS, team): the lane of a team's operator and callback messages
REMEMBERED_RUNS = 100_000  # instance -> run entries kept for lanes (the oldest go first)
BACKLOG = 10  # a team with more messages than this ready to go has a backlog in the bridge


@dataclass
class Waiting:
    """A delivery waiting for a batch: parsed on arrival, with its lane."""

    delivery: Delivery
    parsed: Inbound
    lane: Hashable
    received: float  # monotonic, for the inbox lag and the hop latency


@dataclass
class Job:
    """One batch on its way through a committer."""

    waiting: list[Waiting]
    sent: list[int]  # outbox ids confirmed by the broker, marked sent in the batch's transaction
    generation: int  # the broker connection it was received on
    result: Applied | None = None
    error: BaseException | None = None
    lanes: set[Hashable] = field(default_factory=set)
    started: float = 0.0  # monotonic: a committer took it
    finished: float = 0.0  # monotonic: applied (or failed)


class Lanes:
    """Which run each delivery belongs to, as far as this bridge knows, and which runs batches in
    flight hold."""

    def __init__(self) -> None:
        self._run_of: dict[int, int] = {}  # instance -> run, from the offers this bridge published
        self._busy: Counter[Hashable] = Counter()

    def learn(self, bodies: Iterable[Any]) -> None:
        """From offers (and attempts granted with a submit's answer): their instances' runs."""
        for body in bodies:
            if isinstance(body, dict) and isinstance(body.get("instance"), int) and isinstance(body.get("run"), int):
                self._run_of[body["instance"]] = body["run"]
        if len(self._run_of) > REMEMBERED_RUNS:
            for instance in list(self._run_of)[: len(self._run_of) - REMEMBERED_RUNS // 2]:
                del self._run_of[instance]

    def of(self, inbound: Inbound) -> Hashable:
        if inbound.role != "worker" or inbound.is_callback:
            return (OPERATORS, inbound.team)
        instance = inbound.message.instance
        run = self._run_of.get(instance)
        return ("run", run) if run is not None else ("instance", instance)

    def busy(self, lane: Hashable) -> bool:
        return lane in self._busy

    def take(self, lanes: set[Hashable]) -> None:
        self._busy.update(lanes)

    def give_back(self, lanes: set[Hashable]) -> None:
        self._busy.subtract(lanes)
        for lane in lanes:
            if self._busy[lane] <= 0:
                del self._busy[lane]

    def clear_busy(self) -> None:
        self._busy.clear()


def _operating(waiting: Waiting) -> bool:
    """An operator's or a callback message: in its team's operator lane."""
    return isinstance(waiting.lane, tuple) and waiting.lane[0] == OPERATORS


def _light_first(ready: list[Waiting]) -> list[Waiting]:
    """The messages of the teams without a backlog, if there are any, else all: a message goes in a
    batch without another team's backlog, which would take many times as long to apply."""
    counts = Counter(w.parsed.team for w in ready)
    light = [w for w in ready if counts[w.parsed.team] <= BACKLOG]
    return light or ready


class CommitPool:
    """`size` threads, each applying one batch at a time on its own database connection; `done(job)`
    is called on the committer's thread when a batch is applied (or failed). They share the runs
    kept of their last batches (flow45.store.run_cache): a run's next message is applied in one round trip."""

    def __init__(self, size: int, done: Callable[[Job], None], amqp_url: str | None = None) -> None:
        """`amqp_url`: each committer publishes its batches' replies itself, on a connection of its own
        (bridge.direct_replies); without it the IO loop publishes them."""
        self.size = size
        self._done = done
        self._amqp_url = amqp_url
        self.kept = RunCache()
        self._jobs: queue.SimpleQueue[Job | None] = queue.SimpleQueue()
        self._backends: dict[str, int] = {}  # thread name -> its connection's server process id
        self._threads = [threading.Thread(target=self._work, name=f"flow45-bridge-commit-{n}", daemon=True)
                         for n in range(size)]
        for thread in self._threads:
            thread.start()

    def submit(self, job: Job) -> None:
        self._jobs.put(job)

    def backend_ids(self) -> set[int]:
        """The committers' database sessions: their own outbox notifications need no relay."""
        return set(self._backends.values())

    def close(self, timeout: float = 0.3) -> None:
        for _ in self._threads:
            self._jobs.put(None)
        for thread in self._threads:
            thread.join(timeout)

    def _work(self) -> None:
        name = threading.current_thread().name
        replies = DirectReplies(self._amqp_url, name=f"flow45 bridge replies ({name})") if self._amqp_url else None
        self._remember_backend(name)  # connected before the first batch, which would wait for it
        if replies is not None:
            replies.open()
        while (job := self._jobs.get()) is not None:
            if name not in self._backends:  # before the batch: its commit's notification is this bridge's own
                self._remember_backend(name)
            job.started = time.monotonic()
            try:
                job.result = apply_parsed([w.parsed for w in job.waiting], job.sent, self.kept)
            except Conflict as exc:
                job.error = exc
            except DatabaseUnavailable as exc:
                job.error = exc
                self._backends.pop(name, None)
            except Exception as exc:  # a bug outside any one message: the IO loop refuses the batch
                log.exception("bridge: a batch of %d messages failed", len(job.waiting))
                job.error = exc
            job.finished = time.monotonic()
            if replies is not None and job.result is not None:
                replies.publish([w.delivery for w in job.waiting], job.result.outcomes, job.generation)
            if job.result is not None:
                self._hand_on(job.result)
            try:
                self._done(job)
            except Exception:  # the IO loop is gone: its broker connection redelivers the batch
                log.debug("bridge: a batch finished after its connection closed", exc_info=True)
            self._read_back()
        if replies is not None:
            replies.close()
        try:
            database.close()
        except Exception:  # noqa: BLE001 - closing a dead connection may fail
            pass

    def _hand_on(self, result: Applied) -> None:
        """Slots of a task's max_running that the batch freed go to the instances queued for them now,
        in a transaction of their own (its offers published with the batch's), not at the scheduler's
        next tick: a task limited to a few at once runs them back to back."""
        written: list = []
        try:
            hand_on(written=written)
        except Exception:  # noqa: BLE001 - the scheduler's sweep offers them at its next tick
            log.warning("bridge: queued instances were not offered at once; the scheduler will", exc_info=True)
            return
        if result.written is not None:
            result.written.extend(written)

    def _read_back(self) -> None:
        """The batch's runs, kept for their next messages: read once its answers are on their way,
        off their path (a run's next message comes a broker round trip later at the soonest)."""
        try:
            read_back(self.kept)
        except Exception:  # noqa: BLE001 - only an optimisation: the runs are read with their next batch
            log.debug("bridge: the batch's runs were not read back", exc_info=True)

    def _remember_backend(self, name: str) -> None:
        try:
            backend: Any = dialect().backend_id()
        except Exception:  # noqa: BLE001 - only an optimisation: the relay looks once more
            return
        if backend is not None:
            self._backends[name] = backend


class Batcher:
    """The IO loop's side: deliveries wait in arrival order, leave in batches for free committers,
    and come back to `finish(job)` on the IO loop once committed. A batch the database could not
    take goes back in line (its deliveries keep their order) and is tried again after `retry_delay`,
    or at once after a deadlock."""

    def __init__(self, batch_size: int, take_sent: Callable[[], list[int]], return_sent: Callable[[list[int]], None],
                 finish: Callable[[Job], None], retry_delay: float = 1.0) -> None:
        self.batch_size = batch_size
        self.pool: CommitPool | None = None  # set when the bridge runs
        self.lanes = Lanes()
        self._take_sent, self._return_sent, self._finish = take_sent, return_sent, finish
        self._retry_delay = retry_delay
        self._ioloop = None
        self._generation = 0
        self.reset(None)

    def reset(self, ioloop) -> None:
        """A new broker connection (None: none): what waited or is in flight will be delivered again."""
        self._ioloop = ioloop
        self._generation += 1
        self.waiting: list[Waiting] = []
        self.running = 0
        self._retry_at = 0.0  # monotonic: no batch before, after the database could not take one
        self._database_lost = False  # since a batch failed for it, none has gone through
        self._scheduled = False
        self.lanes.clear_busy()

    def add(self, waiting: Waiting) -> None:
        self.waiting.append(waiting)
        self.schedule()

    @property
    def busy(self) -> bool:
        return bool(self.running or self.waiting)

    def schedule(self, delay: float = 0.0) -> None:
        if not self._scheduled and self._ioloop is not None:
            self._scheduled = True
            self._ioloop.call_later(delay, self.dispatch)

    def dispatch(self) -> None:
        """Hand batches to free committers while deliveries wait."""
        self._scheduled = False
        if self.pool is None or self._ioloop is None:
            return
        wait = self._retry_at - time.monotonic()
        if wait > 0:
            self.schedule(wait)
            return
        while self.waiting and self.running < self.pool.size:
            job = self._form()
            if job is None:
                return  # every waiting delivery belongs to a run a batch in flight holds
            self.running += 1
            self.pool.submit(job)

    def _form(self) -> Job | None:
        """The next batch of waiting deliveries whose runs no batch in flight holds. When the oldest of
        them is an operator's (or a callback), that message alone: it may be a trigger of thousands of
        tasks, half a second, and whatever rode with it would wait for its answer. Else up to
        batch_size workers' messages, taken from the teams in turn (each team's oldest first); those of
        teams with a backlog only when no other team's messages wait, so another team's message goes
        with the next batch, neither after the backlog nor with it. The others keep their order for
        the next batch; the chosen keep their order of arrival."""
        ready = [w for w in self.waiting if not self.lanes.busy(w.lane)]
        if not ready:
            return None
        if _operating(ready[0]):
            chosen = ready[:1]
        else:
            workers = _light_first([w for w in ready if not _operating(w)])
            picked = {id(w) for w in itertools.islice(in_turns(workers, lambda w: w.parsed.team), self.batch_size)}
            chosen = [w for w in self.waiting if id(w) in picked]  # in order of arrival
        taken = {id(w) for w in chosen}
        self.waiting = [w for w in self.waiting if id(w) not in taken]
        job = Job(chosen, self._take_sent(), self._generation, lanes={w.lane for w in chosen})
        self.lanes.take(job.lanes)
        return job

    def committed(self, job: Job) -> None:
        """On a committer's thread: hand the finished batch to the IO loop it came from."""
        ioloop = self._ioloop
        if job.generation == self._generation and ioloop is not None:
            ioloop.add_callback_threadsafe(functools.partial(self._done, job))

    def _done(self, job: Job) -> None:
        if job.generation != self._generation:
            return  # its connection is gone: the broker delivers those messages again
        self.running -= 1
        self.lanes.give_back(job.lanes)
        if isinstance(job.error, DatabaseUnavailable):
            self._return_sent(job.sent)
            self.waiting = sorted(job.waiting + self.waiting, key=lambda w: w.delivery.tag)
            if not isinstance(job.error, Conflict) and time.monotonic() >= self._retry_at:
                if not self._database_lost:  # once an outage, however many retries it takes (as the relay counts)
                    metrics.RECONNECTS.labels("bridge", "database").inc()
                    self._database_lost = True
                log.warning("bridge: database unavailable (%s); %d messages wait", job.error, len(self.waiting))
                self._retry_at = time.monotonic() + self._retry_delay
        else:
            self._database_lost = False
            self._finish(job)
        self.dispatch()
