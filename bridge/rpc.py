"""An operator's RPC to the bridge over RabbitMQ: publish to flow45.in.TEAM, wait on direct reply-to."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions as px

from bridge.failures import BrokerUnavailable, describe_amqp_error, open_blocking
from flow45 import names, wire
from flow45.errors import Flow45Error

REPLY_TO = "amq.rabbitmq.reply-to"


class BridgeRefused(Flow45Error):
    """The bridge refused the request."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def call(url: str, team: str, message: dict, timeout: float = 30.0) -> object:
    """Send `message` as the URL's user to `team`'s exchange and return the reply's result; raises
    BridgeRefused, or BrokerUnavailable naming the URL when the broker cannot be reached or refuses."""
    user = unquote(urlsplit(url).username or "guest")
    connection = open_blocking(url)
    try:
        return _exchange(connection, user, team, message, timeout)
    except px.ChannelClosedByBroker as exc:
        raise BrokerUnavailable(_refusal(exc, url, user, team)) from None
    except (px.AMQPError, OSError) as exc:
        raise BrokerUnavailable(describe_amqp_error(exc, url)) from None
    finally:
        if connection.is_open:
            connection.close()


def _refusal(exc: px.ChannelClosedByBroker, url: str, user: str, team: str) -> str:
    """Why the broker would not take the message for `team`'s exchange."""
    exchange = names.inbound_exchange(team)
    if exc.reply_code == 403:
        return f"broker user {user!r} may not send to {exchange!r}: is {team!r} the team it is an operator of?"
    if exc.reply_code == 404:
        return (f"the broker has no exchange {exchange!r}: is there a team {team!r}, "
                "and has the bridge run since it was added?")
    return describe_amqp_error(exc, url)


def _exchange(connection: pika.BlockingConnection, user: str, team: str, message: dict, timeout: float) -> object:
    channel = connection.channel()
    answer: dict = {}
    correlation = uuid.uuid4().hex

    def on_reply(_ch, _method, properties, body):
        if properties.correlation_id == correlation:
            answer.update(json.loads(body))

    channel.basic_consume(REPLY_TO, on_reply, auto_ack=True)
    channel.confirm_delivery()  # so a refused or unroutable publish fails here, not as a silent timeout
    try:
        channel.basic_publish(
            names.inbound_exchange(team), message["type"], wire.dumps(message).encode(),
            pika.BasicProperties(
                content_type="application/json", message_id=uuid.uuid4().hex, user_id=user,
                reply_to=REPLY_TO, correlation_id=correlation, delivery_mode=2,
            ),
            mandatory=True,
        )
    except px.UnroutableError:
        raise Flow45Error(
            f"nothing takes messages sent to {names.inbound_exchange(team)!r}: "
            "is the bridge set up (`flow45 bridge run`)?"
        ) from None
    deadline = time.monotonic() + timeout
    while not answer and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.2)
    if not answer:
        raise Flow45Error(f"no answer from the bridge within {timeout:.0f}s: is `flow45 bridge run` running?")
    if not answer.get("ok"):
        raise BridgeRefused(answer.get("code") or "refused", answer.get("error") or "refused")
    return answer.get("result")
