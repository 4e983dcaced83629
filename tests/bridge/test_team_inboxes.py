"""Each team has an inbox of its own: a team sending faster than the bridge applies waits behind its
own messages, not another team's, and past its cap the broker refuses that team alone."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pika
import pytest

from bridge.rpc import call
from bridge.sdk import AmqpTransport, InboxFull
from bridge.service import Bridge
from flow45 import names
from flow45.errors import Flow45Error
from flow45.settings import Settings
from tests.bridge.conftest import set_cap
from tests.bridge.conftest import waiting as _waiting

pytestmark = pytest.mark.integration

PROGRESS = json.dumps({"type": "progress", "instance": 987654321, "token": "t", "percent": 1}).encode()


def _properties(user: str, **extra) -> pika.BasicProperties:
    return pika.BasicProperties(content_type="application/json", message_id=uuid.uuid4().hex, user_id=user, **extra)


def _start_bridge(env) -> tuple[Bridge, threading.Thread]:
    """A bridge, returned once it consumes."""
    bridge = Bridge(env.settings, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    assert bridge.started.wait(20), "the bridge did not start consuming"
    return bridge, thread


def _stop(bridge: Bridge, thread: threading.Thread) -> None:
    bridge.stop()
    thread.join(timeout=10)


class _Asker:
    """A connection of `user` that publishes a claim and waits for its reply (direct reply-to: the
    channel that asked must stay open until the answer comes)."""

    def __init__(self, env, user: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(env.url(user)))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()  # `ask` returns once the broker has the message in its queue
        self.replies: list[dict] = []
        self.channel.basic_consume("amq.rabbitmq.reply-to", lambda _c, _m, _p, b: self.replies.append(json.loads(b)),
                                   auto_ack=True)
        self.user = user

    def ask(self) -> None:
        body = json.dumps({"type": "claim", "instance": 987654321, "token": "t", "worker": "w"}).encode()
        self.channel.basic_publish(names.inbound_exchange(self.user.split("-")[0]), "claim", body, _properties(
            self.user, reply_to="amq.rabbitmq.reply-to", correlation_id="c"))

    def reply(self, timeout: float = 30.0) -> dict:
        deadline = time.monotonic() + timeout
        while not self.replies and time.monotonic() < deadline:
            self.connection.process_data_events(time_limit=0.05)
        assert self.replies, "no reply"
        return self.replies[0]

    def close(self) -> None:
        self.connection.close()


def test_a_team_flooding_its_inbox_does_not_hold_up_another_teams_message(bridge_env):
    """rival sends 4,000 messages while the bridge is down, reports one after them. The bridge
    answers reports before it has got through half of rival's (each refusal of rival's leaves a copy
    in rival's dead letters: counted when reports' answer comes)."""
    _stop(bridge_env.bridge, bridge_env.thread)
    flood = 4000
    rival = bridge_env.channel("rival-worker")
    for _ in range(flood):
        rival.basic_publish(names.inbound_exchange("rival"), "progress", PROGRESS, _properties("rival-worker"))
    rival.connection.close()
    reports = _Asker(bridge_env, "reports-worker")
    reports.ask()
    bridge, thread = _start_bridge(bridge_env)
    try:
        answer = reports.reply()
        rival_applied = _waiting(bridge_env, names.dead_queue("rival"))
    finally:
        reports.close()
        _stop(bridge, thread)
    assert answer["ok"] is False and answer["code"] == "not_found"
    assert rival_applied < flood / 2, f"reports' message waited behind {rival_applied} of rival's"


def _refused_past(env, messages: int) -> bool:
    """Whether rival's inbox, emptied, refuses one of `messages` + 5 (a quorum queue checks its cap
    after it takes a message: it may hold one more). Left empty."""
    channel = env.channel("rival-worker")
    channel.confirm_delivery()
    admin = env.channel()
    admin.queue_purge(names.inbox_queue("rival"))
    try:
        for _ in range(messages + 5):
            channel.basic_publish(names.inbound_exchange("rival"), "progress", PROGRESS, _properties("rival-worker"))
        return False
    except pika.exceptions.NackError:
        return True
    finally:
        admin.queue_purge(names.inbox_queue("rival"))
        admin.connection.close()
        channel.connection.close()


def _set_inbox_cap(env, messages: int) -> None:
    set_cap(env, "flow45-inbox", "inbox_max_messages", messages, lambda n: _refused_past(env, n))


def test_past_its_inbox_cap_a_team_is_refused_and_another_team_is_not(bridge_env):
    _stop(bridge_env.bridge, bridge_env.thread)
    _set_inbox_cap(bridge_env, 10)
    try:
        rival = bridge_env.channel("rival-worker")
        rival.confirm_delivery()
        refused = 0
        for _ in range(30):
            try:
                rival.basic_publish(names.inbound_exchange("rival"), "progress", PROGRESS, _properties("rival-worker"))
            except pika.exceptions.NackError:
                refused += 1
        rival.connection.close()
        reports = bridge_env.channel("reports-worker")
        reports.confirm_delivery()
        reports.basic_publish(names.inbound_exchange("reports"), "progress", PROGRESS, _properties("reports-worker"))
        reports.connection.close()
        waiting = {team: _waiting(bridge_env, names.inbox_queue(team)) for team in ("rival", "reports")}
    finally:
        _set_inbox_cap(bridge_env, Settings.model_fields["inbox_max_messages"].default)
    assert 10 <= waiting["rival"] <= 11 and refused == 30 - waiting["rival"]  # at most one over: checked after each
    assert waiting["reports"] == 1


def test_messages_left_in_the_shared_inbox_are_applied_then_it_is_deleted(bridge_env):
    """An installation upgraded with messages in the inbox every team shared: the bridge applies them,
    stops routing new ones there, and deletes it once it is empty and no bridge consumes it."""
    _stop(bridge_env.bridge, bridge_env.thread)
    admin = bridge_env.channel()
    admin.queue_declare(names.SHARED_INBOX, durable=True, arguments={"x-queue-type": "quorum"})
    admin.queue_unbind(names.inbox_queue("reports"), names.inbound_exchange("reports"))  # as it was bound before
    admin.queue_bind(names.SHARED_INBOX, names.inbound_exchange("reports"))
    reports = _Asker(bridge_env, "reports-worker")
    reports.ask()
    assert _waiting(bridge_env, names.SHARED_INBOX) == 1
    bridge, thread = _start_bridge(bridge_env)
    try:
        answer = reports.reply()
        bindings = bridge_env.rabbit.http("GET", f"/api/queues/%2F/{names.SHARED_INBOX}/bindings")
        assert _waiting(bridge_env, names.SHARED_INBOX) == 0
    finally:
        reports.close()
        _stop(bridge, thread)
    assert answer["code"] == "not_found"
    assert [b["source"] for b in bindings if b["source"]] == []  # no team's messages go there any more
    bridge, thread = _start_bridge(bridge_env)
    _stop(bridge, thread)
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):
        _waiting(bridge_env, names.SHARED_INBOX)
    admin.connection.close()


def _fill(env, team: str, user: str, count: int = 15) -> None:
    channel = env.channel(user)
    channel.confirm_delivery()
    for _ in range(count):
        try:
            channel.basic_publish(names.inbound_exchange(team), "progress", PROGRESS, _properties(user))
        except pika.exceptions.NackError:
            pass
    channel.connection.close()


def test_a_worker_or_an_operator_whose_inbox_is_full_is_told_so_at_once(bridge_env):
    """Not a timeout: the broker's refusal, named, while the request would still wait for its reply."""
    _stop(bridge_env.bridge, bridge_env.thread)
    _set_inbox_cap(bridge_env, 10)
    try:
        _fill(bridge_env, "rival", "rival-worker")
        _fill(bridge_env, "reports", "reports-worker")
        transport = AmqpTransport(bridge_env.url("rival-worker"), "rival", "w1")
        transport.open(None)
        try:
            assert transport.connected.wait(10)
            refused = r"refused the progress: the inbox of team rival \(flow45\.inbox\.rival\) is full"
            with pytest.raises(InboxFull, match=refused):
                transport.request(json.loads(PROGRESS), uuid.uuid4().hex, timeout=20)
        finally:
            transport.close()
        with pytest.raises(Flow45Error, match=r"refused the trigger: the inbox of team reports .* is full"):
            call(bridge_env.url("reports-ops"), "reports", {"type": "trigger", "workflow": "monthly_report"},
                 timeout=20)
    finally:
        bridge_env.channel().queue_purge(names.inbox_queue("reports"))
        _set_inbox_cap(bridge_env, Settings.model_fields["inbox_max_messages"].default)
