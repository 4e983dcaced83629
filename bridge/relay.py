"""The bridge's publishing side: one channel with publisher confirms, for outbox rows (the relay),
replies and dead-letter copies.

An outbox row is published persistent and mandatory, and stays in flight until the broker confirms
it; confirmed rows are then marked sent, by the next batch's transaction or, if none comes soon, by a
transaction of their own. A nack, an unroutable return or a lost channel leaves the row pending, so
the next relay publishes it again. Only the bridge holding the relay lock publishes rows; the others
leave theirs to it, and wake it once their batch committed (`outbox.announce_committed`). Runs on
pika's IO loop thread, as the consumer side does (`bridge.service`).
"""

from __future__ import annotations

import collections
import logging
import time
from typing import Callable

import pika

from bridge import answers
from bridge.commits import Lanes
from bridge.relay_lock import RelayLock
from bridge.wakeup import OutboxListener
from flow45 import metrics, names, wire
from flow45.db import describe_db_error, drop_connection
from flow45.store import outbox
from flow45.store.outbox import OutboxMessage

log = logging.getLogger("flow45.bridge")

MAX_IN_FLIGHT = 5000
RELAY_PAGE = 500  # pending rows read at a time, until MAX_IN_FLIGHT are in flight
# Rows published in one turn of the IO loop; the rest wait for the next turns. A wide run's fan-out
# writes thousands of offers in one batch: published in one go, the answers of every batch finished
# meanwhile waited behind all of them.
PUBLISH_SLICE = 200
MAX_UNMARKED = 1000  # confirmed outbox rows waiting for a transaction to mark them sent
MARK_DELAY = 0.05  # seconds a confirmed row waits for a batch to mark it, before a transaction of its own
# A queue that refused a row (full: setup-broker caps each offer queue) gets no rows for this long,
# doubling while it refuses, up to FULL_WAIT_MAX. Retried on every relay pass instead, one team's full
# queues would take the relay's whole in-flight budget, again and again, ahead of the other teams' rows.
FULL_WAIT, FULL_WAIT_MAX = 1.0, 60.0
REFUSALS_SAID_EVERY = 60.0  # seconds between the log lines that name the full queues


