"""What the tests of the AMQP transport need of the broker side: the topology of flow45/names.py,
offers published straight to their queue, and a stand-in for the bridge that answers worker RPCs."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

import pika

from flow45 import names
from flow45.messages import Reply, worker_messages


def declare_topology(channel, team: str, function: str) -> None:
    """Offer and undo queues of one function, as the bridge declares them."""
    channel.exchange_declare(names.TASKS_EXCHANGE, "direct", durable=True)
    channel.queue_declare(names.offer_queue(team, function), durable=True, arguments={"x-max-priority": names.MAX_PRIORITY})
    channel.queue_bind(names.offer_queue(team, function), names.TASKS_EXCHANGE, names.offer_key(team, function))
    channel.queue_declare(names.undo_queue(team, function), durable=True)
    channel.queue_bind(names.undo_queue(team, function), names.TASKS_EXCHANGE, names.undo_key(team, function))


def offer_body(team: str, function: str, instance: int = 1, **changes: Any) -> dict:
    body = {
        "instance": instance, "run": 7, "team": team, "workflow": "monthly_report", "version": 1, "task": "render",
        "function": function, "attempt": 1, "token": f"tok-{instance}", "inputs": {}, "params": {},
        "lease_seconds": 60.0, "human": False, "priority": 0,
    }
    return {**body, **changes}


def publish(channel, routing_key: str, body: dict, priority: int = 0) -> None:
    channel.basic_publish(
        names.TASKS_EXCHANGE, routing_key, json.dumps(body).encode(),
        pika.BasicProperties(content_type="application/json", delivery_mode=2, priority=priority),
    )


def queue_depth(url: str, queue: str) -> int:
    with pika.BlockingConnection(pika.URLParameters(url)) as conn:
        return conn.channel().queue_declare(queue, passive=True).method.message_count


@dataclass
class Received:
    routing_key: str
    properties: pika.BasicProperties
    body: dict
    message: Any  # the parsed WorkerMessage


def grant(message) -> Reply:
    """The bridge's answer to a message that takes effect."""
    result = {"instance": message.instance, "state": "running", "attempt": 1, "token": message.token,
              "lease_expires_at": None, "inputs": None, "params": None, "duplicate": False}
    if message.type == "claim":
        result["lease_expires_at"] = "2026-03-01T12:05:00Z"
    elif message.type in ("submit", "fail", "skip"):
        result = {"instance": message.instance, "state": "succeeded", "attempt": 1, "token": None,
                  "lease_expires_at": None, "inputs": None, "params": None, "duplicate": False}
    return Reply(ok=True, result=result)


class FakeBridge:
    """Consumes a test queue bound to flow45.in.TEAM (fanout) and answers like the bridge would:
    `answer(received)` returns the Reply, or None to leave the request unanswered."""

    def __init__(self, url: str, team: str, answer: Callable[[Received], Reply | None] = lambda r: grant(r.message)):
        self.url, self.team, self.answer = url, team, answer
        self.received: list[Received] = []
        self.errors: list[str] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._main, daemon=True)

    def __enter__(self) -> FakeBridge:
        self._thread.start()
        assert self._ready.wait(10), "the fake bridge did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(10)

    def of_type(self, kind: str) -> list[Received]:
        with self._lock:
            return [r for r in self.received if r.body.get("type") == kind]

    def wait_for(self, kind: str, count: int = 1, timeout: float = 10.0) -> list[Received]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = self.of_type(kind)
            if len(found) >= count:
                return found
            time.sleep(0.02)
        raise AssertionError(f"{count} {kind} message(s) expected, got {len(self.of_type(kind))}: {self.received}")

    def _main(self) -> None:
        with pika.BlockingConnection(pika.URLParameters(self.url)) as conn:
            channel = conn.channel()
            exchange = names.inbound_exchange(self.team)
            channel.exchange_declare(exchange, "fanout", durable=True)
            inbox = channel.queue_declare("", exclusive=True).method.queue
            channel.queue_bind(inbox, exchange)
            channel.basic_consume(inbox, self._on_message)
            self._ready.set()
            while not self._stop.is_set():
                conn.process_data_events(time_limit=0.05)

    def _on_message(self, channel, method, properties, body: bytes) -> None:
        data = json.loads(body)
        try:
            message = worker_messages().validate_python(data)
        except Exception as exc:  # noqa: BLE001 - recorded for the test to see
            self.errors.append(f"{data}: {exc}")
            message = None
        received = Received(method.routing_key, properties, data, message)
        with self._lock:
            self.received.append(received)
        reply = self.answer(received) if message is not None else Reply(ok=False, code="invalid_message", error="bad")
        if reply is not None and properties.reply_to:
            channel.basic_publish("", properties.reply_to, reply.model_dump_json().encode(),
                                  pika.BasicProperties(correlation_id=properties.correlation_id,
                                                       content_type="application/json"))
        channel.basic_ack(method.delivery_tag)
