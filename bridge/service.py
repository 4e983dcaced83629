"""The bridge process: consumes the inbox, applies it in batches, relays the outbox; operators'
reads are answered beside it, and the ledger is published to the team event streams, each with
connections of their own (`bridge.reads`, `bridge.events`), in child processes of their own when
run from the command line (`bridge.side_process`). This module is the consumer
side and the process's lifecycle; the publishing side (relay, replies, confirms) is `bridge.relay`.

The broker side runs on pika's IO loop thread (after pika's asynchronous consumer and publisher
examples): deliveries are parsed as they come and formed into batches, each applied in one
transaction by a committer thread on a connection of its own (`bridge.commits`: group commit, while
other batches flush); when a batch committed, its replies and acks go out and the outbox rows it
wrote are published at once.
"""

from __future__ import annotations

import functools
import logging
import threading
import time

import pika
from pika.exceptions import AMQPError

from bridge import answers
from bridge.acks import AckTracker
from bridge.batch import Applied, DatabaseUnavailable, Delivery, Outcome, parse_one
from bridge.commits import Batcher, CommitPool, Job, Waiting
from bridge.events import EventPublisher
from bridge.failures import describe_amqp_error
from bridge.inbound import Refusal, delivery_from
from bridge.logs import quiet_pika
from bridge.reads import ReadServer
from bridge.pika_sends import send_now
from bridge.relay import Relay
from bridge.side_process import SideProcess
from bridge.topology import declare_new_functions, declare_with_new_connection
from flow45 import metrics, names
from flow45.db import connect, describe_db_error, dialect, drop_connection
from flow45.migrate import require_schema
from flow45.outage import GIVE_UP_AFTER, Backoff, CannotWork, permanent_reason
from flow45.settings import Settings

log = logging.getLogger("flow45.bridge")

RETRY_DELAY = 1.0  # seconds before a batch the database could not take is tried again
STOP_GRACE = 5.0  # seconds a stop waits for the batches in flight to commit and be acked
CONFIRMS_GRACE = 0.5  # seconds a stop then waits for the broker to confirm what the bridge published
# Declaring the topology holds the IO loop (a quarter second at 50 teams of 10 functions): after a
# deploy it is declared at once, but not again within this many seconds, whoever keeps deploying.
TOPOLOGY_GAP = 1.0