class Relay:
    def __init__(self, lanes: Lanes, dead_confirmed: Callable[[list[int]], None],
                 dead_refused: Callable[[int], None], topology_needed: Callable[[], None],
                 max_message_bytes: int = 1024 * 1024) -> None:
        """`dead_confirmed(tags)`: the deliveries whose dead-letter copies the broker confirmed;
        `dead_refused(tag)`: one whose copy it refused; `topology_needed()`: a row found no queue;
        `max_message_bytes`: rows larger are not published (the setting)."""
        self._lanes = lanes
        self.max_message_bytes = max_message_bytes
        self._dead_confirmed, self._dead_refused, self._topology_needed = dead_confirmed, dead_refused, topology_needed
        self.lock = RelayLock()
        self.listener: OutboxListener | None = None
        self.channel = None
        self._ioloop = None
        self.reset()

    def reset(self) -> None:
        """No channel (a new connection comes): every publish unconfirmed counts as not published."""
        self.channel = None
        self._offer_origin: dict[int, float] = {}  # outbox id -> when its batch's first message came
        self._publish_tag = 0
        self._unconfirmed: dict[int, tuple[str, object]] = {}  # publish tag -> (kind, ref)
        self._in_flight: set[int] = set()  # outbox ids published (or waiting in _to_publish) and not yet marked sent
        self._to_publish: collections.deque[OutboxMessage] = collections.deque()
        self._slice_scheduled = False
        self._returned: set[int] = set()
        self._confirmed: list[int] = []  # outbox ids the broker confirmed, not yet marked sent
        self._mark_scheduled = False
        self._wake_scheduled = False
        self._behind = False  # the last pass stopped at MAX_IN_FLIGHT with rows still pending
        self._again_scheduled = False
        self._full: dict[str, tuple[float, float]] = {}  # routing key -> (no rows before, next wait), monotonic
        self._too_large: set[int] = set()  # outbox ids over max_message_bytes: never published, said once
        self._refusals_said_at = -REFUSALS_SAID_EVERY

    def listen(self, ioloop, on_rows: Callable[[], None], also_own) -> None:
        self._ioloop = ioloop
        self._relay_again = on_rows
        self.listener = OutboxListener(ioloop, on_rows, also_own)

    def attach(self, channel) -> None:
        """The publish channel opened: confirms on."""
        self.channel = channel
        channel.add_on_return_callback(self._on_return)
        channel.confirm_delivery(self._on_confirm)

    def detach(self) -> None:
        self.channel = None

    def lose(self) -> None:
        """The database connection is gone, and with it the relay lock and the LISTEN session."""
        self.lock.lose()
        if self.listener is not None:
            self.listener.close()

    @property
    def awaiting_confirms(self) -> bool:
        """Messages published on the channel, or queued to be, that the broker has not confirmed yet."""
        return bool(self._unconfirmed or self._to_publish)

    @property
    def relaying(self) -> bool:
        """This bridge publishes outbox rows: it has a channel and holds the relay lock."""
        return self.channel is not None and self.lock.held

    # ---- publishing --------------------------------------------------------------------------

    def publish(self, exchange: str, key: str, body: bytes, properties, kind: str, ref, mandatory: bool = False) -> None:
        self.channel.basic_publish(exchange, key, body, properties, mandatory=mandatory)
        self._publish_tag += 1
        self._unconfirmed[self._publish_tag] = (kind, ref)

    def tick(self) -> None:
        """Hold the relay lock, listen, mark what was confirmed, relay what is pending."""
        self.lock.refresh()
        self.listener.ensure()
        self.flush_confirmed()
        self.relay()

    def relay(self) -> None:
        """Publish the pending rows (those written by other processes, or left pending)."""
        full = self._full_keys()
        self._behind = False
        while self.relaying and len(self._in_flight) < MAX_IN_FLIGHT:
            rows = outbox.pending(limit=RELAY_PAGE, exclude=self._in_flight | self._too_large, skip_keys=full)
            self.publish_rows(rows)  # in flight now: the next page passes over them
            if len(rows) < RELAY_PAGE:
                return
        self._behind = self.relaying

    def committed(self, rows: list[OutboxMessage] | None) -> None:
        """A batch of this bridge committed: publish the outbox rows it wrote (None: it wrote some
        through the store, unlisted: read them back). A bridge that does not relay wakes the one
        that does instead: its batches commit without a notification, so that they share flushes."""
        if rows is not None:
            self.publish_rows(rows)  # learns their runs; published only if this bridge relays
        elif self.relaying:
            self.relay()
        if not self.relaying and (rows is None or rows):
            self._wake_the_relay()

    def publish_rows(self, rows: list[OutboxMessage]) -> None:
        """Publish the rows, PUBLISH_SLICE of them now and the rest on the IO loop's next turns (in
        flight from now: a relay pass meanwhile passes over them)."""
        self._lanes.learn(row.body for row in rows)
        if not self.relaying:
            return  # the relay that holds the lock publishes them
        fresh = [row for row in rows if row.id not in self._in_flight]
        self._in_flight.update(row.id for row in fresh)
        self._to_publish.extend(fresh)
        self._publish_slice()

    def _publish_slice(self) -> None:
        self._slice_scheduled = False
        if not self.relaying:  # lost the channel or the lock: pending again, for whoever relays next
            self._in_flight.difference_update(row.id for row in self._to_publish)
            self._to_publish.clear()
            return
        full = self._full_keys()
        for _ in range(min(PUBLISH_SLICE, len(self._to_publish))):
            self._publish_row(self._to_publish.popleft(), full)
        if self._to_publish and not self._slice_scheduled and self._ioloop is not None:
            self._slice_scheduled = True
            self._ioloop.call_later(0, self._publish_slice)  # after the answers the IO loop holds

    def _publish_row(self, row: OutboxMessage, full: set[str]) -> None:
        if row.routing_key in full:
            self._in_flight.discard(row.id)  # its queue is full: pending, published when it takes rows
            return
        properties = pika.BasicProperties(
            content_type=answers.JSON, delivery_mode=2, priority=row.priority, message_id=f"outbox-{row.id}",
            type=row.kind,
        )
        body = (row.text or wire.dumps(row.body)).encode()  # stored through wire.dumps: always JSON
        if len(body) > self.max_message_bytes:
            self._in_flight.discard(row.id)
            self._refuse_too_large(row, len(body))
            return
        self.publish(names.TASKS_EXCHANGE, row.routing_key, body, properties, "outbox", (row.id, row.routing_key),
                     mandatory=True)

    def _wake_the_relay(self) -> None:
        """Once per pass of the IO loop, however many batches finished in it."""
        if not self._wake_scheduled and self._ioloop is not None:
            self._wake_scheduled = True
            self._ioloop.call_later(0, self._send_wake)

    def _send_wake(self) -> None:
        self._wake_scheduled = False
        try:
            outbox.announce_committed()
        except Exception as exc:
            log.warning("bridge: waking the relay: %s; it finds the rows on its next poll", self._database_failed(exc))

    def offers_from(self, received: float, written: list[OutboxMessage] | None) -> None:
        """The offers a batch wrote: each one's hop, from `received`, ends when the broker confirms it.
        A relay pass between the commit and this call may have published one already, and the broker
        confirmed it: its hop has ended (kept as an origin, nothing would ever take it)."""
        if not self.relaying:
            return  # published by the relay that holds the lock: no hop measured here
        offers = [row for row in written or () if row.kind == "offer"]
        confirmed = set(self._confirmed) if offers and self._confirmed else ()
        for row in offers:
            if row.id in confirmed:
                metrics.HOP_LATENCY.observe(time.monotonic() - received)
            else:
                self._offer_origin[row.id] = received

    # ---- confirms ----------------------------------------------------------------------------

    def _on_return(self, channel, method, properties, body) -> None:
        message_id = properties.message_id or ""
        if message_id.startswith("outbox-"):
            self._returned.add(int(message_id.removeprefix("outbox-")))
            log.warning("bridge: no queue for %s; redeclaring the topology, the row stays pending", method.routing_key)
            self._topology_needed()

    def _on_confirm(self, frame) -> None:
        method = frame.method
        acked = isinstance(method, pika.spec.Basic.Ack)
        tags = sorted(t for t in self._unconfirmed if t <= method.delivery_tag) if method.multiple else [method.delivery_tag]
        dead_done: list[int] = []
        for tag in tags:
            kind, ref = self._unconfirmed.pop(tag, (None, None))
            if kind == "outbox":
                ref, key = ref
                origin = self._offer_origin.pop(ref, None)
                if acked and ref not in self._returned:
                    self._confirmed.append(ref)  # stays in flight until marked sent
                    if origin is not None:
                        metrics.HOP_LATENCY.observe(time.monotonic() - origin)
                else:
                    self._in_flight.discard(ref)  # published again on the next relay
                    if not acked:
                        self._refused_by(key)
                self._returned.discard(ref)
            elif kind == "dead":
                if acked:
                    dead_done.append(ref)
                else:  # give it back: it will be refused and dead-lettered again
                    self._dead_refused(ref)
        if dead_done:
            self._dead_confirmed(dead_done)
        if len(self._confirmed) >= MAX_UNMARKED:
            self.flush_confirmed()
        elif self._confirmed and not self._mark_scheduled:
            # The next batch marks them in its own transaction; if none comes soon, a transaction of their own.
            self._mark_scheduled = True
            self._ioloop.call_later(MARK_DELAY, self.flush_confirmed)

    def _refuse_too_large(self, row: OutboxMessage, size: int) -> None:
        """A row the broker would refuse by closing the channel, and the bridge would then reconnect for
        every team, and publish it again first: it stays pending, unpublished, and is said once."""
        if row.id not in self._too_large:
            self._too_large.add(row.id)
            instance = row.body.get("instance") if isinstance(row.body, dict) else None
            log.error("bridge: outbox row %d (%s %s, task instance %s) is %d bytes, over max_message_bytes (%d): not "
                      "published; its task cannot be sent to a worker (too many or too large inputs)", row.id,
                      row.team, row.kind, instance, size, self.max_message_bytes)

    def _refused_by(self, key: str) -> None:
        """The queue of `key` refused a row: it gets none for a while, longer each time it refuses
        within FULL_WAIT_MAX * 2 of the last time (a row it took meanwhile does not shorten the wait:
        a queue that workers drain slowly would take a row, then refuse the in-flight budget's worth)."""
        now = time.monotonic()
        not_before, wait = self._full.get(key, (0.0, FULL_WAIT))
        if not_before > now:
            return  # refused again by a row published before the first refusal came back
        self._full[key] = (now + wait, min(wait * 2, FULL_WAIT_MAX))
        if now - self._refusals_said_at >= REFUSALS_SAID_EVERY:
            self._refusals_said_at = now
            log.warning("bridge: the broker refused rows for %s (a full queue: setup-broker caps each offer queue); "
                        "they stay pending, offered again when it takes them (tried at most %.0f s apart)",
                        ", ".join(sorted(self._full_keys())), FULL_WAIT_MAX)

    def _full_keys(self) -> set[str]:
        """The routing keys whose queue refused a row lately; refusals long past are forgotten."""
        now = time.monotonic()
        self._full = {key: held for key, held in self._full.items() if held[0] > now - 2 * FULL_WAIT_MAX}
        return {key for key, (not_before, _) in self._full.items() if not_before > now}

    # ---- marking sent ------------------------------------------------------------------------

    def take_sent(self) -> list[int]:
        """The confirmed outbox rows, for a batch to mark sent in its own transaction."""
        sent, self._confirmed = self._confirmed, []
        return sent

    def return_sent(self, ids: list[int]) -> None:
        """Rows a batch took to mark and did not: they wait for the next."""
        self._confirmed = ids + self._confirmed

    def batch_marked(self, ids: list[int]) -> None:
        """A batch committed with these rows marked sent: no longer in flight."""
        self._in_flight.difference_update(ids)
        self._room_made()

    def _room_made(self) -> None:
        """Rows left the in-flight budget: a backlog the last pass left pending goes on at once, not at
        the next tick (which held a backlog to MAX_IN_FLIGHT rows a relay_interval)."""
        if (self._behind and not self._again_scheduled and len(self._in_flight) <= MAX_IN_FLIGHT // 2
                and self._ioloop is not None):
            self._again_scheduled = True
            self._ioloop.call_later(0, self._go_on)

    def _go_on(self) -> None:
        self._again_scheduled = False
        self._relay_again()

    def flush_confirmed(self) -> None:
        """Mark the confirmed rows sent in a transaction of their own."""
        self._mark_scheduled = False
        if not self._confirmed:
            return
        ids, self._confirmed = self._confirmed, []
        try:
            outbox.mark_sent(ids, wait_for_disk=False)
            self._in_flight.difference_update(ids)
            self._room_made()
        except Exception as exc:
            reason = self._database_failed(exc)
            self._confirmed.extend(ids)  # published already: marking can wait for the database
            log.warning("bridge: marking %d outbox rows sent: %s", len(ids), reason)

    def _database_failed(self, exc: Exception) -> str:
        """A database failure on the IO loop's connection: drop it (and with it the relay lock and the
        LISTEN session); returns what went wrong. Anything else is re-raised."""
        reason = describe_db_error(exc)
        if reason is None:
            raise exc
        drop_connection()
        self.lose()
        return reason
