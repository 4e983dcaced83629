"""The AMQP transport against a real RabbitMQ, with a stand-in for the bridge (tests/sdk/fake_bridge.py):
it consumes offers from its queue, claims over RPC with direct reply-to, reports, and acks.

No `from __future__ import annotations`: handlers defined inside tests annotate with local types."""

import logging
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pika
import pytest

from bridge.sdk import AmqpTransport, Unroutable, Worker, load_types
from flow45 import names
from flow45.messages import Reply
from tests.conftest import EXAMPLES
from tests.sdk.fake_bridge import FakeBridge, declare_topology, grant, offer_body, publish, queue_depth

pytestmark = [pytest.mark.integration, pytest.mark.timeout(120)]

FUNCTION = "render_pdf"


@pytest.fixture
def broker(rabbitmq_server):
    """A fresh team name (so tests never share queues) and a channel for the test's own publishing."""
    team = "t" + uuid.uuid4().hex[:10]
    conn = pika.BlockingConnection(pika.URLParameters(rabbitmq_server.amqp_url))
    channel = conn.channel()
    declare_topology(channel, team, FUNCTION)
    yield rabbitmq_server.amqp_url, team, channel
    conn.close()


@pytest.fixture
def workers():
    made: list[Worker] = []
    yield made
    for worker in made:
        worker.stop()
    for worker in made:
        assert worker.join(timeout=30), "a worker did not stop"


def start(workers, url, team, *, concurrency=1, user_url=None, setup=None, **options) -> Worker:
    transport = AmqpTransport(user_url or url, team, "w1", reconnect_min=0.1, reconnect_max=0.5)
    worker = Worker(transport, **{"rpc_timeout": 2.0, **options})
    setup(worker)
    workers.append(worker)
    worker.start(concurrency)
    return worker


def test_offer_claim_progress_submit(broker, workers):
    url, team, channel = broker
    types = load_types(EXAMPLES, "reports")
    got = {}

    def setup(worker):
        @worker.handler(FUNCTION)
        def render(task, sales: types.SalesExtract) -> types.Document:
            got.update(sales=sales, attempt=task.attempt, token=task.token, lease=task.lease_expires_at)
            task.progress(50, "half way")
            return types.Document(uri=sales.uri.replace(".parquet", ".pdf"), pages=3)

    with FakeBridge(url, team) as bridge:
        start(workers, url, team, setup=setup)
        sales = {"uri": "s3://b/sales.parquet", "rows": 12}
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, 41, inputs={"sales": sales}))
        bridge.wait_for("submit")
        workers[0].stop()
        assert workers[0].join(10)

    assert bridge.errors == []
    kinds = [r.body["type"] for r in bridge.received]
    assert kinds == ["claim", "progress", "submit"]
    for received in bridge.received:
        props = received.properties
        assert re.fullmatch(r"[0-9a-f]{32}", props.message_id)
        assert props.user_id == "guest"
        assert props.content_type == "application/json"
        assert props.reply_to.startswith("amq.rabbitmq.reply-to.") and props.correlation_id  # the broker names it
        assert received.routing_key == received.body["type"]
        assert received.message.instance == 41 and received.message.token == "tok-41"
    assert len({r.properties.message_id for r in bridge.received}) == 3
    claim, progress, submit = (r.message for r in bridge.received)
    assert claim.worker == "w1"
    assert (progress.percent, progress.message) == (50.0, "half way")
    assert submit.output == {"uri": "s3://b/sales.pdf", "pages": 3, "checksum": None}
    assert isinstance(got["sales"], types.SalesExtract) and got["sales"].rows == 12
    assert got["token"] == "tok-41" and got["lease"] is not None
    assert queue_depth(url, names.offer_queue(team, FUNCTION)) == 0  # acked, not requeued at close


