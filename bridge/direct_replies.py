"""A committer's own broker connection, on which it publishes its batch's replies the moment the
batch commits.

Handed to the IO loop, a reply waited for the loop to wake (a thread hand-off) and for its turn
among the loop's work; published by the committer that applied the batch, it leaves at once (in one
sitting at 2 ms per fsync, a hop's p50 fell from 6.80 to 6.54 ms, 6 rounds each). A batch's replies
are buffered and sent together, as the IO loop sends them: published one send each, they cost the
broker and the bridge a sixth more CPU per instance and throughput fell by a tenth. Replies go to
direct reply-to, which the broker routes whichever connection publishes them. Acks, dead-letter
copies and offers stay with the IO loop, whose channel holds the deliveries and confirms the copies,
and so do deploys' replies: the IO loop declares the new queues first, so that a deploy's answer
means its functions' queues are there to consume.

What this connection cannot publish (the broker unreachable, the connection lost) the IO loop
publishes instead, as it always did; a connection that failed is opened again RETRY_AFTER later, not
for every batch, or as soon as the IO loop has a new broker connection: its heartbeats are the ones
that notice a broker gone silent, and this one sends none (with no traffic of its own between
batches, it would only miss them). A reply published twice (here, then by the IO loop after a failure part way) is
harmless: the sender takes the first answer to its request and drops the rest."""

from __future__ import annotations

import logging
import time
from typing import Callable

import pika

from bridge import answers
from bridge.batch import Outcome
from bridge.failures import BROKER_FAILURES
from bridge.inbound import Delivery
from bridge.pika_sends import send_now, unsent
from flow45.urls import amqp_parameters, hide_password

log = logging.getLogger("flow45.bridge")

RETRY_AFTER = 5.0  # seconds before a connection that failed is opened again
OPEN_TIMEOUT = 2.0  # seconds opening it, or sending a batch's replies, may take: the replies wait meanwhile


class DirectReplies:
    """One committer's connection for replies (not thread-safe: each committer has its own)."""

    def __init__(self, url: str, clock: Callable[[], float] = time.monotonic,
                 name: str = "flow45 bridge replies") -> None:
        self._url, self._clock, self._name = url, clock, name
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self._retry_at = float("-inf")
        self._generation: int | None = None  # none yet: a connection opened early is kept for the first

    def open(self) -> None:
        """Connect now, before any batch, whose replies would otherwise wait for the handshake."""
        self._open()

    def publish(self, deliveries: list[Delivery], outcomes: list[Outcome], generation: int = 0) -> None:
        """Publish the reply of each outcome that has one, marking it `replied`; those left unmarked
        are the IO loop's to publish. `generation`: the IO loop's broker connection the deliveries
        came on; a new one means the broker may have gone and come back: this connection is opened
        again too."""
        if generation != self._generation:
            if self._generation is not None:
                self.close()
            self._generation, self._retry_at = generation, float("-inf")
        channel = self._open()
        if channel is None:
            return
        sent = []
        try:
            for delivery, outcome in zip(deliveries, outcomes):
                if outcome.deployed:  # answered by the IO loop once the new queues are declared
                    continue
                reply = answers.reply_to(delivery, outcome)
                if reply is not None:  # buffered, then sent together: one send for the batch
                    channel._impl.basic_publish(reply.exchange, reply.routing_key, reply.body, reply.properties)
                    sent.append(outcome)
            self._send()
            for outcome in sent:
                outcome.replied = True
        except BROKER_FAILURES as exc:
            log.info("bridge: a committer's connection for replies failed (%s); the IO loop replies", exc)
            self._failed()

    def _send(self) -> None:
        """Send what is buffered. Raises if the connection is lost (pika notes a failed send and
        closes the connection only when its loop turns: one turn here, so a broker gone is noticed
        now, not taken for one that got the replies), or if the broker has not taken them all
        within OPEN_TIMEOUT."""
        deadline = time.monotonic() + OPEN_TIMEOUT
        connection = self._connection._impl
        send_now(connection)
        self._connection.process_data_events(time_limit=0)
        while unsent(connection):  # what the socket did not take at once: as it drains
            if time.monotonic() > deadline:
                raise TimeoutError(f"the broker took no more of the replies in {OPEN_TIMEOUT:g}s")
            self._connection.process_data_events(time_limit=0.01)
        if not self._connection.is_open:
            raise ConnectionError("the connection for replies closed")

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None:
            try:
                connection.close()
            except Exception:  # noqa: BLE001 - closing a connection that is already gone
                pass

    def _open(self):
        if self._channel is not None and self._channel.is_open:
            return self._channel
        self.close()
        if self._clock() < self._retry_at:
            return None
        try:
            params = amqp_parameters(self._url)
            params.connection_attempts = 1
            params.socket_timeout = params.stack_timeout = OPEN_TIMEOUT
            params.blocked_connection_timeout = OPEN_TIMEOUT  # a broker out of memory holds no committer
            params.heartbeat = 0  # see above: the IO loop's connection has them
            params.client_properties = {"connection_name": self._name}  # as operators see it in the broker
            self._connection = pika.BlockingConnection(params)
            self._channel = self._connection.channel()
        except (*BROKER_FAILURES, ValueError) as exc:
            log.info("bridge: no connection for a committer's replies (%s: %s); the IO loop replies",
                     hide_password(self._url), exc)
            self._failed()
            return None
        return self._channel

    def _failed(self) -> None:
        self.close()
        self._retry_at = self._clock() + RETRY_AFTER
