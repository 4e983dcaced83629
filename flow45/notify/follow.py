"""The notify loop: read the ledger after the saved position (through any operator client: the
database, or the bridge, whose team event stream wakes it), post each chosen event to its webhooks,
and save the position after each successful post. Killed at any moment, it starts again where the
file says: a post may be sent twice (at least once, with the same idempotency key), never skipped.
Its very first start (no file) begins at the ledger's end, unless told where: a new notifier posts
what happens from now on, not the history before it; the file is written at once, so what happens
between that start and a restart is not missed either.

An event id can commit after a larger one (a longer transaction), so the position is a watermark:
every id up to `after` is handled, and `seen` lists those handled above it. A hole below a handled
id is waited for `GAP_WAIT` seconds from when it was first missed, then taken for a rolled back
transaction or, through the bridge, for another team's event (a team's operator reads only its own
team's, so its ledger has holes wherever other teams wrote): the holes are timed each on its own, so
another team's work delays nothing, only the watermark.

On the database it reads the ledger from the watermark at each poll. Through the bridge it takes the
events the team's event stream brings (late ones too, when they commit), and reads from the
watermark only when the stream may have skipped some: at the start, after reconnecting, or when
another bridge took over publishing it. The stream's settled marks say which holes never come (other
teams' ids, rolled back ones): those are passed at once, and the others waited for as long as the
bridge waits for them (up to LONGEST), not GAP_WAIT; a stream without marks leaves GAP_WAIT to decide."""

from __future__ import annotations

import json
import logging
import os
import queue
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from flow45 import metrics
from flow45.client.follower import LONGEST, Holes
from flow45.errors import Flow45Error
from flow45.notify import events as meaning
from flow45.notify.hooks import Webhook
from flow45.notify.post import deliver
from flow45.outage import Backoff

log = logging.getLogger("flow45.notify")
PAGE = 200
GAP_WAIT = 30.0  # seconds; far longer than any lifecycle transaction
PUSHED_POLL = 30.0  # with the event stream bringing events, a read from the watermark at least this often anyway
SAVE_EVERY = 1.0  # seconds between saves of a watermark that moved over events with nothing to post
MAX_HOLES = 10_000  # holes timed at once; older ones are passed over at once (as the bridge's event stream does)


@dataclass
class Position:
    after: int = 0  # every event id up to this one is handled
    seen: set[int] = field(default_factory=set)  # ids above `after` handled already (after a hole)
    event: int | None = None  # an event being posted, and the hooks (by index) that took it
    done: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, start: Callable[[], int], inherit: Path | None = None) -> Position:
        """The saved position, or (no file) the one saved in `inherit` (a notifier of every team, from
        before each team had its own), or a new one after `start()`; saved at once."""
        if not path.exists() and inherit is not None and inherit.exists():
            position = cls.load(inherit, start)
            position.save(path)
            log.info("first start with %s: from %s, after ledger event %d", path, inherit, position.after)
            return position
        if not path.exists():
            position = cls(after=start())
            position.save(path)
            log.info("first start (no %s): from after ledger event %d", path, position.after)
            return position
        try:
            data = json.loads(path.read_text())
            return cls(int(data["after"]), {int(i) for i in data.get("seen", [])}, data.get("event"),
                       [int(i) for i in data.get("done", [])])
        except (ValueError, KeyError, TypeError) as exc:
            raise Flow45Error(f"{path}: not a notify state file ({exc}); move it away to start again "
                              "(with --after ID to choose where)") from exc

    def save(self, path: Path) -> None:
        """Write then rename: a kill leaves the old file or the new one, never half of one."""
        temporary = path.with_name(path.name + ".tmp")
        temporary.write_text(json.dumps({"after": self.after, "seen": sorted(self.seen), "event": self.event,
                                         "done": self.done}))
        os.replace(temporary, path)


def team_state(state: Path, team: str) -> Path:
    """The state file of one team's notifier: `flow45-notify.json` -> `flow45-notify.TEAM.json`."""
    return state.with_name(f"{state.stem}.{team}{state.suffix or '.json'}")


