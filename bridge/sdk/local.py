"""The local transport: the worker calls the core directly on the connected database.

In the embedded default there is no relay and no broker: this transport is the delivery. It takes
outbox rows for its functions with `flow45.store.outbox.take` (each row goes to exactly one caller)
and turns each worker message into the store call the bridge would make, with the same team check,
the same message-id idempotency and the same error codes in the `Reply`.
"""

from __future__ import annotations

import logging
import threading
from typing import Any, Callable

import peewee
from pydantic import ValidationError

from bridge.sdk.errors import ConnectionLost
from bridge.sdk.transport import OFFER, UNDO, Delivery, Subscription
from flow45 import names, store
from flow45.db import connect, database, drop_connection
from flow45.errors import Flow45Error
from flow45.messages import Reply, worker_messages
from flow45.migrate import require_schema
from flow45.store import outbox
from flow45.types import describe_errors

log = logging.getLogger(__name__)


class LocalTransport:
    """Deliveries from the outbox table, requests straight to `flow45.store`.

    `database_url` connects the shared peewee proxy now, in the calling thread; without it the
    database must already be connected (`flow45.db.connect`)."""

    def __init__(
        self, team: str, worker_name: str, *, database_url: str | None = None, poll_interval: float = 0.05,
    ):
        self.team = team
        self.worker_name = worker_name
        self.poll_interval = poll_interval
        if database_url is not None:
            connect(database_url)
        self._lock = threading.Lock()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._unacked: dict[str, int] = {}
        self._thread: threading.Thread | None = None
        self._closed = False

    # ---- deliveries ------------------------------------------------------------------------

    def open(self, subscription: Subscription, deliver: Callable[[Delivery], None]) -> None:
        require_schema()  # a store an upgrade has not reached would fail every take (as the bridge refuses it)
        routes = {names.offer_key(self.team, f): (OFFER, f) for f in subscription.functions}
        routes |= {names.undo_key(self.team, f): (UNDO, f) for f in subscription.undo_functions}
        self._unacked = {key: 0 for key in routes}
        self._thread = threading.Thread(
            target=self._poll, args=(routes, subscription.prefetch, deliver), name=f"flow45-local-{self.worker_name}",
            daemon=True,
        )
        self._thread.start()

    def _poll(self, routes: dict[str, tuple[str, str]], prefetch: int, deliver: Callable[[Delivery], None]) -> None:
        try:
            while not self._stop.is_set():
                self._wake.clear()
                if not self._hand_out(routes, prefetch, deliver):
                    self._wake.wait(self.poll_interval)
        finally:
            database.close()

    def _hand_out(self, routes: dict[str, tuple[str, str]], prefetch: int, deliver) -> int:
        """Take up to `prefetch` unacknowledged rows per routing key, most urgent first."""
        handed = 0
        for key, (kind, function) in routes.items():
            with self._lock:
                room = prefetch - self._unacked[key]
            if room <= 0 or self._stop.is_set():
                continue
            try:
                rows = outbox.take([key], limit=room)
            except peewee.PeeweeException as exc:
                log.warning("local transport: reading the outbox failed (%s); trying again", exc)
                drop_connection()  # peewee never reconnects: after a server restart the next take opens a new one
                self._stop.wait(1.0)
                return handed
            for row in rows:
                with self._lock:
                    self._unacked[key] += 1
                delivery = Delivery(kind, function, row.body)
                delivery._settle = self._settler(key, row.id)
                deliver(delivery)
                handed += 1
        return handed

    def _settler(self, key: str, row_id: int) -> Callable[[bool, bool], None]:
        def settle(ack: bool, requeue: bool) -> None:
            if not ack and requeue:
                self._release(row_id)
            with self._lock:
                self._unacked[key] -= 1
            self._wake.set()

        return settle

    @staticmethod
    def _release(row_id: int) -> None:
        """A nack with requeue: the row is pending again, for the next take (as the broker requeues)."""
        try:
            outbox.release([row_id])
        except peewee.PeeweeException as exc:
            drop_connection()
            log.warning("local transport: could not put outbox row %s back (%s); the scheduler offers it again", row_id, exc)

    def stop_consuming(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)

    def close(self) -> None:
        self.stop_consuming()
        self._closed = True

    def thread_done(self) -> None:
        database.close()  # this thread's connection only

    # ---- requests --------------------------------------------------------------------------

    def request(self, message: dict[str, Any], message_id: str, timeout: float) -> Reply:
        """The store call the bridge would make for this message, answered the same way."""
        if self._closed:
            raise ConnectionLost("the local transport is closed")
        try:
            parsed = worker_messages().validate_python(message)
        except ValidationError as exc:
            return Reply(ok=False, code="invalid_message", error=describe_errors(exc))
        try:
            result = self._apply(parsed, message_id)
        except Flow45Error as exc:
            return Reply(ok=False, code=exc.code, error=exc.message)
        except peewee.PeeweeException as exc:
            # Like a bridge that lost its database: no answer; the same message id may be sent again,
            # on a new connection (peewee never reconnects by itself).
            drop_connection()
            raise ConnectionLost(f"database error: {exc}") from exc
        return Reply(ok=True, result=result.to_json())

    def _apply(self, message, message_id: str):
        return store.apply_message(message, team=self.team, message_id=message_id)
