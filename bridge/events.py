"""The team event streams: the ledger's events, in id order, published to the topic exchange
`flow45.events` with their team as the routing key, a page of one team's events per message (what
one read of the ledger found: at most BATCH). A team's operators may bind only their team's key
(topic permissions), so a dashboard follows its team's ledger without polling, and other tools
(notifications, audit exports) can subscribe the same way. A page per message, not an event: a
team busy with 300 events a second costs the broker a few messages a second per follower.

The stream is live, not a store: it starts at the newest event when the bridge starts, and a
subscriber that was away re-reads what it missed by ledger id (the `events` read). It runs on a
thread of its own, with its own broker and database connections, off the workers' path.

Several bridges may run on one store: only the one holding the events lock publishes (a session
advisory lock on this thread's connection, as the relay's), so each event goes out once. The others
wait, noting the newest event id as they go; when the publisher's session ends, the next to take the
lock goes on from the last id it noted. Events published in that moment may go out twice; none is
left out unless the publisher had fallen behind.

Each spell of publishing (from taking the lock to losing it) names itself in the messages' `app_id`:
a follower that sees it change knows the stream may have skipped what was written in between (a
bridge restarted, or another took over) and reads that by id.

Ledger ids are taken when a transaction writes and seen when it commits, so with several writers
(bridges, the scheduler, the command line) an id can appear after a larger one. An id skipped over is
a hole: looked for again at each poll and published when it appears (after larger ids), given up once
it is HOLE_WAIT seconds old and every write transaction open when it was skipped has ended (a
rolled-back transaction leaves holes for good; see flow45.client.follower.Holes). A spell begins by
looking for the ids missing below where it starts (START_WINDOW of them), so an event whose
transaction was open while no bridge published, or when a bridge started, is streamed too.

Each team's last message of a read says in `x-flow45-settled` up to which id the ledger is settled:
every event of the team up to it was published in that message or before it in this spell, or never
will be. A follower that sees only its team's events (every other team's id is a hole to it) can
then pass its holes at once instead of waiting them out, and wait for as long as the bridge does
for an id still open. A team whose last message left ids above the mark gets an empty page with the
new mark once they are settled.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass

import pika
from peewee import JOIN

from bridge.side_thread import SideThread
from flow45 import names, wire
from flow45.client.follower import Holes
from flow45.clock import iso
from flow45.db import dialect
from flow45.models import Event, TaskInstance
from flow45.settings import Settings

log = logging.getLogger("flow45.bridge")

BATCH = 500
EVENTS_LOCK_KEY = 45_0002
STANDBY_INTERVAL = 1.0  # seconds between a waiting bridge's attempts to take the lock
HOLE_WAIT = 10.0  # seconds an id skipped over is looked for at least
START_WINDOW = 2_000  # ids below a spell's start looked for: far more than all writers hold at once


def newest_event_id() -> int:
    return Event.select(Event.id).order_by(Event.id.desc()).limit(1).scalar() or 0


@dataclass(frozen=True)
class Streamed:
    """A ledger event as the stream publishes it."""

    id: int
    team: str
    kind: str
    body: bytes  # the JSON of the `events` read's event (its LedgerEvent)


def ledger_page(after: int, limit: int, ids: list[int] | None = None) -> list[Streamed]:
    """Events with id > `after`, oldest first (`ids`: only those), each with its JSON body. Read as
    plain tuples, the stored detail copied into the body as it is (stored as JSON text by wire.dumps):
    the stream carries every event the bridge writes, and building rows and views for each cost the
    bridge more than publishing it."""
    query = (Event.select(Event.id, Event.at, Event.team, Event.run, Event.instance, Event.kind, Event.from_state,
                          Event.to_state, Event.actor, Event.detail.cast("text"), TaskInstance.task)
             .join(TaskInstance, JOIN.LEFT_OUTER, on=(TaskInstance.id == Event.instance))
             .where(Event.id > after).order_by(Event.id).limit(limit))
    if ids is not None:
        query = query.where(Event.id.in_(ids))
    page = []
    for id_, at, team, run, instance, kind, from_state, to_state, actor, detail, task in query.tuples():
        head = wire.dumps({"id": id_, "at": iso(at), "team": team, "run": run, "instance": instance, "kind": kind,
                           "from_state": from_state, "to_state": to_state, "actor": actor})
        body = f'{head[:-1]},"detail":{detail or "null"},"task":{wire.dumps(task)}}}'
        page.append(Streamed(id_, team, kind, body.encode()))
    return page


class EventPublisher(SideThread):
    """Reads the ledger after the last id it published, every `interval`, and publishes what is new,
    while it holds the events lock."""

    part = "events"

    def __init__(self, settings: Settings, interval: float = 0.2, standby_interval: float = STANDBY_INTERVAL,
                 heartbeat=None):
        super().__init__(settings, heartbeat)
        self.interval = interval
        self.standby_interval = standby_interval
        self.after: int | None = None  # the last id published (or noted while waiting); None: start at the newest
        self.publishing = False  # holds the lock: the one bridge publishing
        self.stream = ""  # this spell of publishing, named anew each time the lock is taken (app_id)
        self._pages: dict[str, int] = {}  # team -> pages published this spell (x-flow45-page)
        self._holes = Holes(wait=HOLE_WAIT)  # ids skipped over, while they may still commit
        self._unsettled: dict[str, int] = {}  # team -> its newest id published above the mark sent with it

    def _serve(self) -> None:
        lock = dialect().session_lock(EVENTS_LOCK_KEY)  # this thread's connection: lost with it
        connection = self._open_connection()  # closed below, whatever comes
        try:
            channel = connection.channel()
            channel.exchange_declare(names.EVENTS_EXCHANGE, "topic", durable=True)
            # Events go out through the channel's asynchronous side, which only buffers them; a page is
            # written out at once below. BlockingChannel.basic_publish polls the socket once per message.
            out = channel._impl
            self.ready.set()
            while not self._stop.is_set():
                self.beat()
                if not (lock.held or lock.refresh()):
                    self._wait_as_standby(connection)
                    continue
                if not self.publishing:
                    self.publishing = True
                    self.stream, self._pages = f"flow45-events-{uuid.uuid4().hex[:12]}", {}
                    if self.after is None:
                        self.after = newest_event_id()
                    self._holes.clear()
                    self._holes.writers = dialect()  # this thread's connection asks which writers are open
                    self._unsettled = {}
                    self._look_below_start()
                    log.info("bridge events: publishing the event stream after event %d", self.after)
                events = ledger_page(self.after, BATCH)
                full = len(events) == BATCH
                self._holes.read(self.after, [event.id for event in events])
                if events:
                    self.after = events[-1].id
                events = self._with_late(events)
                self._publish(out, events, self._holes.reread_after(self.after))
                if full:
                    connection.process_data_events(time_limit=0)  # writes out the page
                else:
                    connection.process_data_events(time_limit=self.interval)  # waits, and keeps the connection alive
        finally:
            self.publishing = False
            lock.lose()
            self._close_connection(connection)

    def _look_below_start(self) -> None:
        """The ids missing among the START_WINDOW below where this spell starts are holes: a transaction
        open then may still commit them."""
        floor = max(self.after - START_WINDOW, 0)
        present = Event.select(Event.id).where((Event.id > floor) & (Event.id <= self.after)).tuples()
        self._holes.read(floor, [event_id for (event_id,) in present])

    def _with_late(self, events: list[Streamed]) -> list[Streamed]:
        """The page with the events whose ids were skipped over and have committed since, in id order:
        each team's message then holds every id its mark covers."""
        missing = self._holes.missing()
        late = ledger_page(0, len(missing), ids=missing) if missing else []
        if not late:
            return events
        self._holes.filled(event.id for event in late)
        return sorted(late + events, key=lambda event: event.id)

    def _publish(self, out, events: list[Streamed], settled: int) -> None:
        """One message per team: its events of this page, oldest first (an `EventPage`), numbered among
        the team's pages of this spell, so that a follower whose capped queue dropped some knows. Its
        last message carries the `settled` mark, and a team waiting for the mark to pass its newest
        id gets an empty page once it has."""
        by_team: dict[str, list[Streamed]] = {}
        for event in events:
            by_team.setdefault(event.team, []).append(event)
        for team, newest in list(self._unsettled.items()):
            if team not in by_team and settled >= newest:
                self._send(out, team, [], settled)
        for team, events_of_team in by_team.items():
            pages = _pages_under(events_of_team, self.settings.max_message_bytes)
            for page in pages[:-1]:
                self._send(out, team, page, None)
            self._send(out, team, pages[-1], settled)

    def _send(self, out, team: str, page: list[Streamed], settled: int | None) -> None:
        body = b'{"events":[' + b",".join(e.body for e in page) + b"]}"
        number = self._pages[team] = self._pages.get(team, 0) + 1
        headers = {names.EVENT_PAGE_HEADER: number}
        if settled is not None:
            headers[names.EVENT_SETTLED_HEADER] = settled
            newest = page[-1].id if page else settled
            if settled < newest:
                self._unsettled[team] = newest
            else:
                self._unsettled.pop(team, None)
        message_id = f"events-{page[0].id}-{page[-1].id}" if page else f"events-settled-{settled}"
        properties = pika.BasicProperties(content_type="application/json", type="events", app_id=self.stream,
                                          message_id=message_id, headers=headers)
        out.basic_publish(names.EVENTS_EXCHANGE, team, body, properties)

    def _wait_as_standby(self, connection) -> None:
        if self.publishing:  # a new session without the lock: another bridge publishes now
            log.warning("bridge events: another bridge publishes the event stream now")
        self.publishing = False
        self._holes.clear()
        self._unsettled = {}
        self.after = newest_event_id()
        connection.process_data_events(time_limit=self.standby_interval)


PAGE_ENVELOPE = 64  # bytes of a page besides its events' bodies and the commas between them


def _pages_under(events: list[Streamed], cap: int) -> list[list[Streamed]]:
    """The events in pages of at most `cap` bytes each: a larger message would close the channel
    (the broker's max_message_size), and the page would be lost to every follower of the team."""
    pages: list[list[Streamed]] = [[]]
    size = PAGE_ENVELOPE
    for event in events:
        if pages[-1] and size + len(event.body) + 1 > cap:
            pages.append([])
            size = PAGE_ENVELOPE
        pages[-1].append(event)
        size += len(event.body) + 1
    return pages if pages[-1] else []
