"""The notify loop: read the ledger after the saved position (through any operator client: the
database, or the bridge, whose team event stream wakes it), post each chosen event to its webhooks,
and save the position after each successful post. Killed at any moment, it starts again where the
file says: a post may be sent twice (at least once, with the same idempotency key), never skipped.
Its very first start (no file) begins at the ledger's end, unless told where: a new notifier posts
what happens from now on, not the history before it; the file is written at once, so what happens
between that start and a restart is not missed either.

An event id can commit after a larger one (a longer transaction), so the position is a watermark:
every id up to `after` is handled, and `seen` lists those handled above it. A hole below a handled
id is waited for `GAP_WAIT` seconds, then taken for a rolled back transaction (its id never comes)."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from flow45 import metrics
from flow45.errors import Flow45Error
from flow45.notify import events as meaning
from flow45.notify.hooks import Webhook
from flow45.notify.post import deliver
from flow45.outage import Backoff

log = logging.getLogger("flow45.notify")
PAGE = 200
GAP_WAIT = 30.0  # seconds; far longer than any lifecycle transaction
PUSHED_POLL = 30.0  # with the event stream waking it, a read at least this often anyway


@dataclass
class Position:
    after: int = 0  # every event id up to this one is handled
    seen: list[int] = field(default_factory=list)  # ids above `after` handled already (after a hole)
    event: int | None = None  # an event being posted, and the hooks (by index) that took it
    done: list[int] = field(default_factory=list)

    @classmethod
    def load(cls, path: Path, start: Callable[[], int]) -> Position:
        """The saved position, or (no file) a new one after `start()`, saved at once."""
        if not path.exists():
            position = cls(after=start())
            position.save(path)
            log.info("first start (no %s): from after ledger event %d", path, position.after)
            return position
        try:
            data = json.loads(path.read_text())
            return cls(int(data["after"]), [int(i) for i in data.get("seen", [])], data.get("event"),
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


class Notifier:
    def __init__(self, client, hooks: dict[str, list[Webhook]], state: Path, *, start: int | None = None,
                 retry_delay: float = 1.0, retry_max: float = 60.0, poll: float = 1.0):
        """`start`: on a first start (no state file), the event id to begin after; None: the ledger's end."""
        self.client, self.hooks, self.state = client, hooks, Path(state)
        self.stop, self.wake = threading.Event(), threading.Event()
        self.position = Position.load(self.state, lambda: client.latest_event_id() if start is None else start)
        self.backoff = Backoff(self.stop, first=retry_delay, cap=retry_max)
        self.poll = poll
        self.posted = 0
        self._hole_since: float | None = None
        self._oldest_unhandled: float | None = None  # when the oldest event read and not yet handled was written
        metrics.NOTIFY_LAG.set_function(self._lag)
        metrics.NOTIFY_POSITION.set(self.position.after)
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
        unsubscribe = None if once else self.client.subscribe(self.wake.set)
        try:
            while not self.stop.is_set():
                self.wake.clear()
                page = self.client.events(self.position.after, limit=PAGE)
                for event in page:
                    if event.id in self.position.seen:
                        continue
                    self._oldest_unhandled = _epoch(event.at)
                    if not self._handle(event):
                        return  # stopped while posting: the file keeps the place
                self._oldest_unhandled = None
                moved = self._advance()
                metrics.NOTIFY_POSITION.set(self.position.after)
                if len(page) == PAGE and moved:
                    continue
                if once:
                    return
                wait = self.poll if unsubscribe is None or self._hole_since is not None else PUSHED_POLL
                self.wake.wait(wait)
        finally:
            if unsubscribe is not None:
                unsubscribe()

    def _handle(self, event) -> bool:
        team_hooks = self.hooks.get(event.team, [])
        kinds = meaning.notify_kinds(event) if team_hooks else []
        if kinds:
            text = meaning.text(event, kinds)
            done = self.position.done if self.position.event == event.id else []
            for index, hook in enumerate(team_hooks):
                chosen = [k for k in kinds if k in hook.events]
                if not chosen or index in done:
                    continue
                if not deliver(hook, event, chosen, text, self.backoff):
                    return False
                self.posted += 1
                done = done + [index]
                self.position.event, self.position.done = event.id, done
                self.position.save(self.state)
        self.position.seen.append(event.id)
        self.position.event, self.position.done = None, []
        if kinds:
            self.position.save(self.state)
        return True

    def _advance(self) -> bool:
        """Move the watermark over handled ids; over a hole only once it is older than GAP_WAIT."""
        p, before = self.position, self.position.after
        seen = set(p.seen)
        while seen:
            if p.after + 1 in seen:
                p.after += 1
                seen.discard(p.after)
                self._hole_since = None
                continue
            now = time.monotonic()
            if self._hole_since is None:
                self._hole_since = now
            if now - self._hole_since < GAP_WAIT:
                break
            log.info("events %s..%s never came (rolled back); going on", p.after + 1, min(seen) - 1)
            p.after, self._hole_since = min(seen) - 1, None
        p.seen = sorted(seen)
        if p.after != before:
            p.save(self.state)
        return p.after != before


def _epoch(at) -> float:
    """A ledger time (naive UTC, or aware) as seconds since the epoch."""
    import datetime as dt

    return (at if at.tzinfo else at.replace(tzinfo=dt.timezone.utc)).timestamp()
