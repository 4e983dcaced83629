"""The scheduler: one `tick(now)` that does everything time decides, and the service that calls it.

`tick(now)` creates the scheduled runs that came due, expires passed leases, offers due retries again,
lets due timers succeed and re-sends offers that may have been lost. It is a function of `now` and the store, so tests drive
it with fixed datetimes. `Scheduler` is the long-running loop: it reads the clock, holds the single
scheduler lock (a PostgreSQL session advisory lock on a connection of its own, or on SQLite a lease
row renewed each tick), ticks every `sweep_interval`, logs one line per action and stops cleanly.
`run_scheduler()` is what `flow45 scheduler` and `flow45 serve` call.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import logging
import os
import secrets
import signal
import socket
import threading
import time
from typing import Callable

from flow45 import metrics, store
from flow45.clock import iso, to_utc, utcnow
from flow45.db import CONNECTION_ERRORS, connect, describe_db_error, drop_connection
from flow45.dialect import for_url
from flow45.migrate import require_schema
from flow45.outage import GIVE_UP_AFTER, Backoff, CannotWork, on_stop_signals, permanent_reason
from flow45.scheduler_lock import SchedulerLockHolder
from flow45.settings import current_settings
from flow45.store.schedule_runs import ScheduledRun, SkippedTicks, create_scheduled_runs, reoffer_lost
from flow45.views import View

log = logging.getLogger("flow45.scheduler")

# A tick that came due at most this long ago is on time, not missed (matters to `catchup: none`).
ON_TIME = dt.timedelta(seconds=60)
# Seconds a tick spends making scheduled runs before it leaves the rest to the next tick, so that the
# sweeps after it (leases, retries, timers, human tasks) run on every tick, whatever the schedules.
SCHEDULE_BUDGET = 1.0
BATCH = 500  # leases, retries and re-offers handled per tick; the rest on the next
_CONNECTION_ERRORS = CONNECTION_ERRORS


@dataclasses.dataclass(frozen=True)
class TickReport(View):
    """What one tick did."""

    at: dt.datetime
    created: list[ScheduledRun] = dataclasses.field(default_factory=list)
    skipped: list[SkippedTicks] = dataclasses.field(default_factory=list)
    expired: list[int] = dataclasses.field(default_factory=list)
    retried: list[int] = dataclasses.field(default_factory=list)
    timers: list[int] = dataclasses.field(default_factory=list)
    reminded: list[int] = dataclasses.field(default_factory=list)
    overdue: list[int] = dataclasses.field(default_factory=list)
    reoffered: list[int] = dataclasses.field(default_factory=list)
    sla_missed: list[int] = dataclasses.field(default_factory=list)  # runs
    timed_out: list[int] = dataclasses.field(default_factory=list)  # runs cancelled for their timeout
    attempts_timed_out: list[int] = dataclasses.field(default_factory=list)  # instances: past their task's timeout
    unclaimed: list[int] = dataclasses.field(default_factory=list)  # instances: no claim within start_within
    slotted: list[int] = dataclasses.field(default_factory=list)  # queued instances offered: a max_running slot freed
    errors: list[str] = dataclasses.field(default_factory=list)

    @property
    def actions(self) -> int:
        return (len(self.created) + len(self.skipped) + len(self.expired) + len(self.retried) + len(self.timers)
                + len(self.reminded) + len(self.overdue) + len(self.reoffered) + len(self.sla_missed)
                + len(self.timed_out) + len(self.attempts_timed_out) + len(self.unclaimed) + len(self.slotted))

    def lines(self) -> list[str]:
        """One line per action, for the log."""
        lines = [
            f"run {r.run} of {r.team}/{r.workflow} v{r.version} created for {iso(r.logical_time)} ({r.status})"
            for r in self.created
        ]
        lines += [
            f"{s.team}/{s.workflow}: {s.count} tick(s) {iso(s.first)} .. {iso(s.last)} not run: {s.reason}"
            for s in self.skipped
        ]
        lines += [f"task instance {i}: lease expired" for i in self.expired]
        lines += [f"task instance {i}: attempt ran past its task's timeout, failed" for i in self.attempts_timed_out]
        lines += [f"task instance {i}: no worker claimed it within its task's start_within, failed"
                  for i in self.unclaimed]
        lines += [f"task instance {i}: retry due, offered again" for i in self.retried]
        lines += [f"task instance {i}: a slot of its task's max_running freed, offered" for i in self.slotted]
        lines += [f"task instance {i}: timer due, succeeded" for i in self.timers]
        lines += [f"task instance {i}: human task reminder sent" for i in self.reminded]
        lines += [f"task instance {i}: human task overdue, outcome applied" for i in self.overdue]
        lines += [f"task instance {i}: offer may be lost, sent again" for i in self.reoffered]
        lines += [f"run {i}: slower than its SLA (sla_missed)" for i in self.sla_missed]
        lines += [f"run {i}: running longer than its timeout, cancelled" for i in self.timed_out]
        return lines


# What a tick can do, each counted in the metrics (flow45_scheduler_actions_total{action}).
ACTIONS = tuple(f.name for f in dataclasses.fields(TickReport) if f.name not in ("at", "errors"))


def on_time() -> dt.timedelta:
    """How late a scheduled tick may be and still be on time: a scheduler makes it within a few ticks."""
    return max(ON_TIME, dt.timedelta(seconds=3 * current_settings().sweep_interval))


DUE_PASSES = 3  # of due retries and timers after the parts that can start queued runs, in one tick


def tick(now: dt.datetime, *, batch: int = BATCH) -> TickReport:
    """Everything that is due at `now`, each part in its own transactions.

    A part that fails for a reason other than the database connection is reported in `errors` and
    does not keep the other parts from running; a lost connection is raised.
    """
    at = to_utc(now)
    settings = current_settings()
    found: dict[str, list] = {"created": [], "skipped": [], "expired": [], "retried": [], "timers": [], "reminded": [], "overdue": [],
                                "reoffered": [], "sla_missed": [], "timed_out": [], "attempts_timed_out": [],
                                "unclaimed": [], "slotted": []}
    errors: list[str] = []

    def part(name: str, action: Callable[[], None]) -> None:
        try:
            action()
        except _CONNECTION_ERRORS:
            raise
        except Exception as exc:  # noqa: BLE001 - one broken part must not stop the others
            log.exception("scheduler: %s failed", name)
            errors.append(f"{name}: {type(exc).__name__}: {exc}")

    def schedule() -> None:
        outcome = create_scheduled_runs(at, on_time=on_time(), budget=SCHEDULE_BUDGET)
        found["created"], found["skipped"] = outcome.created, outcome.skipped
        errors.extend(f"schedule: {error}" for error in outcome.errors)

    part("schedule", schedule)

    def expire() -> None:
        timed_out: list[int] = []
        expired = store.expire_leases(at, limit=batch, timed_out=timed_out)
        found["expired"].extend(i for i in expired if i not in timed_out)
        found["attempts_timed_out"].extend(timed_out)

    part("expire leases", expire)
    part("unclaimed offers", lambda: found["unclaimed"].extend(store.fail_unclaimed(at, limit=batch)))
    part("release retries", lambda: found["retried"].extend(store.release_due_retries(at, limit=batch)))
    part("fire timers", lambda: found["timers"].extend(store.fire_due_timers(at, limit=batch)))

    def human_tasks() -> None:
        reminded, overdue = store.human_alarms(at, limit=batch)
        found["reminded"].extend(reminded)
        found["overdue"].extend(overdue)

    part("human tasks", human_tasks)
    part("sla", lambda: found["sla_missed"].extend(store.sla_missed(at, limit=batch)))
    part("timeouts", lambda: found["timed_out"].extend(store.cancel_timed_out(at, limit=batch)))

    def due_again() -> None:
        """Retries and timers that became due in this tick: the parts above can start a queued run (a
        slot freed) that was given work again, whose retry or timer is due at once; a timer that fires
        can finish a run and start another such."""
        for _ in range(DUE_PASSES):
            retried, fired = store.release_due_retries(at, limit=batch), store.fire_due_timers(at, limit=batch)
            found["retried"].extend(retried)
            found["timers"].extend(fired)
            if not retried and not fired:
                return

    part("due again", due_again)
    # Last: every slot the parts above freed (expired leases, failures, cancelled runs) is handed on in this tick.
    part("queued offers", lambda: found["slotted"].extend(store.offer_queued(at, limit=batch)))
    part(
        "re-offer",
        lambda: found["reoffered"].extend(reoffer_lost(at, quiet=settings.offer_quiet_period, limit=batch)),
    )
    return TickReport(at=at, errors=errors, **found)


# ---- the service ----------------------------------------------------------------------------

class Scheduler:
    """The long-running scheduler. Only `run` and `step` read the clock (through `clock`)."""

    def __init__(
        self, url: str | None = None, *, holder: str | None = None, clock: Callable[[], dt.datetime] = utcnow,
        interval: float | None = None, lease: float | None = None, heartbeat=None,
    ):
        settings = current_settings()
        self.heartbeat = heartbeat  # flow45.heartbeat.Heartbeat, told after each loop
        self.reconnect_max = settings.reconnect_max
        self.url = url or settings.database_url
        self.interval = settings.sweep_interval if interval is None else interval
        self.holder = holder or f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"
        self.clock = clock
        self.lock: SchedulerLockHolder = for_url(self.url).scheduler_lock(
            self.holder, lease if lease is not None else max(10.0, 5 * self.interval))
        self._waiting_logged = False
        metrics.RECONNECTS.labels("scheduler", "database")  # shown at 0 before the first
        for action in ACTIONS:
            metrics.SCHEDULER_ACTIONS.labels(action)

    def acquire(self, now: dt.datetime | None = None, wait: float = 0.0) -> bool:
        """Hold the lock (taking or renewing it); log when that changes."""
        had = self.lock.held
        held = self.lock.hold(self.clock() if now is None else now, wait)
        if held and not had:
            log.info("scheduler %s holds the scheduler lock; ticking every %ss", self.holder, self.interval)
            self._waiting_logged = False
        elif not held and not self._waiting_logged:
            holder = self.lock.holder() or "another scheduler"
            log.info("scheduler %s waits for the scheduler lock (held by %s)", self.holder, holder)
            self._waiting_logged = True
        return held

    def release(self) -> None:
        if self.lock.held:
            log.info("scheduler %s releases the scheduler lock", self.holder)
        self.lock.release()

    def step(self, wait: float = 0.0) -> TickReport | None:
        """One round: hold the lock, then tick at the clock's time. None if another scheduler acts."""
        now = self.clock()
        if not self.acquire(now, wait=wait):
            return None
        if wait > 0:
            now = self.clock()  # the lock may have taken a while
        report = tick(now)
        for action in ACTIONS:
            if getattr(report, action):
                metrics.SCHEDULER_ACTIONS.labels(action).inc(len(getattr(report, action)))
        for line in report.lines():
            log.info("%s", line)
        return report

    def run(self, stop: threading.Event) -> None:
        """Tick every `interval` seconds until `stop` is set; then release the lock. A lost database
        connection is dropped and opened again, further apart each time (capped at reconnect_max);
        a login the database keeps refusing raises CannotWork."""
        log.info("scheduler %s started", self.holder)
        failures = 0
        refused = 0
        # A lost database is tried again further apart each time: 2, 4, 8... intervals, up to reconnect_max.
        backoff = Backoff(stop, first=min(self.interval * 2, max(self.interval, self.reconnect_max)),
                          cap=max(self.interval, self.reconnect_max))
        try:
            while not stop.is_set():
                started = time.monotonic()
                pause = self.interval
                error = None
                try:
                    self.step(wait=self.interval if not self.lock.held else 0.0)
                    if failures:
                        log.info("scheduler: database back")
                    failures = refused = 0
                    backoff.reset()
                except _CONNECTION_ERRORS as exc:
                    failures += 1
                    error = describe_db_error(exc)
                    pause = backoff.next_delay()
                    if failures == 1:
                        metrics.RECONNECTS.labels("scheduler", "database").inc()
                        log.error("scheduler: %s; reconnecting", error)
                    drop_connection()
                    reason = permanent_reason(exc)
                    refused = refused + 1 if reason else 0
                    if refused >= GIVE_UP_AFTER:
                        raise CannotWork(f"scheduler: {error}") from exc
                except Exception as exc:  # noqa: BLE001 - the service keeps going; the next tick tries again
                    log.exception("scheduler: tick failed")
                    error = f"tick failed: {type(exc).__name__}: {exc}"
                    drop_connection()
                if self.heartbeat is not None:
                    self.heartbeat.beat("scheduler", error)
                stop.wait(max(0.0, pause - (time.monotonic() - started)))
        finally:
            self.release()
            self.lock.close()
            log.info("scheduler %s stopped", self.holder)


