"""Each team's operators read through a queue of their own: a team asking faster than the bridge
answers waits behind its own reads, not another team's; a client on a broker set up before still reads."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid

import pika
import pytest

from bridge.remote import RemoteClient
from bridge.service import Bridge
from bridge.setup_broker import plan, team_permissions
from flow45 import names
from flow45.errors import Flow45Error
from tests.bridge.test_team_inboxes import _stop, _waiting

pytestmark = pytest.mark.integration

WHOAMI = json.dumps({"type": "whoami"}).encode()


def _read_properties(user: str) -> pika.BasicProperties:
    return pika.BasicProperties(content_type="application/json", message_id=uuid.uuid4().hex, user_id=user,
                                reply_to="amq.rabbitmq.reply-to", correlation_id="c")


def test_a_team_flooding_its_reads_does_not_hold_up_another_teams_read(bridge_env):
    """rival asks 3,000 times while the bridge is down, reports once after; rival's answers are
    counted as they come, until reports' comes."""
    _stop(bridge_env.bridge, bridge_env.thread)
    flood = 3000
    rival = pika.BlockingConnection(pika.URLParameters(bridge_env.url("rival-ops")))
    rival_channel = rival.channel()
    rival_answers: list[bytes] = []
    rival_channel.basic_consume("amq.rabbitmq.reply-to", lambda _c, _m, _p, body: rival_answers.append(body),
                                auto_ack=True)
    for _ in range(flood):
        rival_channel.basic_publish(names.read_exchange("rival"), "whoami", WHOAMI, _read_properties("rival-ops"))
    reports = pika.BlockingConnection(pika.URLParameters(bridge_env.url("reports-ops")))
    channel = reports.channel()
    replies: list[dict] = []
    channel.basic_consume("amq.rabbitmq.reply-to", lambda _c, _m, _p, body: replies.append(json.loads(body)),
                          auto_ack=True)
    channel.basic_publish(names.read_exchange("reports"), "whoami", WHOAMI, _read_properties("reports-ops"))
    bridge = Bridge(bridge_env.settings, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not replies and time.monotonic() < deadline:
            rival.process_data_events(time_limit=0)
            reports.process_data_events(time_limit=0.005)
        rival_answered = len(rival_answers)
    finally:
        _stop(bridge, thread)
        reports.close()
        rival.close()
    assert replies and replies[0]["result"]["team"] == "reports"
    assert rival_answered < flood / 3, f"reports' read waited behind {rival_answered} of rival's"


def test_once_it_knows_its_team_a_remote_client_reads_through_the_teams_own_queue(bridge_env):
    client = RemoteClient(bridge_env.url("reports-ops"))
    try:
        assert client.team == "reports"  # `whoami`, through the shared exchange
        _stop(bridge_env.bridge, bridge_env.thread)
        client.rpc.timeout = 1.0  # no bridge answers now: not waited for long
        with pytest.raises(Flow45Error, match="no answer from the bridge"):
            client.runs()
        assert _waiting(bridge_env, names.reads_queue("reports")) == 1
        assert _waiting(bridge_env, names.READS_QUEUE) == 0
    finally:
        client.close()
        bridge_env.channel().queue_purge(names.reads_queue("reports"))


def _operator_may_write(env, user: str, write: str) -> None:
    configure, _, read = team_permissions("rival", "operator")
    env.rabbit.apply(["set_permissions", "-p", "/", user, configure, write, read])


def test_an_operator_set_up_before_teams_read_apart_still_reads(bridge_env, caplog):
    """Its broker user may not send to flow45.read.TEAM (setup-broker not run again since): refused
    there once, the client reads through the shared exchange."""
    _, write, _ = team_permissions("rival", "operator")
    older = write.replace("|" + re.escape(names.read_exchange("rival")), "")
    assert older != write and not re.search(older, names.read_exchange("rival"))
    _operator_may_write(bridge_env, "rival-ops", older)
    client = RemoteClient(bridge_env.url("rival-ops"), timeout=10.0)
    try:
        assert client.team == "rival"
        assert isinstance(client.runs(), list)  # answered, though the team's own exchange was refused
        assert isinstance(client.runs(), list)
        refused = [r for r in caplog.records if "not the team's own exchange" in r.getMessage()]
        assert len(refused) == 1 and "flow45.read.rival" in refused[0].getMessage()
    finally:
        client.close()
        _operator_may_write(bridge_env, "rival-ops", write)
    assert any(argv[3:4] == ["rival-ops"] and argv[-2] == write for argv in plan(bridge_env.settings, {})[0])
