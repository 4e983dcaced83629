"""Liveness: one background thread reads the ledger after the last id it has seen, every half second,
or, through the broker, takes the events the team's event stream brings (they gather while events
keep coming: one tick per half second at most, as often as a local dashboard reads the database).
It reads the ledger by id only after (re)connecting to the stream, or when the stream may have
skipped some (another bridge took over publishing it). Those half seconds are slots of the wall
clock, so a team's dashboards, wherever they run, read what the events changed at the same moments:
the bridge answers their identical reads with one query.

Reading in id order, it looks again for the ids a read skipped over (a longer transaction took them
first and commits later: `flow45.client.follower.Holes`); through the broker, the stream brings those.

When events arrive, each live screen on the stack reads what those events changed (still in the thread,
so the UI never waits on the database) and the feed posts one `LedgerEvents` message with both;
the app hands each screen its part, and it updates only the rows that changed. Threads reach the UI only
through messages (Textual's `post_message` is thread-safe).
"""

from __future__ import annotations

import threading
import time
from typing import TYPE_CHECKING, Any, Callable, Protocol

from textual.message import Message

from flow45.client import Client
from flow45.client.follower import Holes, Seen
from flow45.db import describe_db_error
from flow45.errors import Flow45Error
from flow45.outage import Backoff
from flow45.views import EventView

if TYPE_CHECKING:
    from textual.app import App

BATCH = 500
MAX_PER_TICK = 5000
GATHER = 0.5  # seconds: woken by the event stream, at most one read per this while events keep coming


class Watcher(Protocol):
    def fetch_changes(self, events: list[EventView]) -> Any:
        """Read, in the feed's thread, what these events changed for this screen."""

    def apply_changes(self, events: list[EventView], payload: Any) -> None:
        """Show it, on the UI thread."""


class LedgerEvents(Message):
    """New ledger events, and what each watching screen read about them: (screen, payload, error)."""

    def __init__(self, events: list[EventView], reads: list[tuple[Watcher, Any, str | None]]):
        super().__init__()
        self.events, self.reads = events, reads


class FeedProblem(Message):
    """The ledger could not be read (the feed keeps trying)."""

    def __init__(self, message: str):
        super().__init__()
        self.message = message