def prepare(stop: threading.Event, what: str, beat: Callable[[str | None], None] | None = None) -> bool:
    """Check the schema (`flow45 db upgrade` creates it; NoDatabase without it), waiting out a database
    that is not there yet with capped backoff. False if `stop` came first; CannotWork if the login
    keeps being refused."""
    backoff = Backoff(stop, cap=current_settings().reconnect_max)
    while not stop.is_set():
        try:
            require_schema()
            return True
        except _CONNECTION_ERRORS as exc:
            drop_connection()
            if beat is not None:
                beat(describe_db_error(exc))
            backoff.failed(exc, what, describe_db_error)
            log.warning("%s: %s; trying again in %.1fs", what, describe_db_error(exc), backoff.delay)
            backoff.wait()
    return False


def stop_on_signals(stop: threading.Event) -> contextlib.AbstractContextManager[None]:
    """SIGTERM and SIGINT set `stop` while inside (only the main thread can take signals)."""

    def handler(signum: int) -> None:
        log.info("scheduler: %s received, stopping", signal.Signals(signum).name)
        stop.set()

    return on_stop_signals(handler)


def run_scheduler(stop: threading.Event | None = None, heartbeat=None) -> None:
    """The `flow45 scheduler` service: connect with the current settings, check the schema, and
    tick every sweep_interval until `stop` is set, or SIGTERM/SIGINT arrives (when called on the
    main thread; `flow45 serve` may run it on another thread and set `stop` itself)."""
    settings = current_settings()
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    connect(settings.database_url)  # keeps the binding if `serve` already made it
    stop = stop or threading.Event()
    beat = None if heartbeat is None else (lambda error: heartbeat.beat("scheduler", error))
    with stop_on_signals(stop):
        if prepare(stop, "scheduler", beat):
            Scheduler(settings.database_url, heartbeat=heartbeat).run(stop)