def test_a_worker_started_before_its_queue_exists_waits_for_it(rabbitmq_server, workers, caplog):
    """After a deploy the bridge declares the queues a moment later: a worker started meanwhile
    says it waits, and consumes once the queue is there, its connection intact."""
    url, team = rabbitmq_server.amqp_url, "t" + uuid.uuid4().hex[:10]
    queue = names.offer_queue(team, FUNCTION)
    caplog.set_level(logging.INFO, logger="bridge.sdk.amqp")

    def said(words: str) -> bool:
        return any(words in record.getMessage() for record in caplog.records)

    with FakeBridge(url, team) as bridge, pika.BlockingConnection(pika.URLParameters(url)) as conn:
        worker = Worker(AmqpTransport(url, team, "w1", resubscribe_interval=0.2), rpc_timeout=2.0)
        worker.handler(FUNCTION)(lambda task: {"uri": "u", "pages": 1})
        workers.append(worker)
        worker.start(1)
        deadline = time.monotonic() + 10
        while not said(f"queue {queue} does not exist") and time.monotonic() < deadline:
            time.sleep(0.05)
        assert said(f"queue {queue} does not exist (is the workflow deployed and the bridge running?)")
        channel = conn.channel()
        declare_topology(channel, team, FUNCTION)
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, 1))
        bridge.wait_for("submit")
    assert said(f"queue {queue} exists now; consuming it")
    assert worker.transport.connected.is_set()


def test_a_stale_claim_acks_the_offer_and_runs_nothing(broker, workers):
    url, team, channel = broker
    calls = []

    def setup(worker):
        worker.handler(FUNCTION)(lambda task: calls.append(task))

    stale = Reply(ok=False, code="stale", error="task instance 1: this offer is no longer open")
    with FakeBridge(url, team, answer=lambda r: stale) as bridge:
        start(workers, url, team, setup=setup)
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION))
        bridge.wait_for("claim")
        time.sleep(0.3)
        workers[0].stop()
        assert workers[0].join(10)
    assert calls == [] and [r.body["type"] for r in bridge.received] == ["claim"]
    assert queue_depth(url, names.offer_queue(team, FUNCTION)) == 0


def test_an_unanswered_claim_or_submit_is_sent_again_with_the_same_message_id(broker, workers):
    url, team, channel = broker
    calls = []

    def setup(worker):
        worker.handler(FUNCTION)(lambda task: calls.append(task.instance) or {"uri": "u", "pages": 1})

    def answer(received):  # the first reply to each is lost
        kind = received.body["type"]
        return None if len(bridge.of_type(kind)) == 1 and kind in ("claim", "submit") else grant(received.message)

    with FakeBridge(url, team, answer=answer) as bridge:
        start(workers, url, team, setup=setup, rpc_timeout=0.5, claim_attempts=2, rpc_attempts=2)
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION))
        bridge.wait_for("submit", 2)
        workers[0].stop()
        assert workers[0].join(10)
    for kind in ("claim", "submit"):
        first, second = bridge.of_type(kind)
        assert first.properties.message_id == second.properties.message_id
        assert first.properties.correlation_id != second.properties.correlation_id
    assert calls == [1]
    assert [r.body["type"] for r in bridge.received] == ["claim", "claim", "submit", "submit"]


def test_a_claim_never_answered_puts_the_offer_back(broker, workers):
    url, team, channel = broker
    calls = []

    def setup(worker):
        worker.handler(FUNCTION)(lambda task: calls.append(task.instance) or {"uri": "u", "pages": 1})

    def answer(received):  # the bridge is away for the first two claims
        return None if len(bridge.of_type("claim")) <= 2 else grant(received.message)

    with FakeBridge(url, team, answer=answer) as bridge:
        start(workers, url, team, setup=setup, rpc_timeout=0.3, claim_attempts=1)
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION))
        bridge.wait_for("submit")
    claims = bridge.of_type("claim")
    assert len(claims) == 3 and len({c.properties.message_id for c in claims}) == 3  # each delivery claims anew
    assert calls == [1]


def test_heartbeats_renew_the_lease_while_the_handler_runs(broker, workers):
    url, team, channel = broker

    def setup(worker):
        @worker.handler(FUNCTION)
        def slow(task):
            time.sleep(1.0)
            return {"uri": "u", "pages": 1}

    with FakeBridge(url, team) as bridge:
        start(workers, url, team, setup=setup)
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, lease_seconds=0.3))
        bridge.wait_for("submit")
    beats = [r.message for r in bridge.of_type("progress")]
    assert len(beats) >= 5  # every 0.1s for 1s
    assert all(b.percent is None and b.message is None for b in beats)


