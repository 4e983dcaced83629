"""A 3-node RabbitMQ cluster on loopback loses a node under load (kill -9): the node that held the
quorum inbox's leader, the offer queues and the workers' connections. The inbox goes on with a new
leader on the other two; the offer queues come back with their node, and offers lost meanwhile are
sent again. Nothing is lost: every run finishes, nothing succeeds twice, every acknowledged submit
is in the store. One cluster for the module: starting one takes most of this test's time."""

from __future__ import annotations

import time
from urllib.parse import urlsplit

import pika
import pytest

from bridge.setup_broker import plan
from bridge.topology import declare
from flow45 import names
from flow45.settings import Settings
from tests.conftest import _unavailable
from tests.faults.conftest import PASSWORDS, TEAMS, System
from tests.harness import cluster as harness

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def cluster():
    ok, reason = harness.available()
    if not ok:
        _unavailable(reason)
    nodes = harness.RabbitMQCluster().start()
    commands, _ = plan(Settings(amqp_url=nodes.nodes[0].amqp_url, teams=TEAMS), PASSWORDS)
    for argv in commands:  # users and permissions are the cluster's: set on one node, over HTTP
        nodes.nodes[0].apply(argv)
    yield nodes
    nodes.stop()


def _inbox(node) -> dict:
    """The inbox as the cluster sees it: its leader and its members online."""
    queues = node.http("GET", "/api/queues/%2F?columns=name,leader,online")
    return next((q for q in queues if q["name"] == names.inbox_queue("reports")), {"online": []})


def test_a_node_killed_under_load_loses_nothing(pg, cluster, tmp_path):
    first, _, lost = cluster.nodes
    system = System(pg, first, tmp_path)  # the bridge and the scheduler use the first node
    try:
        port = urlsplit(lost.amqp_url).port
        system.worker_url = f"amqp://reports-worker:{PASSWORDS['reports-worker']}@127.0.0.1:{port}/%2F"
        # A classic queue lives on the node that declared it, a quorum queue's leader too: declared
        # from the node to be lost, before the bridge declares them (again) from the first.
        connection = pika.BlockingConnection(pika.URLParameters(lost.amqp_url))
        offer_queues = declare(connection.channel(), system_settings(first)).offer_queues
        connection.close()
        assert offer_queues == 2
        bridge = system.installation(workers=2)
        runs = system.trigger(20)
        system.wait_succeeded(runs, count=3)
        deadline = time.monotonic() + 20
        while len((inbox := _inbox(first))["online"]) < 3:  # a settled quorum: every member online
            assert time.monotonic() < deadline, "the quorum inbox never had its 3 members online"
            time.sleep(0.1)
        assert inbox["leader"] == lost.nodename
        lost.kill()
        later = system.trigger(10)  # their first offers go to queues whose node is down
        time.sleep(2)
        lost.start_again()  # rejoins the cluster; its durable queues come back
        system.check(runs + later, timeout=90)
        assert bridge.poll() is None, system.logs()
        channel = pika.BlockingConnection(pika.URLParameters(first.amqp_url)).channel()
        for function in ("start", "step"):
            channel.queue_declare(names.offer_queue("reports", function), passive=True)
        channel.connection.close()
    finally:
        system.close()


def system_settings(node) -> Settings:
    return Settings(amqp_url=node.amqp_url, teams=TEAMS)