class Feed:
    """Polls the client's `events(after=last id)` and tells the watched screen."""

    def __init__(self, app: App, client: Client, after: int, interval: float = 0.5, gather: float = GATHER,
                 clock: Callable[[], float] = time.time):
        """`interval`: seconds between polls, when the client does not push; `gather`: when it does,
        the slot of the wall clock (`clock`) in which it reads at most once while events keep coming."""
        self.app = app
        self.client = client
        self.after = after
        self.interval = interval
        self.gather = gather
        self.clock = clock
        self.watchers: tuple[Watcher, ...] = ()
        self.last_fetch_seconds = 0.0
        self.ticks = 0
        self._wake = threading.Event()
        self._hurry = threading.Event()  # an operator's action (or stopping): read at once, no gathering
        self._stop = threading.Event()
        self._read_by_id = threading.Event()  # pushed: the stream may have skipped events, read the ledger
        self._streamed: list[EventView] = []  # pushed: the stream's events since the last tick
        self._streamed_lock = threading.Lock()
        self._seen = Seen()
        self._holes: Holes | None = None  # polling: ids skipped over, read again while they may still commit
        self._catching_up = False  # the last read stopped at MAX_PER_TICK
        self.pushed = False

    def watch(self, screens: list[Watcher]) -> None:
        """From now on, these screens (the live ones on the stack) read and show what new events change."""
        self.watchers = tuple(screens)

    def poke(self) -> None:
        """Read now rather than at the next tick (after an action of the operator's)."""
        self._hurry.set()
        self._wake.set()

    def stop(self) -> None:
        self._stop.set()
        self._hurry.set()
        self._wake.set()

    def _post(self, message: Message) -> None:
        try:
            self.app.post_message(message)
        except RuntimeError:  # the app's loop closed while we were reading
            self._stop.set()

    def run(self) -> None:
        """The thread's loop; what it holds (a database connection) is let go when it ends. With a
        client that pushes (the team's event stream), it reads only when woken: no polling."""
        failures = 0
        backoff = Backoff(first=min(10.0, self.interval * 2), cap=10.0)  # while the database is lost
        unsubscribe = self.client.subscribe(self._gap, self._take)
        self.pushed = unsubscribe is not None
        self._holes = None if self.pushed else Holes(writers=self.client.ledger_writers())
        idle = None if self.pushed else self.interval
        slot = None  # the slot of the wall clock the last tick began in
        try:
            while not self._stop.is_set():
                self._wake.wait(backoff.next_delay() if failures else idle)
                if idle is None and slot is not None:  # pushed: what else comes in this slot gathers
                    pause = min((slot + 1) * self.gather - self.clock(), self.gather)  # a clock set back: no longer
                    if pause > 0:
                        self._hurry.wait(pause)
                self._wake.clear()
                self._hurry.clear()
                if self._stop.is_set():
                    break
                slot = self.clock() // self.gather
                try:
                    self.tick()
                    failures = 0
                    backoff.reset()
                except Exception as exc:  # a lost database must not kill the dashboard
                    failures += 1
                    message = exc.message if isinstance(exc, Flow45Error) else describe_db_error(exc) or repr(exc)
                    if failures == 1:
                        self._post(FeedProblem(message))
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self.client.close()

    def _take(self, event: EventView) -> None:
        """An event from the stream (on the stream's thread)."""
        with self._streamed_lock:
            self._streamed.append(event)
        self._wake.set()

    def _gap(self) -> None:
        """The stream (re)connected, or may have skipped events: read the ledger by id."""
        self._read_by_id.set()
        self._wake.set()

    def tick(self) -> None:
        with self._streamed_lock:
            events, self._streamed = self._streamed, []
        if not self.pushed or self._read_by_id.is_set():
            self._read_by_id.clear()
            try:
                events = self._read_after() + events
            except Exception:  # kept for the next tick
                self._read_by_id.set()
                with self._streamed_lock:
                    self._streamed[:0] = events
                raise
        events = self._unseen(events)
        self.ticks += 1
        if not events:
            return
        started = time.perf_counter()
        reads: list[tuple[Watcher, Any, str | None]] = []
        try:
            for watcher in self.watchers:
                try:
                    reads.append((watcher, watcher.fetch_changes(events), None))
                except Flow45Error as exc:  # e.g. the run was removed under us
                    reads.append((watcher, None, exc.message))
        except Exception:  # the screens' reads failed (a lost database): their events come again next tick
            with self._streamed_lock:
                self._streamed[:0] = events
            raise
        self._seen_all(events)
        self.last_fetch_seconds = time.perf_counter() - started
        self._post(LedgerEvents(events, reads))

    def _read_after(self) -> list[EventView]:
        """The ledger after the last id seen (polling: from before the oldest id skipped over that
        may still commit), MAX_PER_TICK events at most."""
        events: list[EventView] = []
        again = self._holes is not None and not self._catching_up  # while catching up, on from the last id first
        start = after = self._holes.reread_after(self.after) if again else self.after
        more = True
        while more and len(events) < MAX_PER_TICK:
            batch = self.client.events(after, limit=BATCH)
            events.extend(batch)
            if batch:
                after = batch[-1].id
            more = len(batch) == BATCH
        if self._holes is not None:
            self._holes.read(start, [e.id for e in events])
        self._catching_up = more
        if more:  # more are waiting: read on without pausing
            self._read_by_id.set()
            self._wake.set()
        return events

    def _unseen(self, events: list[EventView]) -> list[EventView]:
        """Oldest first, once each, without those already handed on."""
        by_id = {event.id: event for event in events if event.id not in self._seen}
        return [by_id[id_] for id_ in sorted(by_id)]

    def _seen_all(self, events: list[EventView]) -> None:
        """Handed on: never again, and the last id seen moves on."""
        for event in events:
            self._seen.add(event.id)
        self.after = max(self.after, events[-1].id)
