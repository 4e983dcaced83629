"""The AMQP transport: one I/O thread owns the pika connection; other threads hand it work.

Offers and undo notices are consumed from `flow45.tasks.TEAM.FUNCTION[.undo]` (prefetch per
consumer = the worker's concurrency). Worker messages are published to `flow45.in.TEAM` with a
fresh correlation id, `reply_to` = RabbitMQ's direct reply-to, a `message_id` (the idempotency
key) and `user_id` (the broker checks it is the connection's user). Replies come back on the same
channel. Task threads reach the connection only through `add_callback_threadsafe`, as pika's
examples do; on connection loss the thread reconnects with capped backoff, fails the requests in
flight (the worker sends them again with the same message id) and subscribes again.

`request_async` is for the worker's claims: sent from the I/O thread itself (in the delivery's
callback), it costs no hand-over, and its answer is passed to a callback on the I/O thread.
"""

from __future__ import annotations

import collections
import functools
import heapq
import itertools
import logging
import threading
import time
from typing import Any, Callable

import pika
import pika.exceptions

from bridge.failures import describe_amqp_error, refused_as_full
from bridge.logs import quiet_pika
from bridge.pika_sends import send_now
from bridge.sdk.errors import ConnectionLost, InboxFull, RequestTimeout, TransportError, Unroutable
from bridge.sdk.transport import OFFER, UNDO, Delivery, Subscription
from flow45 import names, wire
from flow45.messages import Reply
from flow45.outage import Backoff
from flow45.urls import amqp_parameters

log = logging.getLogger(__name__)

REPLY_TO = "amq.rabbitmq.reply-to"
_FAILURES = (pika.exceptions.AMQPError, OSError)


class _Pending:
    """A request waiting for its reply: a thread waits on `done`, or `callback` is called with it."""

    __slots__ = ("done", "reply", "error", "callback")

    def __init__(self, callback: Callable[[Reply | None, TransportError | None], None] | None = None) -> None:
        self.done = threading.Event() if callback is None else None
        self.reply: Reply | None = None
        self.error: TransportError | None = None
        self.callback = callback

    def finish(self, reply: Reply | None = None, error: TransportError | None = None) -> None:
        self.reply, self.error = reply, error
        if self.callback is None:
            self.done.set()
            return
        try:
            self.callback(reply, error)
        except Exception:  # noqa: BLE001 - the I/O thread must survive its callers' bugs
            log.exception("handling the reply to a request failed")


