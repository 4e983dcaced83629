"""Hostile messages against the real bridge (RabbitMQ + PostgreSQL): each is answered and lands in
its own team's dead-letter queue with secrets redacted, a reply never reaches another team's queue,
and the bridge still serves a normal run afterwards."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pika
import pytest

from bridge.rpc import call
from bridge.service import Bridge
from flow45 import names, store
from flow45.config import load_config
from tests.bridge.broker_helpers import wait_offer
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration

PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw\n-----END PRIVATE KEY-----"
BEARER = "Bearer abcdefghijklmnopqrstuvwxyz0123456789"
SECRETS = (b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw", b"abcdefghijklmnopqrstuvwxyz0123456789")
RIVAL_CONFIG = """
team: rival
types:
  Blob: {fields: {uri: string}}
workflows:
  nightly: {tasks: {load: {function: load_blob, output: Blob}}}
"""


def send(env, user: str, body: bytes, reply_to: str = "amq.rabbitmq.reply-to", wait: bool = True) -> dict | None:
    """Publish as `user` to its team's exchange; the reply, if one is expected."""
    connection = pika.BlockingConnection(pika.URLParameters(env.url(user)))
    channel = connection.channel()
    replies: list[dict] = []
    channel.basic_consume("amq.rabbitmq.reply-to", lambda _c, _m, _p, b: replies.append(json.loads(b)), auto_ack=True)
    channel.basic_publish(f"flow45.in.{user.split('-')[0]}", "x", body, pika.BasicProperties(
        content_type="application/json", message_id=uuid.uuid4().hex, user_id=user, reply_to=reply_to,
        correlation_id="c"))
    deadline = time.monotonic() + 15
    while wait and not replies and time.monotonic() < deadline:
        connection.process_data_events(time_limit=0.1)
    connection.close()
    assert replies or not wait, f"no reply to {body[:60]!r}"
    return replies[0] if replies else None


def drain(env, queue: str, expect: int = 0, timeout: float = 10.0, count: int | None = None) -> list[tuple[dict, bytes]]:
    """Every message in `queue` (or the first `count`), waiting up to `timeout` for at least `expect` of them."""
    channel = env.channel()
    found: list[tuple[dict, bytes]] = []
    deadline = time.monotonic() + timeout
    try:
        while count is None or len(found) < count:
            method, props, body = channel.basic_get(queue, auto_ack=True)
            if method is not None:
                found.append((props.headers or {}, body))
            elif len(found) >= expect or time.monotonic() > deadline:
                break
            else:
                time.sleep(0.05)
    finally:
        if channel.connection.is_open:
            channel.connection.close()
    return found


