"""What the bridge tests do on the broker as a worker would: take the next offer of a function, and
publish a raw message and wait for its reply."""

from __future__ import annotations

import json
import time

import pika


def wait_offer(env, team: str, function: str, timeout: float = 15.0) -> dict:
    """The next offer for the function. Its queue may not be there yet: after a deploy made on the
    database (not through the bridge), the bridge declares it when the first offer finds no queue."""
    channel = env.channel(f"{team}-worker")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            method, _props, body = channel.basic_get(f"flow45.tasks.{team}.{function}", auto_ack=True)
        except pika.exceptions.ChannelClosedByBroker as exc:
            if exc.reply_code != 404:
                raise
            channel.connection.close()
            channel, method = env.channel(f"{team}-worker"), None
        if method:
            channel.connection.close()
            return json.loads(body)
        time.sleep(0.02)
    raise AssertionError(f"no offer for {team}.{function}")


def publish_raw(env, user: str, exchange: str, body: bytes, message_id: str | None = "m", user_id: str | None = None):
    """Publish as `user` and wait for the reply."""
    connection = pika.BlockingConnection(pika.URLParameters(env.url(user)))
    channel = connection.channel()
    replies = []
    channel.basic_consume("amq.rabbitmq.reply-to", lambda _c, _m, _p, b: replies.append(json.loads(b)), auto_ack=True)
    channel.basic_publish(exchange, "x", body, pika.BasicProperties(
        message_id=message_id, user_id=user_id, reply_to="amq.rabbitmq.reply-to", correlation_id="c"))
    deadline = time.monotonic() + 10
    while not replies and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.1)
    connection.close()
    assert replies, "no reply"
    return replies[0]