def test_a_stale_progress_cancels_the_task_and_nothing_more_is_sent(broker, workers):
    url, team, channel = broker
    seen = []

    def setup(worker):
        @worker.handler(FUNCTION)
        def render(task):
            seen.append(task.progress(10))
            seen.append(task.cancelled.is_set())
            return {"uri": "u", "pages": 1}

    def answer(received):
        if received.body["type"] == "progress":
            return Reply(ok=False, code="stale", error="token is not the current attempt's")
        return grant(received.message)

    with FakeBridge(url, team, answer=answer) as bridge:
        start(workers, url, team, setup=setup)
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION))
        bridge.wait_for("progress")
        deadline = time.monotonic() + 10
        while len(seen) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.3)  # time enough for a submit, which must not come
    assert seen == [False, True]
    assert [r.body["type"] for r in bridge.received] == ["claim", "progress"]


def test_an_exception_is_reported_as_fail(broker, workers):
    url, team, channel = broker

    def setup(worker):
        @worker.handler(FUNCTION)
        def render(task):
            raise ValueError("no fonts")

    with FakeBridge(url, team) as bridge:
        start(workers, url, team, setup=setup)
        publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION))
        (fail,) = bridge.wait_for("fail")
    assert (fail.message.error, fail.message.retryable) == ("ValueError: no fonts", True)


def test_undo_notices_reach_on_undo_and_are_acked(broker, workers):
    url, team, channel = broker
    notices = []

    def setup(worker):
        worker.handler(FUNCTION)(lambda task: {"uri": "u", "pages": 1})
        worker.on_undo(FUNCTION)(notices.append)

    notice = {
        "instance": 5, "run": 7, "team": team, "workflow": "monthly_report", "version": 1, "task": "render",
        "function": FUNCTION, "attempt": 1, "output": {"uri": "s3://b/x.pdf", "pages": 2}, "reason": "wrong logo",
        "actor": "ann", "params": {},
    }
    with FakeBridge(url, team):
        start(workers, url, team, setup=setup)
        publish(channel, names.undo_key(team, FUNCTION), notice)
        deadline = time.monotonic() + 10
        while not notices and time.monotonic() < deadline:
            time.sleep(0.02)
        workers[0].stop()
        assert workers[0].join(10)
    assert [n.model_dump() for n in notices] == [notice]
    assert queue_depth(url, names.undo_queue(team, FUNCTION)) == 0


def test_stop_finishes_the_running_task_and_leaves_the_rest_queued(broker, workers):
    url, team, channel = broker
    started, release = threading.Event(), threading.Event()

    def setup(worker):
        @worker.handler(FUNCTION)
        def render(task):
            started.set()
            release.wait(10)
            return {"uri": "u", "pages": 1}

    with FakeBridge(url, team) as bridge:
        start(workers, url, team, setup=setup)
        for instance in (1, 2, 3):
            publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, instance))
        assert started.wait(10)
        time.sleep(0.2)  # the next offer is prefetched and waits for the busy thread
        workers[0].stop()
        assert workers[0].join(0.3) is False
        release.set()
        assert workers[0].join(10)
        time.sleep(0.2)
    assert [r.body["type"] for r in bridge.received] == ["claim", "submit"]
    deadline = time.monotonic() + 10  # the prefetched offer goes back once the broker sees the channel close
    while queue_depth(url, names.offer_queue(team, FUNCTION)) < 2 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert queue_depth(url, names.offer_queue(team, FUNCTION)) == 2


def test_concurrency_n_over_amqp(broker, workers):
    url, team, channel = broker
    barrier = threading.Barrier(3, timeout=10)

    def setup(worker):
        @worker.handler(FUNCTION)
        def render(task):
            barrier.wait()
            return {"uri": "u", "pages": 1}

    with FakeBridge(url, team) as bridge:
        start(workers, url, team, setup=setup, concurrency=3)
        for instance in range(1, 7):
            publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, instance))
        submits = bridge.wait_for("submit", 6)
    assert sorted(s.message.instance for s in submits) == [1, 2, 3, 4, 5, 6]
    assert bridge.of_type("fail") == []


