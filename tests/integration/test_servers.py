"""The throwaway-server harness itself: each server starts, serves a real client and goes away."""
import os
import time
import uuid

import pytest

from tests.harness import postgres, rabbitmq

pytestmark = pytest.mark.integration


def require(module) -> None:
    """Skip when the server cannot be started here; in CI that is a failure instead."""
    ok, reason = module.available()
    if not ok:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true but {reason}")
        pytest.skip(reason)


def port_is_open(port: int) -> bool:
    """Something listens on the port: a connection to it that is not the socket's own (a connect
    from an ephemeral port to itself succeeds on Linux, and free ports are ephemeral ones)."""
    import socket
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0 and s.getsockname() != s.getpeername()


def port_closes(port: int, within: float = 30.0) -> bool:
    """The port stops accepting connections within `within` seconds (a killed server's sockets
    go with its last process, a moment after the kill returns)."""
    deadline = time.monotonic() + within
    while port_is_open(port):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def test_postgres_starts_serves_and_stops():
    import psycopg2

    require(postgres)
    server = postgres.PostgresServer()
    server.start()
    try:
        port, data_dir = server.port, server.dir
        url = server.create_database("flow45_harness")
        conn = psycopg2.connect(url)
        try:
            with conn.cursor() as cur:
                cur.execute("select 1")
                assert cur.fetchone() == (1,)
        finally:
            conn.close()
        server.drop_database("flow45_harness")
    finally:
        server.stop()
    assert not data_dir.exists()
    assert port_closes(port)


def get_message(channel, queue: str):
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        method, _, body = channel.basic_get(queue, auto_ack=True)
        if method is not None:
            return body
        time.sleep(0.05)
    return None


def test_rabbitmq_starts_serves_restarts_and_stops():
    import pika

    require(rabbitmq)
    server = rabbitmq.RabbitMQServer()
    server.start()
    try:
        port, data_dir = server.port, server.dir
        queue = f"harness-{uuid.uuid4().hex}"
        conn = pika.BlockingConnection(pika.URLParameters(server.amqp_url))
        channel = conn.channel()
        channel.confirm_delivery()  # publishes return once the broker has the message
        channel.queue_declare(queue, durable=True)
        channel.basic_publish("", queue, b"hello", pika.BasicProperties(delivery_mode=2))
        assert get_message(channel, queue) == b"hello"
        channel.basic_publish("", queue, b"survives", pika.BasicProperties(delivery_mode=2))
        conn.close()

        server.restart()
        conn = pika.BlockingConnection(pika.URLParameters(server.amqp_url))
        assert get_message(conn.channel(), queue) == b"survives"
        conn.close()
    finally:
        server.stop()
    assert not data_dir.exists()
    assert port_closes(port)
