"""A committer publishes its batch's replies on a connection of its own (bridge/direct_replies.py):
the requester gets them through direct reply-to, once; when that connection cannot be had, the IO
loop replies as before, and the broker is not asked again for every batch."""

from __future__ import annotations

import json
import time
import uuid

import pika
import pytest

from bridge.batch import Outcome
from bridge.commits import CommitPool
from bridge.direct_replies import RETRY_AFTER, DirectReplies
from bridge.inbound import Delivery
from flow45 import store
from flow45.config import load_config
from tests.bridge.broker_helpers import wait_offer
from tests.conftest import EXAMPLES
from tests.harness.ports import free_port

pytestmark = pytest.mark.integration


def _request(asking, server: pika.BlockingConnection) -> Delivery:
    """A request published with direct reply-to (on the channel that consumes the replies), as the
    server takes it (its reply-to rewritten)."""
    queue = server.channel().queue_declare("", exclusive=True).method.queue
    asking.basic_publish("", queue, b"{}", pika.BasicProperties(reply_to="amq.rabbitmq.reply-to", correlation_id="c1"))
    deadline = time.monotonic() + 10
    while True:
        method, properties, _body = server.channel().basic_get(queue, auto_ack=True)
        if method is not None:
            return Delivery(tag=1, exchange="flow45.in.reports", user_id="reports-worker", message_id=uuid.uuid4().hex,
                            reply_to=properties.reply_to, correlation_id=properties.correlation_id, body=b"{}")
        assert time.monotonic() < deadline, "the request did not arrive"
        time.sleep(0.01)


def test_a_reply_goes_from_the_committers_connection_to_the_requester(rabbitmq_server, pg_store):
    url = rabbitmq_server.amqp_url
    requester, server = pika.BlockingConnection(pika.URLParameters(url)), pika.BlockingConnection(pika.URLParameters(url))
    replies = DirectReplies(url)
    try:
        answers: list[dict] = []
        channel = requester.channel()
        channel.basic_consume("amq.rabbitmq.reply-to", lambda _c, _m, _p, body: answers.append(json.loads(body)),
                              auto_ack=True)
        delivery = _request(channel, server)
        no_reply = Delivery(tag=2, exchange="flow45.in.reports", user_id="reports-worker", message_id="m2",
                            reply_to=None, correlation_id=None, body=b"{}")
        outcomes = [Outcome(result={"instance": 7}), Outcome(result={"instance": 8})]
        replies.publish([delivery, no_reply], outcomes)
        assert [o.replied for o in outcomes] == [True, False]  # the second asked for no reply: nothing to send
        deadline = time.monotonic() + 10
        while not answers and time.monotonic() < deadline:
            requester.process_data_events(time_limit=0.05)
        requester.process_data_events(time_limit=0.2)
        assert answers == [{"ok": True, "result": {"instance": 7}}]
    finally:
        replies.close()
        requester.close()
        server.close()


def test_without_a_broker_the_replies_are_left_to_the_io_loop_and_it_is_not_asked_again_at_once():
    now = [100.0]
    replies = DirectReplies(f"amqp://guest:guest@127.0.0.1:{free_port()}/%2F", clock=lambda: now[0])
    delivery = Delivery(tag=1, exchange="flow45.in.reports", user_id="reports-worker", message_id="m1",
                        reply_to="amq.rabbitmq.reply-to.g1h2", correlation_id="c1", body=b"{}")
    outcome = Outcome(result={"instance": 7})
    replies.publish([delivery], [outcome])
    assert not outcome.replied
    started = time.monotonic()
    replies.publish([delivery], [outcome])  # within RETRY_AFTER: not tried again
    assert not outcome.replied and time.monotonic() - started < 0.05
    now[0] += RETRY_AFTER
    replies.publish([delivery], [outcome])  # tried again, and refused again
    assert not outcome.replied