def test_a_least_privileged_worker_user_works_and_reconnects(broker, workers, rabbitmq_server):
    """The permissions DESIGN.md gives a team's worker: write only flow45.in.TEAM, read only
    flow45.tasks.TEAM.*, configure nothing. Then the broker drops the worker's connection."""
    url, team, channel = broker
    user = f"{team}-worker"
    rabbitmq_server.apply(["add_user", user, "secret"])
    rabbitmq_server.apply(["set_permissions", "-p", "/", user, "^$", rf"^flow45\.in\.{team}$", rf"^flow45\.tasks\.{team}\..*"])
    user_url = url.replace("guest:guest", f"{user}:secret")
    calls = []
    in_hand, dropped = threading.Event(), threading.Event()

    def setup(worker):
        @worker.handler(FUNCTION)
        def render(task):
            calls.append(task.instance)
            if task.instance == 3:
                in_hand.set()
                dropped.wait(10)
            return {"uri": "u", "pages": 1}

    claimed: set[int] = set()

    def answer(received):  # as the bridge: an instance is claimed once
        message = received.message
        if message.type == "claim":
            if message.instance in claimed:  # its offer came again: the ack was lost with the connection
                return Reply(ok=False, code="stale", error=f"task instance {message.instance} is claimed already")
            claimed.add(message.instance)
        return grant(message)

    try:
        with FakeBridge(url, team, answer=answer) as bridge:
            worker = start(workers, url, team, setup=setup, user_url=user_url)
            publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, 1))
            bridge.wait_for("submit")
            assert bridge.received[0].properties.user_id == user

            rabbitmq_server.close_user_connections(user, "test: connection dropped")
            time.sleep(0.3)
            publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, 2))
            bridge.wait_for("submit", 2)
            assert worker.transport.connected.is_set()

            # A task in hand when the connection drops still reports once it is back.
            publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, 3))
            assert in_hand.wait(10)
            rabbitmq_server.close_user_connections(user, "test: dropped mid-task")
            dropped.set()
            submits = bridge.wait_for("submit", 3)
            worker.stop()
            assert worker.join(10)
    finally:
        rabbitmq_server.apply(["delete_user", user])
    assert calls == [1, 2, 3]
    assert [s.message.instance for s in submits] == [1, 2, 3]


def test_a_request_nobody_can_route_fails_fast(rabbitmq_server):
    team = "t" + uuid.uuid4().hex[:10]
    with pika.BlockingConnection(pika.URLParameters(rabbitmq_server.amqp_url)) as conn:
        conn.channel().exchange_declare(names.inbound_exchange(team), "fanout", durable=True)  # bound to nothing
    transport = AmqpTransport(rabbitmq_server.amqp_url, team, "w1")
    transport.open(None)
    try:
        started = time.monotonic()
        with pytest.raises(Unroutable, match=rf"flow45\.in\.{team} routed the claim message to no queue"):
            transport.request({"type": "claim", "instance": 1, "token": "t", "worker": "w1"}, "m-1", timeout=10)
        assert time.monotonic() - started < 5
    finally:
        transport.close()