def test_hostile_messages_fail_only_themselves(bridge_env, tmp_path):
    (tmp_path / "rival.yaml").write_text(RIVAL_CONFIG)
    store.deploy(load_config(EXAMPLES), actor="ops")
    store.deploy(load_config(tmp_path), actor="ops")
    store.trigger("rival", "nightly", actor="ops")
    wait_offer(bridge_env, "rival", "load_blob")  # team rival's offer queue exists, and is now empty
    run = store.trigger("reports", "monthly_report", actor="ops", params={"month": "2026-10"})
    offer = wait_offer(bridge_env, "reports", "extract_sales")
    attempt = {"instance": offer["instance"], "token": offer["token"]}
    call(bridge_env.url("reports-worker"), "reports", {"type": "claim", **attempt, "worker": "w"})
    submit = '{"type": "submit", "instance": %d, "token": "%s", "output": %s}'
    progress = '{"type": "progress", "instance": %d, "token": "%s", "percent": %s}'
    cases = [  # body, code, words of the error
        (submit % (*attempt.values(), '{"uri": "s3://x", "rows": ' + "9" * 5000 + "}"), "invalid_message",
         "a number of 5000 characters"),
        (submit % (*attempt.values(), "[" * 10_000 + "]" * 10_000), "invalid_message", "nests 10001 levels deep"),
        (progress % (*attempt.values(), "NaN"), "invalid_message", "NaN is not a JSON number"),
        (progress % (*attempt.values(), "1e400"), "invalid_message", "1e400 overflows a double"),
        (progress % (*attempt.values(), "-Infinity"), "invalid_message", "-Infinity is not a JSON number"),
        (json.dumps({"type": "claim", "instance": 10**30, "token": "t", "worker": "w"}), "not_found",
         f"task instance {10**30} not found"),
        (json.dumps({"type": "claim", "instance": str(offer["instance"]), "token": offer["token"], "worker": "w"}),
         "invalid_message", "instance: Input should be a valid integer"),
        (json.dumps({"type": "fail", **attempt, "error": "x", "retryable": 1}), "invalid_message",
         "retryable: Input should be a valid boolean"),
        (submit % (*attempt.values(), '{"uri": %s, "rows": NaN}' % json.dumps(PEM)), "invalid_message",
         "NaN is not a JSON number"),
        (submit % (*attempt.values(), json.dumps({"uri": "s3://x", "rows": 1, "note": BEARER})), "invalid_output",
         "bearer token"),
    ]
    for body, code, words in cases:
        reply = send(bridge_env, "reports-worker", body.encode())
        assert (reply["ok"], reply["code"]) == (False, code) and words in reply["error"], (body[:80], reply)

    # A reply address into another team's queue is refused, and nothing is published there.
    status = json.dumps({"type": "status", "run": run}).encode()
    assert send(bridge_env, "reports-ops", status, reply_to="flow45.tasks.rival.load_blob", wait=False) is None
    dead = drain(bridge_env, "flow45.dead.reports", expect=len(cases) + 1)
    assert [h["x-flow45-code"] for h, _ in dead] == [code for _, code, _ in cases] + ["invalid_reply_to"]
    assert "direct reply-to" in dead[-1][0]["x-flow45-error"]
    assert drain(bridge_env, "flow45.tasks.rival.load_blob", timeout=0) == [], "a reply reached team rival's queue"
    assert drain(bridge_env, "flow45.dead.rival", timeout=0) == [] and drain(bridge_env, "flow45.dead", timeout=0) == []
    for headers, body in dead:
        assert not any(secret in body or secret in json.dumps(headers).encode() for secret in SECRETS), body[:200]
    assert dead[-2][0]["x-flow45-redacted"] >= 1 and dead[-3][0]["x-flow45-redacted"] >= 1

    # ... and the bridge still serves a normal run.
    assert bridge_env.thread.is_alive()
    done = call(bridge_env.url("reports-worker"), "reports",
                {"type": "submit", **attempt, "output": {"uri": "s3://sales.parquet", "rows": 10}})
    assert done["state"] == "succeeded"
    assert wait_offer(bridge_env, "reports", "render_pdf")["inputs"] == {"sales": {"uri": "s3://sales.parquet", "rows": 10}}


def get_as(env, user: str, queue: str) -> bytes | None:
    """One message from `queue` as `user`; raises ChannelClosedByBroker if the user may not read it."""
    channel = env.channel(user)
    try:
        method, _props, body = channel.basic_get(queue, auto_ack=True)
        return body if method is not None else None
    finally:
        if channel.connection.is_open:
            channel.connection.close()


def test_only_the_teams_operators_read_its_dead_letters(bridge_env):
    assert send(bridge_env, "reports-worker", b"{not json")["code"] == "invalid_message"
    deadline = time.monotonic() + 10
    while (body := get_as(bridge_env, "reports-ops", "flow45.dead.reports")) is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert body == b"{not json"
    for user in ("reports-worker", "rival-worker"):
        with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
            get_as(bridge_env, user, "flow45.dead.reports")


def test_a_message_the_inbox_gives_up_on_is_filed_in_its_teams_queue_redacted(bridge_env):
    """The inbox dead-letters a message after 5 failed deliveries (the bridge died holding it each
    time); the bridge files that copy by team, redacted, instead of leaving it to a shared queue."""
    bridge_env.bridge.stop()
    bridge_env.thread.join(timeout=10)
    body = json.dumps({"type": "fail", "instance": 1, "token": "t", "error": f"could not log in: {PEM}"}).encode()
    assert send(bridge_env, "reports-worker", body, wait=False) is None
    channel = bridge_env.channel()
    for _ in range(30):  # a bridge that takes it and dies, again and again
        method, _props, _body = channel.basic_get(names.inbox_queue("reports"))
        if method is None:
            break
        channel.basic_nack(method.delivery_tag, requeue=True)
    channel.connection.close()
    assert method is None, "the inbox never gave up on the message"

    bridge = Bridge(bridge_env.settings, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        [(headers, copy)] = drain(bridge_env, "flow45.dead.reports", expect=1)
    finally:
        bridge.stop()
        thread.join(timeout=10)
    assert headers["x-flow45-code"] == "delivery_limit" and "may or may not have taken effect" in headers["x-flow45-error"]
    assert headers["x-flow45-exchange"] == "flow45.in.reports" and headers["x-flow45-user"] == "reports-worker"
    assert not any(secret in copy for secret in SECRETS) and json.loads(copy)["error"] == "[redacted]"
    assert drain(bridge_env, "flow45.dead", timeout=0) == [] and drain(bridge_env, "flow45.quarantine", timeout=0) == []
