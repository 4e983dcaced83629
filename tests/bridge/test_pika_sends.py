"""Frames joined into fewer sends (bridge/pika_sends.py): the broker receives the same bytes in the
same order, a large backlog still goes in bounded pieces, and messages of every size arrive whole
through a real RabbitMQ; and what is buffered can be sent at once, before the loop turns again."""

from __future__ import annotations

import hashlib
import time
from collections import deque

import pytest
from hypothesis import given
from hypothesis import strategies as st

from bridge.failures import open_blocking
from bridge.pika_sends import CHUNK, joined, send_now


SIZES = st.one_of(st.integers(0, 64), st.integers(CHUNK - 8, CHUNK + 8))


@given(st.lists(st.tuples(st.integers(0, 255), SIZES), max_size=40))
def test_joined_keeps_every_byte_in_order_in_bounded_chunks(frames):
    parts = [bytes([value]) * size for value, size in frames]
    buffers = deque(parts)
    joined(buffers)
    assert b"".join(buffers) == b"".join(parts)
    assert all(len(chunk) <= CHUNK or chunk in parts for chunk in buffers)  # only a part over CHUNK alone
    assert len(buffers) <= max(1, len(parts))


def test_many_small_frames_become_one_send():
    buffers = deque([b"m" * 20, b"h" * 30, b"b" * 100] * 200)  # 200 messages of 3 frames
    joined(buffers)
    assert len(buffers) == 1 and len(buffers[0]) == 150 * 200


@pytest.mark.integration
def test_messages_published_in_one_turn_arrive_whole_and_in_order(rabbitmq_server):
    sizes = [0, 1, 700, CHUNK - 1, CHUNK, CHUNK + 1, 3 * CHUNK + 5] + [n * 37 for n in range(200)]
    bodies = [hashlib.sha256(str(i).encode()).digest() * (size // 32) + bytes(size % 32) for i, size in enumerate(sizes)]
    connection = open_blocking(rabbitmq_server.amqp_url)
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True).method.queue
        for body in bodies:  # buffered, as the SDK and the bridge publish: sent on the next turn of the loop
            channel._impl.basic_publish("", queue, body)
        connection.process_data_events(0)
        received = []
        while len(received) < len(bodies):
            method, _properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                connection.process_data_events(0.05)
                continue
            received.append(body)
        assert received == bodies
    finally:
        connection.close()


@pytest.mark.integration
def test_send_now_sends_what_is_buffered_without_a_turn_of_the_loop(rabbitmq_server):
    """As the bridge answers a batch: the answer is published (buffered), sent at once, and the IO
    loop goes on with its bookkeeping. The publisher's loop never turns here: another connection
    sees the messages all the same, the large one too (what the socket did not take at once goes
    at the loop's next turn)."""
    publisher, reader = open_blocking(rabbitmq_server.amqp_url), open_blocking(rabbitmq_server.amqp_url)
    try:
        reading = reader.channel()
        queue = reading.queue_declare("", exclusive=True).method.queue
        channel = publisher.channel()
        bodies = [b"answer", bytes(4 * CHUNK)]
        channel._impl.basic_publish("", queue, bodies[0])
        send_now(publisher._impl)
        send_now(publisher._impl)  # nothing buffered: nothing to do
        deadline = time.monotonic() + 10
        while reading.basic_get(queue, auto_ack=True)[0] is None:
            assert time.monotonic() < deadline, "the buffered message was not sent"
            time.sleep(0.01)
        channel._impl.basic_publish("", queue, bodies[1])
        send_now(publisher._impl)
        received = []
        while not received:
            assert time.monotonic() < deadline, "the large message did not arrive"
            publisher.process_data_events(0.01)  # the loop's next turns send the rest
            received = [body for method, _, body in [reading.basic_get(queue, auto_ack=True)] if method is not None]
        assert received == bodies[1:]
    finally:
        publisher.close()
        reader.close()