class Bridge:
    def __init__(self, settings: Settings, batch_size: int = 200, prefetch: int = 1000, heartbeat=None,
                 connections: int = 4, side_processes: bool = False):
        """`connections`: batches applied at once, each on a database connection of its own (one on
        a database that takes one writer at a time). `side_processes`: operators' reads and the
        event stream served by child processes (`bridge.side_process`) rather than threads, off the
        interpreter lock the batches need."""
        if not settings.amqp_url:
            raise ValueError("the bridge needs amqp_url (FLOW45_AMQP_URL)")
        if connections < 1:
            raise ValueError("the bridge needs at least one database connection for batches")
        quiet_pika()
        self.settings = settings
        self.batch_size = batch_size
        self.prefetch = prefetch
        self.connections = connections
        self.started = threading.Event()  # set once it consumes the teams' inboxes (`consuming`) the first time
        self.stopped = threading.Event()
        self.heartbeat = heartbeat
        self._stopping = False
        self._stop_event = threading.Event()
        self._open_error: BaseException | None = None  # why the last broker connection did not open
        self._fatal: str | None = None  # set when retrying cannot help; run() raises it
        self._last_error: str | None = None
        self._tick_failures = 0
        # A relay tick that lost the database comes again further apart: 2, 4, 8... intervals, up to reconnect_max.
        interval, longest = settings.relay_interval, max(settings.relay_interval, settings.reconnect_max)
        self._tick_backoff = Backoff(first=min(interval * 2, longest), cap=longest)
        self._connection: pika.SelectConnection | None = None
        self._consume_channel = None
        self._inboxes: tuple[str, ...] = ()  # the queues of worker and operator messages, as last declared
        self._functions: frozenset[tuple[str, str, bool]] = frozenset()  # whose queues it declared
        self._inbox_tags: dict[str, str] = {}  # inbox -> its consumer's tag on the current channel
        self._declared_at = float("-inf")  # monotonic: the topology's last declaration
        self._quarantine_tag = None
        self._batcher = Batcher(batch_size, self._take_sent, self._return_sent, self._finish, RETRY_DELAY)
        self.relay = Relay(self._batcher.lanes, self._ack, self._give_back, self._topology_needed,
                           max_message_bytes=settings.max_message_bytes)
        if side_processes:  # each beats as a part of its own
            self.reads = SideProcess("reads", settings, heartbeat=heartbeat)
            self.events = SideProcess("events", settings, heartbeat=heartbeat)
        else:
            self.reads = ReadServer(settings, heartbeat=heartbeat)
            self.events = EventPublisher(settings, heartbeat=heartbeat)
        self._reset_channel_state()
        metrics.INBOX_WAITING.set_function(lambda: len(self._batcher.waiting))
        for server in ("broker", "database"):
            metrics.RECONNECTS.labels("bridge", server)  # shown at 0 before the first

    def _reset_channel_state(self) -> None:
        self._batcher.reset(None)
        self.relay.reset()
        self._acks = AckTracker()
        self._needs_topology = False
        self._inbox_tags = {}

    # ---- lifecycle ---------------------------------------------------------------------------

    def run(self) -> None:
        """Connect, serve, and reconnect with capped backoff until stop() is called.

        Raises CannotWork when the database or the broker keeps refusing the login (or names a
        database or vhost that does not exist): waiting cannot fix that, its supervisor must hear."""
        connect(self.settings.database_url)
        pool = CommitPool(self.connections if dialect().concurrent_writers else 1, self._batcher.committed,
                          self.settings.amqp_url)
        self._batcher.pool = pool
        backoff = Backoff(self._stop_event, cap=self.settings.reconnect_max, beat=self._beat_waiting)
        beside = [threading.Thread(target=self.reads.run, name="flow45-bridge-reads", daemon=True),
                  threading.Thread(target=self.events.run, name="flow45-bridge-events", daemon=True)]
        for thread in beside:
            thread.start()
        try:
            while not self._stopping:
                started = time.monotonic()
                problem: BaseException | None = None
                try:
                    require_schema()  # `flow45 db upgrade` creates it; a service never does
                    declared = declare_with_new_connection(self.settings.amqp_url, self.settings)
                    self._inboxes, self._functions = declared.inboxes, declared.functions
                    parameters = pika.URLParameters(self.settings.amqp_url)
                    parameters.client_properties = {"connection_name": "flow45 bridge"}  # as operators see it
                    self._connection = pika.SelectConnection(
                        parameters,
                        on_open_callback=self._on_connection_open,
                        on_open_error_callback=self._on_connection_error,
                        on_close_callback=self._on_connection_closed,
                    )
                    if self._stopping:  # stop() came meanwhile, and found no connection to close
                        break
                    self._batcher.reset(self._connection.ioloop)
                    self.relay.listen(self._connection.ioloop, self._relay_now, pool.backend_ids)
                    self._connection.ioloop.start()
                    problem, self._open_error = self._open_error, None
                except (AMQPError, OSError, DatabaseUnavailable) as exc:
                    problem = exc
                    log.warning("bridge: %s", describe_amqp_error(exc, self.settings.amqp_url) or _one_line(exc))
                except Exception as exc:
                    if describe_db_error(exc) is None:
                        raise
                    problem = exc
                    self._database_lost()
                    log.warning("bridge: %s", describe_db_error(exc))
                self._last_error = None if problem is None else _one_line(problem)
                self.relay.lose()
                self._reset_channel_state()
                if self._fatal is not None:
                    raise CannotWork(self._fatal)
                if self._stopping:
                    break
                server = "database" if isinstance(problem, DatabaseUnavailable) or describe_db_error(problem) else "broker"
                metrics.RECONNECTS.labels("bridge", server).inc()
                if time.monotonic() - started > 30:
                    backoff.reset()  # it worked for a while: start over quickly
                backoff.failed(problem, "bridge", self._describe)
                log.info("bridge: reconnecting in %.1fs", backoff.delay)
                backoff.wait()
        finally:
            self.reads.stop()
            self.events.stop()
            pool.close()
            self.relay.lose()
            drop_connection()  # the relay lock goes with its session: another bridge takes it over at once
            joined_by = time.monotonic() + 0.3  # within a stop's grace; they hold nothing that needs finishing
            for thread in beside:
                thread.join(timeout=max(0.0, joined_by - time.monotonic()))
            self.stopped.set()
        log.info("bridge: stopped")

    def stop(self) -> None:
        """Stop after the batch in hand: from any thread, or a signal handler. Wakes a reconnect
        backoff at once."""
        self._stopping = True
        self._stop_event.set()
        self.reads.stop()
        self.events.stop()
        connection = self._connection
        if connection is not None and not connection.is_closed:
            connection.ioloop.add_callback_threadsafe(self._shutdown)

    def _beat_waiting(self) -> None:
        if self.heartbeat is not None:
            self.heartbeat.beat("bridge", self._last_error)

    def _database_lost(self) -> None:
        """A database operation failed on the connection: drop it (the next one reconnects) and
        with it the relay lock and the LISTEN connection, which died with the server's sessions."""
        drop_connection()
        self.relay.lose()

    @property
    def consuming(self) -> bool:
        """Whether the bridge takes messages from the teams' inboxes now."""
        return bool(self._inbox_tags)

    def _shutdown(self) -> None:
        if self._consume_channel is not None and self._consume_channel.is_open:
            for tag in self._inbox_tags.values():
                self._consume_channel.basic_cancel(tag)
            if self._quarantine_tag:
                self._consume_channel.basic_cancel(self._quarantine_tag)
        self._batcher.dispatch()
        self._close_when_done(time.monotonic() + STOP_GRACE)

    def _close_when_done(self, deadline: float, confirms_by: float | None = None) -> None:
        """Close once the batches in flight have committed and been acked, and the broker confirmed
        what was published (a dead-letter copy's delivery is acked then, an outbox row marked sent);
        or once the grace is over: unacked deliveries come again (answered as duplicates if they were
        applied), unconfirmed rows stay pending for the next relay."""
        now = time.monotonic()
        if self.relay.channel is not None and now < deadline:
            if not self._batcher.busy:
                confirms_by = now + CONFIRMS_GRACE if confirms_by is None else confirms_by
            if self._batcher.busy or (self.relay.awaiting_confirms and now < confirms_by):
                again = functools.partial(self._close_when_done, deadline, confirms_by)
                self._connection.ioloop.call_later(0.02, again)
                return
        self.relay.flush_confirmed()
        self._close()

    def _close(self) -> None:
        connection = self._connection
        if connection is None or connection.is_closing or connection.is_closed:
            return
        if connection.is_open:
            connection.close()
        # Else still opening: closed once open (_on_connection_open). pika's abort of an AMQP handshake
        # in progress fails an assertion of its own in the IO loop, and the bridge's thread with it.

    def _describe(self, exc: BaseException) -> str | None:
        return describe_db_error(exc) or describe_amqp_error(exc, self.settings.amqp_url)

    def _on_connection_open(self, connection) -> None:
        if self._stopping or self._fatal is not None:  # closing was asked for while it opened
            connection.close()
            return
        log.info("bridge: connected to the broker")
        connection.channel(on_open_callback=self._on_publish_channel_open)

    def _on_connection_error(self, connection, error) -> None:
        if not self._stopping:  # else a stop closed it while it opened
            log.warning("bridge: %s", describe_amqp_error(error, self.settings.amqp_url)
                        or f"cannot connect to the broker: {error}")
        self._open_error = error if isinstance(error, BaseException) else AMQPError(str(error))
        connection.ioloop.stop()

    def _on_connection_closed(self, connection, reason) -> None:
        if not self._stopping:
            log.warning("bridge: broker connection closed: %s", reason)
        self._consume_channel = None
        self.relay.detach()
        connection.ioloop.stop()

    def _on_publish_channel_open(self, channel) -> None:
        channel.add_on_close_callback(self._on_channel_closed)
        self.relay.attach(channel)
        self._connection.channel(on_open_callback=self._on_consume_channel_open)

    def _on_consume_channel_open(self, channel) -> None:
        self._consume_channel = channel
        channel.add_on_close_callback(self._on_channel_closed)
        channel.add_on_cancel_callback(self._on_consumer_cancelled)
        # The prefetch is per consumer: a team with a backlog has at most `prefetch` deliveries in
        # the bridge, and the other teams' messages are delivered beside them, not behind them.
        channel.basic_qos(prefetch_count=self.prefetch, callback=lambda _frame: self._start_consuming())

    def _start_consuming(self) -> None:
        self._consume_inboxes()
        if self.consuming:
            self.started.set()
        self._quarantine_tag = self._consume_channel.basic_consume(names.QUARANTINE_QUEUE, self._on_quarantined)
        self._relay_tick()

    def _consume_inboxes(self) -> None:
        """Consume every inbox declared and not consumed yet (a team deployed since has a new one)."""
        channel = self._consume_channel
        if channel is None or not channel.is_open or self._stopping:
            return
        for queue in self._inboxes:
            if queue not in self._inbox_tags:
                self._inbox_tags[queue] = channel.basic_consume(queue, self._on_message)

    def _on_consumer_cancelled(self, frame) -> None:
        """The broker cancelled a consumer (its queue was deleted): declared and consumed again at the
        next relay tick, unless it was the shared inbox, gone for good."""
        tag = frame.method.consumer_tag
        for queue in [q for q, t in self._inbox_tags.items() if t == tag]:
            del self._inbox_tags[queue]
            log.warning("bridge: the broker cancelled the consumer of %s (was it deleted?)", queue)
            self._needs_topology = True

    def _on_channel_closed(self, channel, reason) -> None:
        if not self._stopping:
            log.warning("bridge: channel closed: %s", reason)
        if self._connection is not None and not (self._connection.is_closing or self._connection.is_closed):
            self._connection.close()

    # ---- inbox -------------------------------------------------------------------------------

    def _on_message(self, channel, method, properties, body) -> None:
        self._acks.received(method.delivery_tag)
        delivery = delivery_from(method, properties, body)
        parsed = parse_one(self.settings, delivery)
        if isinstance(parsed, Outcome):  # refused without the database: answered at once
            self._answer_all([delivery], [parsed])
            return
        self._batcher.add(Waiting(delivery, parsed, self._batcher.lanes.of(parsed), time.monotonic()))

    def _on_quarantined(self, channel, method, properties, body) -> None:
        """A message the inbox gave up on: filed, redacted, in its team's dead-letter queue; acked
        once the copy is confirmed (same channel as the inbox, so the same acknowledgements)."""
        self._acks.received(method.delivery_tag)
        try:
            copy = answers.quarantined(self.settings, delivery_from(method, properties, body), properties.headers)
            log.warning("bridge: the inbox gave up on %r from %r; filed in %s", properties.message_id,
                        properties.user_id, copy.routing_key)
            self.relay.publish(copy.exchange, copy.routing_key, copy.body, copy.properties, "dead", method.delivery_tag)
        except AMQPError:
            raise
        except Exception:  # after the quarantine's own delivery limit it goes, as it is, to flow45.dead
            log.exception("bridge: cannot file quarantined message %r", properties.message_id)
            self._acks.forget([method.delivery_tag])
            channel.basic_nack(method.delivery_tag, requeue=True)

    def _finish(self, job: Job) -> None:
        """A batch committed (or failed for a bug): reply, ack, publish what it wrote."""
        batch = [w.delivery for w in job.waiting]
        if job.error is not None or job.result is None:  # a bug outside any one message: refuse the batch, keep serving
            refusal = Refusal("internal", f"unexpected error: {type(job.error).__name__}; resend with the same message_id")
            result = Applied([Outcome(refusal=refusal) for _ in batch], None)
        else:
            result = job.result
        if result.marked_sent:
            self.relay.batch_marked(job.sent)
        else:
            self.relay.return_sent(job.sent)
        written = result.written
        self._declare_deployed(job.waiting, result.outcomes)
        self._answer_all(batch, result.outcomes)
        send_now(self._connection)  # the answers leave before the bookkeeping below
        self._observe_batch(job.waiting, result.outcomes, written)
        self._declare_topology_if_due()  # else at a relay tick: a team may be deploying in a loop
        self.relay.committed(written)
        if result.timed:
            _observe_phases(job, result.timed)

    def _take_sent(self) -> list[int]:
        return self.relay.take_sent()

    def _return_sent(self, ids: list[int]) -> None:
        self.relay.return_sent(ids)

    def _answer_all(self, batch: list[Delivery], outcomes: list[Outcome]) -> None:
        applied: list[int] = []
        for delivery, outcome in zip(batch, outcomes):
            try:
                self._answer(delivery, outcome, applied)
            except AMQPError:
                raise  # the channel is gone: the bridge reconnects and unacked deliveries come again
            except Exception:  # never let one message's answer stop the IO loop: drop it, loudly
                log.exception("bridge: cannot answer or dead-letter %r; dropping it", delivery.message_id)
                applied.append(delivery.tag)
        self._ack(applied)

    def _observe_batch(self, waiting: list[Waiting], outcomes: list[Outcome], written) -> None:
        now = time.monotonic()
        metrics.BATCH_SIZE.observe(len(waiting))
        grants = []
        for each, outcome in zip(waiting, outcomes):
            metrics.INBOX_LAG.observe(now - each.received)
            grant = outcome.result.get("next") if isinstance(outcome.result, dict) else None
            if grant:  # a downstream attempt goes back with the submit's answer, published next
                metrics.HOP_LATENCY.observe(now - each.received)
                grants.append(grant)
        self._batcher.lanes.learn(grants)
        self.relay.offers_from(waiting[0].received, written)

    def _ack(self, tags: list[int]) -> None:
        channel = self._consume_channel
        for tag, multiple in self._acks.finished(tags):
            if channel is not None and channel.is_open:
                channel.basic_ack(tag, multiple=multiple)

    def _give_back(self, tag: int) -> None:
        """A delivery whose dead-letter copy the broker refused: it comes again, to be refused again."""
        self._acks.forget([tag])
        self._consume_channel.basic_nack(tag, requeue=True)

    def _answer(self, delivery: Delivery, outcome: Outcome, applied: list[int]) -> None:
        """Reply; a refusal's dead-letter copy is published and the delivery acked once it is confirmed."""
        if outcome.refusal is not None:
            refusal = outcome.refusal
            log.warning("bridge: refused %r from %r: %s: %s", delivery.message_id, delivery.user_id, refusal.code, refusal.message[:300])
            metrics.REFUSALS.labels(refusal.code).inc()
        self._needs_topology |= outcome.deployed
        planned = answers.answer(self.settings, delivery, outcome)
        for publish, kind in ((planned.reply, "reply"), (planned.dead_letter, "dead")):
            if publish is not None:
                ref = delivery.tag if kind == "dead" else None
                self.relay.publish(publish.exchange, publish.routing_key, publish.body, publish.properties, kind, ref)
        if planned.dead_letter is None:
            applied.append(delivery.tag)

    # ---- relay -------------------------------------------------------------------------------

    def _relay_tick(self) -> None:
        """Every relay_interval: hold the relay lock, listen, relay. After a database failure the
        connection is dropped and the next ticks reconnect, further apart each time (capped). None
        once stopping: a stop waits for what is in hand, not for rows found meanwhile."""
        if self._connection is None or self.relay.channel is None or self._stopping:
            return
        error = None
        try:
            self._declare_topology_if_due()
            self.relay.tick()
            if self._tick_failures:
                log.info("bridge: database back; relaying again")
            self._tick_failures = 0
            self._tick_backoff.reset()
        except Exception as exc:
            if describe_db_error(exc) is None:
                raise
            error = describe_db_error(exc)
            self._database_lost()
            self._tick_failures += 1
            if self._tick_failures == 1:
                metrics.RECONNECTS.labels("bridge", "database").inc()
                log.warning("bridge relay: %s; reconnecting", error)
            reason = permanent_reason(exc)
            if reason is not None and self._tick_failures >= GIVE_UP_AFTER:
                self._fatal = f"bridge: {error}"
                self._close()
                return
        self._last_error = error
        if self.heartbeat is not None:
            self.heartbeat.beat("bridge", error)
        delay = self._tick_backoff.next_delay() if self._tick_failures else self.settings.relay_interval
        self._connection.ioloop.call_later(delay, self._relay_tick)

    def _relay_now(self) -> None:
        """Another process committed outbox rows (left to the next relay once stopping)."""
        if self._stopping:
            return
        try:
            self.relay.relay()
        except Exception as exc:
            if describe_db_error(exc) is None:
                raise
            self._database_lost()
            log.warning("bridge relay: %s", describe_db_error(exc))

    def _declare_topology_if_due(self) -> None:
        if self._needs_topology and time.monotonic() - self._declared_at >= TOPOLOGY_GAP:
            self._declare_topology()

    def _declare_deployed(self, waiting: list[Waiting], outcomes: list[Outcome]) -> None:
        """Before a deploy is answered, the queues of the functions it added, so that a worker started
        then can consume them; the rest of the topology at the next declaration (TOPOLOGY_GAP)."""
        for each, outcome in zip(waiting, outcomes):
            if outcome.deployed:
                try:
                    added = declare_new_functions(self.settings.amqp_url, each.parsed.team, self._functions)
                except Exception as exc:  # noqa: BLE001 - the deploy committed: it is answered, and declared later
                    log.warning("bridge: declaring a deploy's new queues: %s", self._describe(exc) or exc)
                    continue
                self._functions = self._functions | frozenset(added)

    def _declare_topology(self) -> None:
        self._needs_topology, self._declared_at = False, time.monotonic()
        try:
            declared = declare_with_new_connection(self.settings.amqp_url, self.settings)
            self._inboxes, self._functions = declared.inboxes, declared.functions
        except AMQPError as exc:
            self._needs_topology = True
            log.warning("bridge: topology: %s", exc)
            return
        self._consume_inboxes()

    def _topology_needed(self) -> None:
        self._needs_topology = True


def _one_line(exc: BaseException) -> str:
    return describe_db_error(exc) or f"{type(exc).__name__}: {' '.join(str(exc).split())}"


def _observe_phases(job: Job, timed: dict[str, float]) -> None:
    """A batch's time in the bridge by phase (flow45_batch_phase_seconds), once it is answered."""
    phases = metrics.BATCH_PHASES
    phases.labels("wait").observe(max(0.0, job.started - job.waiting[0].received))
    for phase, seconds in timed.items():
        phases.labels(phase).observe(seconds)
    phases.labels("answer").observe(max(0.0, time.monotonic() - job.finished))