class Notifier:
    """Posts one team's events. Each team has a notifier of its own (`flow45 notify` runs one per
    team, each on a thread): a team's receiver that is down holds back that team's posts alone."""

    def __init__(self, client, team: str, hooks: list[Webhook], state: Path, *, start: int | None = None,
                 retry_delay: float = 1.0, retry_max: float = 60.0, poll: float = 1.0, inherit: Path | None = None,
                 clock: Callable[[], float] = time.monotonic):
        """`state`: the team's own file (`team_state`); `inherit`: a file to start from when it has none.
        `start`: on a first start (neither file), the event id to begin after; None: the ledger's end.
        `clock`: seconds, by which a hole grows GAP_WAIT old."""
        self.client, self.team, self.hooks, self.state = client, team, {team: hooks}, Path(state)
        self.stop, self.wake = threading.Event(), threading.Event()
        self.position = Position.load(self.state, lambda: client.latest_event_id() if start is None else start,
                                      inherit)
        self.backoff = Backoff(self.stop, first=retry_delay, cap=retry_max)
        self.poll = poll
        self.posted = 0
        self._holes = Holes(wait=GAP_WAIT, limit=MAX_HOLES, clock=clock, writers=client.ledger_writers())  # ids missed below a handled one
        self._top = self.position.after  # the newest id handled
        if self.position.seen:
            self._holes.read(self.position.after, self.position.seen)
            self._top = max(self.position.seen)
        self._saved_at, self._unsaved = 0.0, False
        self._oldest_unhandled: float | None = None  # when the oldest event read and not yet handled was written
        metrics.NOTIFY_LAG.labels(team).set_function(self._lag)
        metrics.NOTIFY_POSITION.labels(team).set(self.position.after)
        for outcome in ("sent", "failed", "retried"):
            metrics.NOTIFY_POSTS.labels(outcome)  # shown at 0 before the first

    def _lag(self) -> float:
        at = self._oldest_unhandled
        return 0.0 if at is None else max(0.0, time.time() - at)

    def stop_now(self) -> None:
        self.stop.set()
        self.wake.set()

    def run(self, once: bool = False) -> None:
        """Until stopped (or, with `once`, until the ledger has nothing more)."""
        streamed: queue.Queue = queue.Queue()  # the stream's events, and None: read the ledger by id
        unsubscribe = None if once else self.client.subscribe(lambda: streamed.put(None), streamed.put,
                                                              lambda through: streamed.put(_Settled(through)))
        try:
            read, last_read = True, 0.0
            while not self.stop.is_set():
                if read or time.monotonic() - last_read >= PUSHED_POLL:
                    last_read = time.monotonic()
                    if not self._read_through():
                        return  # stopped while posting: the file keeps the place
                if once:
                    return
                if unsubscribe is None:  # no stream: poll
                    self.wake.wait(self.poll)
                    self.wake.clear()
                    continue
                try:
                    event = streamed.get(timeout=self.poll)
                except queue.Empty:
                    read = False
                    self._advance()  # holes grow old while nothing comes
                    continue
                read = event is None
                if isinstance(event, _Settled):
                    self._holes.settle(event.through)
                    self._holes.wait = LONGEST  # the stream's marks tell which holes never come
                    self._advance()
                    continue
                if read:
                    self._holes.wait = GAP_WAIT  # until the stream (maybe another bridge's) marks again
                if event is not None:
                    if not self._take(event):
                        return
                    self._advance()
        finally:
            if unsubscribe is not None:
                unsubscribe()
            self._save()

    def _read_through(self) -> bool:
        """Every event after the watermark, a page at a time; False when stopped while posting."""
        after = self.position.after
        while not self.stop.is_set():
            page = self.client.events(after, team=self.team, limit=PAGE)
            for event in page:
                if not self._take(event):
                    return False
            self._advance()
            if len(page) < PAGE:
                return True
            after = page[-1].id
        return False

    def _take(self, event) -> bool:
        """Handle an event not handled yet; False when stopped while posting it."""
        if event.id <= self.position.after:
            return True
        if event.id not in self.position.seen:
            self._oldest_unhandled = _epoch(event.at)
            handled = self._handle(event)
            self._oldest_unhandled = None
            if not handled:
                return False
        self._holes.read(self._top, [event.id])  # the ids it skipped over are holes; if it was one, no longer
        self._top = max(self._top, event.id)
        return True

    def _handle(self, event) -> bool:
        team_hooks = self.hooks.get(event.team, [])
        kinds = meaning.notify_kinds(event) if team_hooks else []
        done = self.position.done if self.position.event == event.id else []
        waiting = [(index, hook, chosen) for index, hook in enumerate(team_hooks)
                   if index not in done and (chosen := [k for k in kinds if k in hook.events])]
        if waiting:
            text = meaning.text(event, kinds)
            for turn, (index, hook, chosen) in enumerate(waiting, 1):
                if not deliver(hook, event, chosen, text, self.backoff):
                    return False
                self.posted += 1
                done = done + [index]
                self.position.event, self.position.done = event.id, done
                if turn < len(waiting):  # a restart posts to the hooks still waiting alone; the last post's save is below
                    self.position.save(self.state)
        self.position.seen.add(event.id)
        self.position.event, self.position.done = None, []
        if waiting:
            self.position.save(self.state)  # posted: saved at once (else the watermark's save can wait)
        else:
            self._unsaved = True
        return True

    def _advance(self) -> bool:
        """Move the watermark over handled ids, and over each hole once it is GAP_WAIT old (or was
        never timed: more than MAX_HOLES at once)."""
        p, now = self.position, time.monotonic()
        through = self._holes.reread_after(self._top)  # every id up to it handled, or a hole given up
        moved = through > p.after
        if moved:
            p.after = through
            p.seen = {i for i in p.seen if i > through}
            metrics.NOTIFY_POSITION.labels(self.team).set(p.after)
            self._unsaved = True
        if self._unsaved and now - self._saved_at >= SAVE_EVERY:  # posts save at once; the watermark can wait
            self._save()
        return moved

    def _save(self) -> None:
        self.position.save(self.state)
        self._saved_at, self._unsaved = time.monotonic(), False


@dataclass(frozen=True)
class _Settled:
    """The stream's mark: every id up to `through` that has not come never will."""

    through: int


def _epoch(at) -> float:
    """A ledger time (naive UTC, or aware) as seconds since the epoch."""
    import datetime as dt

    return (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).timestamp()