class AmqpTransport:
    """Worker messages over RabbitMQ, as a team's worker user.

    `url` is an AMQP URL (amqp://USER:PASS@HOST:PORT/VHOST); `prefetch` overrides the unacknowledged
    deliveries per queue (default: the worker's concurrency)."""

    def __init__(
        self, url: str, team: str, worker_name: str, *, prefetch: int | None = None,
        reconnect_min: float = 0.5, reconnect_max: float = 30.0, resubscribe_interval: float = 5.0,
    ):
        quiet_pika()
        self.url = url
        self.team = team
        self.worker_name = worker_name
        self.prefetch = prefetch
        self.reconnect_min = reconnect_min
        self.reconnect_max = reconnect_max
        self.resubscribe_interval = resubscribe_interval
        self.exchange = names.inbound_exchange(team)
        self._params = amqp_parameters(url)  # ValueError naming what is wrong with the URL
        self._params.client_properties = {"connection_name": f"flow45 worker {team}/{worker_name}"}
        if self._params.blocked_connection_timeout is None:
            self._params.blocked_connection_timeout = 60
        self.user: str | None = getattr(self._params.credentials, "username", None)
        self._lock = threading.Lock()
        self._ops: collections.deque[Callable[[], None]] = collections.deque()
        self._pending: dict[str, _Pending] = {}
        self._deadlines: list[tuple[float, str, tuple]] = []  # (when, correlation id, what) of request_async
        self._correlation = itertools.count()  # ids only need to be unique among this transport's requests
        self._io_thread_id: int | None = None
        self._conn: pika.BlockingConnection | None = None
        self._channel = None
        self._out = None  # the channel's asynchronous side: see _connect
        self._published = 0  # messages published on the current channel: the broker confirms them by number
        self._unconfirmed: dict[int, tuple[str, str]] = {}  # number -> (correlation id, kind), oldest first
        self._wake_pending = False
        self._generation = 0
        self._queues: dict[str, tuple[str, str]] = {}  # queue -> (kind, function)
        self._tags: dict[str, str] = {}  # queue -> consumer tag on the current channel
        self._missing: set[str] = set()  # queues reported missing, until found
        self._want_consume = False
        self._stopped_consuming = False
        self._prefetch = 1
        self._deliver: Callable[[Delivery], None] | None = None
        self._closing = threading.Event()
        self.connected = threading.Event()
        self._thread: threading.Thread | None = None

    # ---- the interface the worker uses ---------------------------------------------------

    def open(self, subscription: Subscription | None, deliver: Callable[[Delivery], None] | None = None) -> None:
        """Connect in the background; consume the subscription's queues (None: requests only)."""
        if subscription is not None:
            self._queues = {names.offer_queue(self.team, f): (OFFER, f) for f in subscription.functions}
            self._queues |= {names.undo_queue(self.team, f): (UNDO, f) for f in subscription.undo_functions}
            self._prefetch = self.prefetch or subscription.prefetch
            self._want_consume = bool(self._queues) and not self._closing.is_set() and not self._stopped_consuming
        self._deliver = deliver
        self._thread = threading.Thread(target=self._io_main, name=f"flow45-amqp-{self.worker_name}", daemon=True)
        self._thread.start()

    def request(self, message: dict[str, Any], message_id: str, timeout: float) -> Reply:
        if self._closing.is_set():
            raise ConnectionLost("the AMQP transport is closed")
        correlation_id = str(next(self._correlation))
        pending = _Pending()
        with self._lock:
            self._pending[correlation_id] = pending
        body = wire.dumps(message).encode()  # NotJSON (a ValueError) for NaN or ±Infinity: never sent
        self._submit(functools.partial(self._publish, message["type"], body, message_id, correlation_id))
        answered = pending.done.wait(timeout)
        with self._lock:
            self._pending.pop(correlation_id, None)
        if not answered:
            raise RequestTimeout(_unanswered(message["type"], message_id, timeout))
        if pending.error is not None:
            raise pending.error
        assert pending.reply is not None
        return pending.reply

    def request_async(
        self, message: dict[str, Any], message_id: str, timeout: float,
        callback: Callable[[Reply | None, TransportError | None], None],
    ) -> None:
        """Send like `request`, but return at once: `callback(reply, None)`, or `callback(None, error)`
        when unanswered, is called once, on the I/O thread (or on the thread that closes the transport).
        Raises ConnectionLost (and never calls back) if the transport is closed or not connected: the
        caller then sends it the waiting way, whose timeouts run while the connection is down."""
        correlation_id = str(next(self._correlation))
        body = wire.dumps(message).encode()
        what = (message["type"], message_id, timeout)  # said only if it times out
        with self._lock:  # _disconnect clears `connected` before it fails what is pending, under this lock
            if self._closing.is_set() or not self.connected.is_set():
                raise ConnectionLost("the AMQP transport is closed" if self._closing.is_set()
                                     else "not connected to RabbitMQ")
            self._pending[correlation_id] = _Pending(callback)
            heapq.heappush(self._deadlines, (time.monotonic() + timeout, correlation_id, what))
        publish = functools.partial(self._publish, message["type"], body, message_id, correlation_id)
        if threading.get_ident() == self._io_thread_id and self._out is not None and self._out.is_open:
            publish()
        else:
            self._submit(publish)

    def stop_consuming(self, timeout: float = 10.0) -> None:
        """Cancel the consumers (pika requeues deliveries it has not dispatched yet) and wait for it."""
        with self._lock:
            self._stopped_consuming = True
            if not self._want_consume:
                return
            self._want_consume = False
        if not self.connected.is_set():
            return
        done = threading.Event()
        self._submit(functools.partial(self._cancel_consumers, done))
        if not done.wait(timeout):
            log.warning("consumers not cancelled within %gs; closing the connection requeues their messages", timeout)

    def close(self, timeout: float = 10.0) -> None:
        """Flush pending acks, close the connection and stop the I/O thread."""
        self._want_consume = False
        self._closing.set()
        self._wake()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)
        self._fail_pending(ConnectionLost("the AMQP transport closed"))

    def thread_done(self) -> None:
        pass

    # ---- hand-over to the I/O thread --------------------------------------------------------

    def _submit(self, op: Callable[[], None]) -> None:
        self._ops.append(op)
        if not self._wake_pending:  # one wake-up runs every op queued before it ran
            self._wake_pending = True
            self._wake()

    def _wake(self) -> None:
        conn = self._conn
        if conn is None:
            return
        try:
            conn.add_callback_threadsafe(self._run_ops)
        except Exception:  # noqa: BLE001 - closed meanwhile: the I/O loop runs the ops after reconnecting
            pass

    def _run_ops(self) -> None:
        self._wake_pending = False  # before draining: an op queued from now on wakes the loop again
        while self._ops and self._channel is not None and self._channel.is_open:
            self._ops.popleft()()
        if self._conn is not None:
            send_now(self._conn._impl)  # a submit leaves now, not at the loop's next poll

    # ---- the I/O thread ---------------------------------------------------------------------

    def _io_main(self) -> None:
        self._io_thread_id = threading.get_ident()
        backoff = Backoff(self._closing, first=self.reconnect_min, cap=self.reconnect_max)
        while not self._closing.is_set():
            reason: BaseException | None = None
            started = time.monotonic()
            try:
                self._connect()
                self._serve()
            except Exception as exc:  # noqa: BLE001 - whatever it was, the worker needs the connection back
                reason = exc
                if not self._closing.is_set():
                    if isinstance(exc, _FAILURES):
                        log.warning("%s; reconnecting in %.1fs", describe_amqp_error(exc, self.url), backoff.delay)
                    else:
                        log.exception("unexpected error on the AMQP connection; reconnecting in %.1fs", backoff.delay)
            finally:
                self._disconnect(reason)
            if self._closing.is_set():
                break
            backoff.wait()
            # Back off while connections fail soon after opening; start over after a good one.
            if time.monotonic() - started > 30:
                backoff.reset()

    def _connect(self) -> None:
        self._conn = pika.BlockingConnection(self._params)  # closed by _disconnect whatever happens next
        channel = self._conn.channel()
        channel.add_on_return_callback(self._on_return)
        channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)  # before any request is published
        if self._queues:
            channel.basic_qos(prefetch_count=self._prefetch)
        self._generation += 1
        self._tags = {}
        self._channel = channel
        # Publishes and acks go through the channel's asynchronous side, which only buffers them: the
        # I/O loop writes them out at its next poll, all of one pass together. BlockingChannel's own
        # methods would poll the socket once per message.
        self._out = channel._impl
        # Confirms, so that a message the broker refuses (its team's inbox full) fails its request at
        # once, named, instead of waiting out the timeout.
        self._out.confirm_delivery(self._on_confirm)
        self._published, self._unconfirmed = 0, {}
        self.connected.set()
        log.info("connected to %s as %s", self._params.host, self.user)

    def _serve(self) -> None:
        next_check = 0.0
        while True:
            if self._want_consume and time.monotonic() >= next_check:
                self._subscribe_missing()
                next_check = time.monotonic() + self.resubscribe_interval
            self._run_ops()
            if self._closing.is_set() and not self._ops:
                self._conn.process_data_events(time_limit=0)  # writes out what the last ops buffered
                return
            self._conn.process_data_events(time_limit=0.25)
            if self._deadlines and self._deadlines[0][0] <= time.monotonic():
                self._expire()
            if self._channel.is_closed:
                reason = getattr(self._channel, "_closing_reason", None)
                raise pika.exceptions.ChannelClosed(0, f"channel closed by the broker: {reason}")

    def _disconnect(self, reason: BaseException | None = None) -> None:
        self.connected.clear()
        conn, self._conn, self._channel, self._out = self._conn, None, None, None
        why = f": {reason}" if reason is not None else ""
        self._fail_pending(ConnectionLost(f"the connection to RabbitMQ was lost before the reply came{why}"))
        if conn is not None and conn.is_open:
            try:
                conn.close()
            except _FAILURES:
                pass

    def _fail_pending(self, error: TransportError) -> None:
        with self._lock:
            pending, self._pending = list(self._pending.values()), {}
            self._deadlines = []
        for item in pending:
            item.finish(error=error)

    def _expire(self) -> None:
        """Time out the asynchronous requests past their deadline (the answered ones are gone already)."""
        now, expired = time.monotonic(), []
        with self._lock:
            while self._deadlines and self._deadlines[0][0] <= now:
                _, correlation_id, what = heapq.heappop(self._deadlines)
                if (pending := self._pending.pop(correlation_id, None)) is not None:
                    expired.append((pending, what))
        for pending, what in expired:
            pending.finish(error=RequestTimeout(_unanswered(*what)))

    # ---- consuming --------------------------------------------------------------------------

    def _subscribe_missing(self) -> None:
        active = set(self._channel.consumer_tags)
        for queue, (kind, function) in self._queues.items():
            if self._tags.get(queue) in active:
                continue
            if not self._queue_exists(queue):
                continue
            callback = functools.partial(self._on_delivery, kind, function, self._generation)
            self._tags[queue] = self._channel.basic_consume(queue, callback)
            if queue in self._missing:
                self._missing.discard(queue)
                log.info("queue %s exists now; consuming it", queue)
            else:
                log.info("consuming %s", queue)

    def _queue_exists(self, queue: str) -> bool:
        """A passive declare on a throwaway channel (a 404 closes that channel only)."""
        probe = self._conn.channel()
        try:
            probe.queue_declare(queue, passive=True)
            return True
        except pika.exceptions.ChannelClosedByBroker as exc:
            level = logging.DEBUG if queue in self._missing else logging.WARNING
            self._missing.add(queue)
            why = "does not exist (is the workflow deployed and the bridge running?)" if exc.reply_code == 404 \
                else f"is refused to user {self.user}: {exc.reply_text}"
            log.log(level, "queue %s %s; trying again every %gs", queue, why, self.resubscribe_interval)
            return False
        finally:
            if probe.is_open:
                probe.close()

    def _cancel_consumers(self, done: threading.Event) -> None:
        try:
            for queue, tag in list(self._tags.items()):
                if tag in self._channel.consumer_tags:
                    self._channel.basic_cancel(tag)
            self._tags = {}
        finally:
            done.set()

    def _on_delivery(self, kind: str, function: str, generation: int, _channel, method, _properties, body: bytes) -> None:
        delivery = Delivery(kind, function, body, redelivered=bool(method.redelivered))
        delivery._settle = functools.partial(self._request_settle, generation, method.delivery_tag)
        if self._deliver is None:
            delivery.nack(requeue=True)
            return
        self._deliver(delivery)

    def _request_settle(self, generation: int, tag: int, ack: bool, requeue: bool) -> None:
        if threading.get_ident() == self._io_thread_id:
            self._settle(generation, tag, ack, requeue)
        else:
            self._submit(functools.partial(self._settle, generation, tag, ack, requeue))

    def _settle(self, generation: int, tag: int, ack: bool, requeue: bool) -> None:
        if generation != self._generation or self._out is None or not self._out.is_open:
            return  # that channel is gone: the broker has requeued the message already
        if ack:
            self._out.basic_ack(tag)
        else:
            self._out.basic_nack(tag, requeue=requeue)

    # ---- requests and replies ---------------------------------------------------------------

    def _publish(self, kind: str, body: bytes, message_id: str, correlation_id: str) -> None:
        with self._lock:
            wanted = correlation_id in self._pending
        if not wanted:
            return  # the caller gave up waiting
        properties = pika.BasicProperties(
            content_type="application/json", delivery_mode=pika.DeliveryMode.Persistent, message_id=message_id,
            user_id=self.user, reply_to=REPLY_TO, correlation_id=correlation_id, app_id="flow45-sdk",
            timestamp=int(time.time()),
        )
        self._out.basic_publish(self.exchange, kind, body, properties, mandatory=True)
        self._published += 1
        self._unconfirmed[self._published] = (correlation_id, kind)

    def _on_confirm(self, frame) -> None:
        """The broker took (ack) or refused (nack) every message up to this number, or this one."""
        method = frame.method
        numbers = [method.delivery_tag]
        if method.multiple:
            numbers = list(itertools.takewhile(lambda n: n <= method.delivery_tag, self._unconfirmed))
        refused = isinstance(method, pika.spec.Basic.Nack)
        for number in numbers:
            correlation_id, kind = self._unconfirmed.pop(number, (None, ""))
            if refused and correlation_id is not None:
                with self._lock:
                    pending = self._pending.pop(correlation_id, None)
                if pending is not None:
                    pending.finish(error=InboxFull(refused_as_full(self.exchange, kind)))

    def _on_reply(self, _channel, _method, properties, body: bytes) -> None:
        with self._lock:
            pending = self._pending.pop(properties.correlation_id, None)
        if pending is None:
            return  # late: its caller timed out (a resend gets the same answer)
        try:
            pending.finish(reply=Reply.model_validate_json(body))
        except ValueError as exc:
            pending.finish(reply=Reply(ok=False, code="invalid_reply", error=f"the bridge's reply is not a Reply: {exc}"))

    def _on_return(self, _channel, method, properties, _body: bytes) -> None:
        with self._lock:
            pending = self._pending.pop(properties.correlation_id, None)
        if pending is not None:
            pending.finish(error=Unroutable(
                f"{method.exchange} routed the {method.routing_key} message to no queue ({method.reply_text}): "
                "is the broker set up (flow45 bridge setup-broker) and the bridge running?"
            ))


def _unanswered(kind: str, message_id: str, timeout: float) -> str:
    return f"no reply to {kind} (message id {message_id}) within {timeout:g}s"
