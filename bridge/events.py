"""The team event streams: each ledger event, in id order, published to the topic exchange
`flow45.events` with its team as the routing key. A team's operators may bind only their team's key
(topic permissions), so a dashboard follows its team's ledger without polling, and other tools
(notifications, audit exports) can subscribe the same way.

The stream is live, not a store: it starts at the newest event when the bridge starts, and a
subscriber that was away re-reads what it missed by ledger id (the `events` read). It runs on a
thread of its own, with its own broker and database connections, off the workers' path.
"""

from __future__ import annotations

import pika

from bridge.failures import open_blocking
from bridge.side_thread import SideThread
from flow45 import names, store, wire
from flow45.models import Event
from flow45.settings import Settings

BATCH = 500


def newest_event_id() -> int:
    return Event.select(Event.id).order_by(Event.id.desc()).limit(1).scalar() or 0


class EventPublisher(SideThread):
    """Reads the ledger after the last id it published, every `interval`, and publishes what is new."""

    part = "events"

    def __init__(self, settings: Settings, interval: float = 0.2):
        super().__init__(settings)
        self.interval = interval
        self.after: int | None = None  # the last id published; None: start at the newest

    def _serve(self) -> None:
        connection = open_blocking(self.settings.amqp_url)
        try:
            channel = connection.channel()
            channel.exchange_declare(names.EVENTS_EXCHANGE, "topic", durable=True)
            if self.after is None:
                self.after = newest_event_id()
            self.ready.set()
            while not self._stop.is_set():
                events = store.list_events(self.after, limit=BATCH)
                for event in events:
                    properties = pika.BasicProperties(
                        content_type="application/json", message_id=f"event-{event.id}", type=event.kind,
                    )
                    channel.basic_publish(names.EVENTS_EXCHANGE, event.team, wire.dumps(event.to_json()).encode(),
                                          properties)
                    self.after = event.id
                if len(events) < BATCH:
                    connection.process_data_events(time_limit=self.interval)  # waits, and keeps the connection alive
        finally:
            if connection.is_open:
                connection.close()
