"""A Flow45 worker in plain pika, without the SDK: the whole wire protocol in one file.

    python examples/plain_pika_worker.py --url amqp://reports-worker:PASS@localhost:5672/flow45 \
        --team reports --function render_pdf

It consumes offers from flow45.tasks.TEAM.FUNCTION, claims each with an RPC on flow45.in.TEAM,
acks the offer, reports progress while it works (progress renews the lease), and submits the
output, or fails. See docs/protocol.md for every field and answer. Single-threaded on purpose:
one task at a time, one connection. A worker in any other language follows the same steps.
"""

from __future__ import annotations

import argparse
import json
import logging
import signal
import socket
import time
import uuid
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions

REPLY_TO = "amq.rabbitmq.reply-to"  # RabbitMQ direct reply-to: no reply queue to declare
log = logging.getLogger("plain-worker")


class Unanswered(Exception):
    """No reply in time: the message may or may not have taken effect."""


class Flow45:
    """The RPC half: publish a worker message to flow45.in.TEAM and wait for its Reply."""

    def __init__(self, connection: pika.BlockingConnection, channel, team: str, user: str):
        self.connection, self.channel = connection, channel
        self.exchange = f"flow45.in.{team}"
        self.user = user
        self.replies: dict[str, dict] = {}
        # Consume direct reply-to (auto-ack, same channel) before publishing any request.
        channel.basic_consume(REPLY_TO, self._on_reply, auto_ack=True)

    def _on_reply(self, _channel, _method, properties, body: bytes) -> None:
        self.replies[properties.correlation_id] = json.loads(body)

    def call(self, message: dict, timeout: float = 10.0, attempts: int = 3) -> dict:
        """Send until answered. Every attempt carries the same message_id, so a resend after a lost
        reply is applied once and answered as the first time."""
        message_id = uuid.uuid4().hex
        for _ in range(attempts):
            correlation_id = uuid.uuid4().hex
            self.channel.basic_publish(
                exchange=self.exchange,
                routing_key=message["type"],
                body=json.dumps(message).encode(),
                properties=pika.BasicProperties(
                    content_type="application/json",
                    delivery_mode=2,
                    message_id=message_id,  # required: the idempotency key
                    user_id=self.user,  # required: the broker checks it is this connection's user
                    reply_to=REPLY_TO,
                    correlation_id=correlation_id,
                ),
            )
            deadline = time.monotonic() + timeout
            while correlation_id not in self.replies and time.monotonic() < deadline:
                self.connection.process_data_events(time_limit=0.1)
            if correlation_id in self.replies:
                return self.replies.pop(correlation_id)
            log.warning("no reply to %s within %.0fs; sending it again", message["type"], timeout)
        raise Unanswered(f"{message['type']} unanswered after {attempts} attempts")


STEP_SECONDS = 0.5


def work(function: str, inputs: dict, params: dict, progress) -> dict:
    """The task itself. Returns the function's output type as JSON (for render_pdf: a Document)."""
    steps = 5
    for step in range(1, steps + 1):
        time.sleep(STEP_SECONDS)  # pretend to render a page
        progress(100 * step / steps, f"page {step} of {steps}")  # also renews the lease
    if function == "render_pdf":
        sales = inputs.get("sales") or {}
        uri = (sales.get("uri") or "file:///tmp/report.parquet").rsplit(".", 1)[0] + ".pdf"
        return {"uri": uri, "pages": steps}
    raise ValueError(f"this example only knows how to do render_pdf, not {function}")


