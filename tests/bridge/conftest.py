"""A real bridge between a throwaway RabbitMQ and a throwaway PostgreSQL, with two teams' users."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import pika
import pytest

from bridge.service import Bridge
from bridge.setup_broker import plan
from flow45.settings import Settings, use_settings
from tests.wirecheck import wire_log  # noqa: F401  (autouse: every message checked against flow45 schema)

PASSWORDS = {"reports-worker": "rw-secret", "reports-ops": "ro-secret", "rival-worker": "xw-secret",
             "rival-ops": "xo-secret"}
TEAMS = {
    "reports": {"users": {"reports-worker": "worker", "reports-ops": "operator"}},
    "rival": {"users": {"rival-worker": "worker", "rival-ops": "operator"}},
}


@dataclass
class BridgeEnv:
    settings: Settings
    rabbit: object
    bridge: Bridge
    thread: threading.Thread

    def url(self, user: str) -> str:
        parts = urlsplit(self.rabbit.amqp_url)
        return f"amqp://{user}:{PASSWORDS[user]}@{parts.hostname}:{parts.port}/%2F"

    def channel(self, user: str = "guest"):
        url = self.rabbit.amqp_url if user == "guest" else self.url(user)
        return pika.BlockingConnection(pika.URLParameters(url)).channel()


@pytest.fixture(scope="session")
def broker_users(rabbitmq_server):
    settings = Settings(amqp_url=rabbitmq_server.amqp_url, teams=TEAMS)
    commands, _ = plan(settings, PASSWORDS)
    for argv in commands:
        rabbitmq_server.apply(argv)
    return rabbitmq_server


def purge_all(rabbit) -> None:
    """Empty every flow45 queue: one listing (over HTTP on the session's node; rabbitmqctl would
    start an Erlang VM, a second or more), then the purges over one AMQP connection."""
    listing = [n for n in rabbit.queues() if n.startswith("flow45.")]
    connection = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_url))
    try:
        channel = connection.channel()
        for name in listing:
            try:
                channel.queue_purge(name)
            except pika.exceptions.ChannelClosedByBroker:  # deleted since the listing
                channel = connection.channel()
    finally:
        connection.close()


def waiting(env, queue: str) -> int:
    """Messages waiting in `queue`."""
    channel = env.channel()
    try:
        return channel.queue_declare(queue, passive=True).method.message_count
    finally:
        channel.connection.close()


def set_cap(env, policy: str, setting: str, messages: int, refuses_past) -> None:
    """setup-broker's `policy`, with `setting` at `messages`; returns once the broker enforces it (it
    applies a policy to its queues a moment later): `refuses_past(n)` tells whether a queue under it
    refuses past n messages."""
    settings = Settings(amqp_url=env.rabbit.amqp_url, teams=env.settings.teams, **{setting: messages})
    [argv] = [argv for argv in plan(settings, {})[0] if policy in argv]
    env.rabbit.apply(argv)
    deadline = time.monotonic() + 15
    capped = messages <= 10
    while refuses_past(min(messages, 10)) != capped:
        assert time.monotonic() < deadline, f"the broker did not take {policy}'s cap of {messages}"
        time.sleep(0.1)


def answer_reads(server, channel, dead, deliveries) -> None:
    """What the read server does with reads that came together: lines them up, then answers the teams
    in turn until none waits."""
    server._take(channel, dead, deliveries)
    while server._answer_turn(channel, dead):
        pass


@pytest.fixture
def relay_interval() -> float:
    return 0.2


@pytest.fixture
def bridge_env(broker_users, postgres_url, pg_store, relay_interval):
    purge_all(broker_users)
    settings = Settings(
        database_url=postgres_url, amqp_url=broker_users.amqp_url, teams=TEAMS, relay_interval=relay_interval
    )
    use_settings(settings)
    bridge = Bridge(settings, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    assert bridge.started.wait(20) and bridge.consuming, "the bridge did not start consuming"
    yield BridgeEnv(settings, broker_users, bridge, thread)
    bridge.stop()
    thread.join(timeout=10)