def test_a_connection_the_broker_closed_leaves_the_replies_to_the_io_loop(rabbitmq_server, pg_store):
    """pika learns that a send failed only as its loop turns: taken for sent, the replies of every
    batch after a broker restart went nowhere, and their senders waited in vain. Once the IO loop
    has a new broker connection, the committer opens one again at once."""
    replies = DirectReplies(rabbitmq_server.amqp_url)
    delivery = Delivery(tag=1, exchange="flow45.in.reports", user_id="reports-worker", message_id="m1",
                        reply_to="amq.rabbitmq.reply-to.g1h2", correlation_id="c1", body=b"{}")
    try:
        first = Outcome(result={"instance": 7})
        replies.publish([delivery], [first])
        assert first.replied  # the connection is open (the reply-to names nobody: the broker drops it)
        rabbitmq_server.ctl("close_all_connections", "the test closes them")
        time.sleep(0.2)  # the broker's close reaches the socket
        later = [Outcome(result={"instance": 8}) for _ in range(2)]
        for outcome in later:
            replies.publish([delivery], [outcome])
        assert [o.replied for o in later] == [False, False]  # the second is not tried before RETRY_AFTER
        reconnected = Outcome(result={"instance": 9})
        replies.publish([delivery], [reconnected], generation=1)  # the IO loop has a new broker connection
        assert reconnected.replied  # opened again at once
    finally:
        replies.close()


def test_a_bridge_answers_each_request_once(bridge_env):
    """The committer replies; the IO loop, which used to, does not reply a second time."""
    store.deploy(load_config(EXAMPLES), actor="ops")
    store.trigger("reports", "monthly_report", actor="ops", params={"month": "2026-10"})
    offer = wait_offer(bridge_env, "reports", "extract_sales")
    attempt = {"instance": offer["instance"], "token": offer["token"]}
    messages = [{"type": "claim", **attempt, "worker": "w"}] + [{"type": "progress", **attempt, "percent": p}
                                                                 for p in (10, 20)]
    connection = pika.BlockingConnection(pika.URLParameters(bridge_env.url("reports-worker")))
    try:
        channel = connection.channel()
        answers: list[dict] = []
        channel.basic_consume("amq.rabbitmq.reply-to", lambda _c, _m, _p, body: answers.append(json.loads(body)),
                              auto_ack=True)
        for n, message in enumerate(messages):  # one after another: a batch each
            channel.basic_publish("flow45.in.reports", message["type"], json.dumps(message).encode(),
                                  pika.BasicProperties(content_type="application/json", message_id=uuid.uuid4().hex,
                                                       user_id="reports-worker", reply_to="amq.rabbitmq.reply-to",
                                                       correlation_id=str(n)))
            deadline = time.monotonic() + 15
            while len(answers) <= n and time.monotonic() < deadline:
                connection.process_data_events(time_limit=0.02)
        connection.process_data_events(time_limit=0.5)  # a second reply would have come by now
        assert [a["ok"] for a in answers] == [True, True, True], answers
    finally:
        connection.close()



def _connection_names(rabbit) -> str:
    return rabbit.ctl("list_connections", "-q", "client_properties").stdout


def test_committers_connect_to_the_database_and_the_broker_before_their_first_batch(rabbitmq_server, pg_store):
    """A committer that connected for its first batch kept that batch's senders waiting for two
    handshakes, one with PostgreSQL and one with the broker."""
    expected = [f"flow45 bridge replies (flow45-bridge-commit-{n})" for n in range(2)]
    deadline = time.monotonic() + 10
    while any(name in _connection_names(rabbitmq_server) for name in expected):  # an earlier test's bridge
        assert time.monotonic() < deadline, "an earlier bridge's committers kept their connections"
        time.sleep(0.2)
    pool = CommitPool(2, lambda _job: None, rabbitmq_server.amqp_url)
    try:
        deadline = time.monotonic() + 10
        while True:
            listed = _connection_names(rabbitmq_server)
            named = [name for name in expected if name in listed]
            if named == expected and len(pool.backend_ids()) == 2:
                break
            assert time.monotonic() < deadline, f"not connected before any batch: broker {named}, " \
                                                f"database sessions {pool.backend_ids()}"
            time.sleep(0.2)
    finally:
        pool.close()


def test_operators_see_the_bridges_connections_by_name(bridge_env):
    deadline = time.monotonic() + 10
    wanted = ["flow45 bridge"] + [f"flow45 bridge replies (flow45-bridge-commit-{n})"
                                  for n in range(bridge_env.bridge.connections)]
    while not all(f'"{name}"' in _connection_names(bridge_env.rabbit) for name in wanted):
        assert time.monotonic() < deadline, _connection_names(bridge_env.rabbit)
        time.sleep(0.2)