def handle(flow45: Flow45, channel, method, body: bytes, worker: str) -> None:
    """One offer: claim it, ack it, do the work, report."""
    offer = json.loads(body)
    attempt = {"instance": offer["instance"], "token": offer["token"]}
    try:
        reply = flow45.call({"type": "claim", **attempt, "worker": worker})
    except Unanswered:
        channel.basic_nack(method.delivery_tag, requeue=True)  # someone (maybe us) tries again
        return
    channel.basic_ack(method.delivery_tag)  # granted or refused, this offer is dealt with
    if not reply["ok"]:
        # `stale`: someone else has it, or it was retried or undone. Drop it; never retry a stale claim.
        log.info("claim of instance %s refused: %s: %s", offer["instance"], reply["code"], reply["error"])
        return
    grant = reply["result"]  # instance, state, attempt, token, lease_expires_at, inputs, params, duplicate
    log.info("claimed instance %s attempt %s; lease until %s", grant["instance"], grant["attempt"], grant["lease_expires_at"])

    def progress(percent: float, message: str) -> None:
        answer = flow45.call({"type": "progress", **attempt, "percent": percent, "message": message})
        if not answer["ok"] and answer["code"] == "stale":
            raise LookupError("the attempt is no longer current")  # stop working: nothing more will count

    try:
        inputs = grant["inputs"] if grant.get("inputs") is not None else offer["inputs"]  # the same for this attempt
        params = grant["params"] if grant.get("params") is not None else offer["params"]
        output = work(offer["function"], inputs, params, progress)
        outcome = {"type": "submit", **attempt, "output": output}
    except LookupError as exc:
        log.warning("instance %s: %s; dropping it", offer["instance"], exc)
        return
    except Exception as exc:  # noqa: BLE001 - reported to Flow45, which retries if the task has retries left
        outcome = {"type": "fail", **attempt, "error": f"{type(exc).__name__}: {exc}"[:2000], "retryable": True}
    try:
        reply = flow45.call(outcome)
    except Unanswered:
        log.error("%s of instance %s unanswered; the lease will expire and the task be offered again",
                  outcome["type"], offer["instance"])
        return
    if reply["ok"]:
        log.info("%s of instance %s: now %s", outcome["type"], offer["instance"], reply["result"]["state"])
    else:
        log.error("%s of instance %s refused: %s: %s", outcome["type"], offer["instance"], reply["code"], reply["error"])


def wait_for_queue(connection: pika.BlockingConnection, queue: str, stopping: list, every: float = 1.0) -> bool:
    """A function's queue appears a moment after its workflow is deployed (the bridge declares it).
    Consuming a queue that does not exist fails with 404 and closes the channel, so probe with a
    passive declare on a throwaway channel until it is there. False if asked to stop meanwhile."""
    while not stopping:
        probe = connection.channel()
        try:
            probe.queue_declare(queue, passive=True)  # creates nothing, needs no permission
            probe.close()
            return True
        except pika.exceptions.ChannelClosedByBroker as exc:  # closes the probe only
            if exc.reply_code != 404:
                raise
            log.warning("queue %s does not exist yet (is the workflow deployed and the bridge running?)", queue)
        connection.sleep(every)
    return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="amqp://USER:PASS@HOST:PORT/VHOST (a worker user of the team)")
    parser.add_argument("--team", required=True)
    parser.add_argument("--function", required=True)
    parser.add_argument("--worker", default=f"plain-{socket.gethostname()}", help="name shown in Flow45")
    parser.add_argument("--step-seconds", type=float, default=STEP_SECONDS, help="how long each of 5 steps takes")
    args = parser.parse_args()
    globals()["STEP_SECONDS"] = args.step_seconds
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    logging.getLogger("pika").setLevel(logging.WARNING)  # its connection steps are not the worker's news

    user = unquote(urlsplit(args.url).username or "guest")
    connection = pika.BlockingConnection(pika.URLParameters(args.url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1)
    flow45 = Flow45(connection, channel, args.team, user)

    offers: list[tuple[object, bytes]] = []  # handled outside the callback, so RPC replies can arrive
    queue = f"flow45.tasks.{args.team}.{args.function}"
    stopping = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: stopping.append(True))
    if not wait_for_queue(connection, queue, stopping):
        connection.close()
        return
    tag = channel.basic_consume(queue, lambda _ch, method, _props, body: offers.append((method, body)))
    log.info("waiting for offers on %s as %s", queue, user)
    while not stopping:
        connection.process_data_events(time_limit=1.0)
        while offers and not stopping:
            method, body = offers.pop(0)
            handle(flow45, channel, method, body, args.worker)
    channel.basic_cancel(tag)  # offers not yet handled go back to the queue
    for method, _ in offers:
        channel.basic_nack(method.delivery_tag, requeue=True)
    connection.close()


if __name__ == "__main__":
    main()