def test_the_plain_pika_example_speaks_the_same_protocol(broker):
    """examples/plain_pika_worker.py, run as a program, against the stand-in bridge; then SIGTERM."""
    url, team, channel = broker
    script = Path(__file__).resolve().parents[2] / "examples" / "plain_pika_worker.py"
    with FakeBridge(url, team) as bridge:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--url", url, "--team", team, "--function", FUNCTION,
             "--worker", "plain-1", "--step-seconds", "0.01"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        try:
            sales = {"uri": "s3://b/sales.parquet", "rows": 12}
            publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, 9, inputs={"sales": sales}))
            (submit,) = bridge.wait_for("submit", timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            output, _ = proc.communicate(timeout=20)
    assert proc.returncode == 0, output
    assert bridge.errors == []
    assert [r.body["type"] for r in bridge.received] == ["claim"] + ["progress"] * 5 + ["submit"]
    assert all(r.properties.user_id == "guest" and r.properties.message_id for r in bridge.received)
    assert bridge.received[0].message.worker == "plain-1"
    assert submit.message.output == {"uri": "s3://b/sales.pdf", "pages": 5}
    assert queue_depth(url, names.offer_queue(team, FUNCTION)) == 0


def test_the_plain_pika_example_waits_for_its_queue(rabbitmq_server):
    """Started before the bridge declared its queue, the example waits instead of dying of a 404."""
    url, team = rabbitmq_server.amqp_url, "t" + uuid.uuid4().hex[:10]
    script = Path(__file__).resolve().parents[2] / "examples" / "plain_pika_worker.py"
    with FakeBridge(url, team) as bridge, pika.BlockingConnection(pika.URLParameters(url)) as conn:
        proc = subprocess.Popen(
            [sys.executable, str(script), "--url", url, "--team", team, "--function", FUNCTION, "--step-seconds", "0"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )
        lines: list[str] = []
        reader = threading.Thread(target=lambda: [lines.append(line) for line in proc.stdout], daemon=True)
        reader.start()
        missing = f"queue {names.offer_queue(team, FUNCTION)} does not exist yet"
        try:
            deadline = time.monotonic() + 30
            while not any(missing in line for line in lines) and proc.poll() is None and time.monotonic() < deadline:
                time.sleep(0.05)  # the example starts and finds no queue
            channel = conn.channel()
            declare_topology(channel, team, FUNCTION)
            publish(channel, names.offer_key(team, FUNCTION), offer_body(team, FUNCTION, 9))
            bridge.wait_for("submit", timeout=20)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=20)
            reader.join(timeout=10)
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert missing in output


WORKER_START = """
import logging, sys
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
from bridge.sdk import AmqpTransport, Worker
url, team, function = sys.argv[1:]
worker = Worker(AmqpTransport(url, team, "w1"))
worker.handler(function)(lambda task, sales: None)
worker.start(1)
assert worker.transport.connected.wait(30), "not connected"
worker.stop()
assert worker.join(timeout=30)
"""


def test_a_worker_starts_without_pikas_chatter(broker):
    """An SDK worker logging at INFO, as the examples do: its own lines, none of pika's."""
    url, team, _channel = broker
    done = subprocess.run([sys.executable, "-c", WORKER_START, url, team, FUNCTION],
                          capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert any(" bridge.sdk." in line and "connected to" in line for line in lines), done.stderr
    assert [line for line in lines if " pika" in line] == []


WORKER_REFUSED = """
import logging, sys, threading
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
retries = threading.Semaphore(0)
logging.getLogger("bridge.sdk.amqp").addFilter(lambda record: retries.release() or True)
from bridge.sdk import AmqpTransport, Worker
worker = Worker(AmqpTransport(sys.argv[1], "reports", "w1", reconnect_min=0.1, reconnect_max=0.1))
worker.handler("render_pdf")(lambda task, sales: None)
worker.start(1)
assert retries.acquire(timeout=30) and retries.acquire(timeout=30), "no retries logged"
worker.stop()
assert worker.join(timeout=30)
"""


def test_a_worker_with_a_wrong_password_says_so_in_one_line_per_retry(rabbitmq_server):
    url = rabbitmq_server.amqp_url.replace("guest:guest", "guest:bad-pw-123")
    done = subprocess.run([sys.executable, "-c", WORKER_REFUSED, url], capture_output=True, text=True, timeout=90)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "bad-pw-123" not in done.stderr
    retries = [line for line in done.stderr.splitlines() if line.startswith("WARNING bridge.sdk.amqp")]
    shown = url.replace(":bad-pw-123@", ":***@")
    assert len(retries) >= 2
    assert all(f"cannot connect to {shown}: access refused: wrong user name or password" in r for r in retries)
    assert [line for line in done.stderr.splitlines() if " pika" in line] == []


def test_a_url_without_the_users_password_is_refused_at_once_naming_it():
    with pytest.raises(ValueError, match=r"^amqp://reports-worker@rabbit/flow45: give the password of 'reports-worker'"):
        AmqpTransport("amqp://reports-worker@rabbit/flow45", "reports", "w1")
