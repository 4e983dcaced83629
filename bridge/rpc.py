"""An operator's RPCs to the bridge over RabbitMQ: changes to flow45.in.TEAM, reads to flow45.read,
each answered on direct reply-to."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions as px

from bridge.failures import BrokerUnavailable, describe_amqp_error, open_blocking, refused_as_full
from flow45 import names, wire
from flow45.errors import Flow45Error

REPLY_TO = "amq.rabbitmq.reply-to"


class BridgeRefused(Flow45Error):
    """The bridge refused the request."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


class ExchangeRefused(BrokerUnavailable):
    """The broker refused the exchange: no permission to send there (403), or none such (404)."""


class Rpc:
    """One broker connection for many requests, as the URL's user (the broker checks it)."""

    def __init__(self, url: str, timeout: float = 30.0):
        self.url = url
        self.user = unquote(urlsplit(url).username or "guest")
        self.timeout = timeout
        self._connection: pika.BlockingConnection | None = None
        self._channel = None
        self._answers: dict[str, dict] = {}

    def change(self, team: str, message: dict) -> object:
        """A message to `team`'s exchange (the user's own): its reply's result."""
        return self._call(names.inbound_exchange(team), message, team)

    def read(self, message: dict, team: str | None = None) -> object:
        """A read, answered for the user's own team: its reply's result. To the team's own read
        exchange when the team is given (the user's: the broker refuses another), else the shared one."""
        return self._call(names.read_exchange(team) if team else names.READ_EXCHANGE, message, team, persistent=False)

    def close(self) -> None:
        connection, self._connection, self._channel = self._connection, None, None
        if connection is not None and connection.is_open:
            try:
                connection.close()
            except (px.AMQPError, OSError):  # already going: nothing left to let go of
                pass

    def _open(self):
        if self._channel is None or not self._channel.is_open:
            self.close()
            self._connection = open_blocking(self.url)
            self._channel = self._connection.channel()
            self._channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)
            self._channel.confirm_delivery()  # so a refused or unroutable publish fails here, not as a silent timeout
        return self._channel

    def _on_reply(self, _ch, _method, properties, body) -> None:
        if properties.correlation_id in self._answers:
            self._answers[properties.correlation_id].update(json.loads(body))

    def _call(self, exchange: str, message: dict, team: str | None, persistent: bool = True) -> object:
        try:
            return self._exchange(exchange, message, persistent)
        except px.ChannelClosedByBroker as exc:
            self.close()
            refused = ExchangeRefused if exc.reply_code in (403, 404) else BrokerUnavailable
            raise refused(self._refusal(exc, exchange, team)) from None
        except (px.AMQPError, OSError) as exc:
            self.close()
            raise BrokerUnavailable(describe_amqp_error(exc, self.url)) from None

    def _refusal(self, exc: px.ChannelClosedByBroker, exchange: str, team: str | None) -> str:
        """Why the broker would not take the message for the exchange."""
        if exc.reply_code == 403:
            if team is None:
                return f"broker user {self.user!r} may not send to {exchange!r}: is it an operator user of a team?"
            return f"broker user {self.user!r} may not send to {exchange!r}: is {team!r} the team it is an operator of?"
        if exc.reply_code == 404:
            if team is None:
                return f"the broker has no exchange {exchange!r}: has the bridge run since it was set up?"
            return (f"the broker has no exchange {exchange!r}: is there a team {team!r}, "
                    "and has the bridge run since it was added?")
        return describe_amqp_error(exc, self.url)

    def _exchange(self, exchange: str, message: dict, persistent: bool) -> object:
        channel = self._open()
        correlation = uuid.uuid4().hex
        answer: dict = self._answers.setdefault(correlation, {})
        try:
            try:
                channel.basic_publish(
                    exchange, message["type"], wire.dumps(message).encode(),
                    pika.BasicProperties(
                        content_type="application/json", message_id=uuid.uuid4().hex, user_id=self.user,
                        reply_to=REPLY_TO, correlation_id=correlation,
                        # A read changes nothing: transient, so the broker writes no copy to disk (a
                        # restart that drops one only makes its asker ask again).
                        delivery_mode=2 if persistent else 1,
                    ),
                    mandatory=True,
                )
            except px.NackError:
                raise Flow45Error(refused_as_full(exchange, message["type"])) from None
            except px.UnroutableError:
                raise Flow45Error(
                    f"nothing takes messages sent to {exchange!r}: is the bridge set up (`flow45 bridge run`)?"
                ) from None
            deadline = time.monotonic() + self.timeout
            while not answer and time.monotonic() < deadline:
                self._connection.process_data_events(time_limit=0.2)
        finally:
            self._answers.pop(correlation, None)
        if not answer:
            raise Flow45Error(f"no answer from the bridge within {self.timeout:.0f}s: is `flow45 bridge run` running?")
        if not answer.get("ok"):
            raise BridgeRefused(answer.get("code") or "refused", answer.get("error") or "refused")
        return answer.get("result")


def call(url: str, team: str, message: dict, timeout: float = 30.0) -> object:
    """Send `message` as the URL's user to `team`'s exchange and return the reply's result; raises
    BridgeRefused, or BrokerUnavailable naming the URL when the broker cannot be reached or refuses."""
    rpc = Rpc(url, timeout)
    try:
        return rpc.change(team, message)
    finally:
        rpc.close()
