"""An operator's RPC to the bridge over RabbitMQ: publish to flow45.in.TEAM, wait on direct reply-to."""

from __future__ import annotations

import json
import time
import uuid
from urllib.parse import unquote, urlsplit

import pika

from bridge import names
from flow45.errors import Flow45Error

REPLY_TO = "amq.rabbitmq.reply-to"


class BridgeRefused(Flow45Error):
    """The bridge refused the request."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code = code


def call(url: str, team: str, message: dict, timeout: float = 30.0) -> object:
    """Send `message` as the URL's user and return the reply's result; raises BridgeRefused."""
    user = unquote(urlsplit(url).username or "guest")
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        channel = connection.channel()
        answer: dict = {}
        correlation = uuid.uuid4().hex

        def on_reply(_ch, _method, properties, body):
            if properties.correlation_id == correlation:
                answer.update(json.loads(body))

        channel.basic_consume(REPLY_TO, on_reply, auto_ack=True)
        channel.basic_publish(
            names.inbound_exchange(team), message["type"], json.dumps(message).encode(),
            pika.BasicProperties(
                content_type="application/json", message_id=uuid.uuid4().hex, user_id=user,
                reply_to=REPLY_TO, correlation_id=correlation, delivery_mode=2,
            ),
        )
        deadline = time.monotonic() + timeout
        while not answer and time.monotonic() < deadline:
            connection.process_data_events(time_limit=0.2)
        if not answer:
            raise Flow45Error(f"no answer from the bridge within {timeout:.0f}s: is `flow45 bridge run` running?")
        if not answer.get("ok"):
            raise BridgeRefused(answer.get("code") or "refused", answer.get("error") or "refused")
        return answer.get("result")
    finally:
        connection.close()
