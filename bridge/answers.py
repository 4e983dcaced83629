"""What the bridge publishes for one delivery's outcome: the reply, and for a refusal the copy in
the sender's team's dead-letter queue. Pure functions, so every outcome can be checked without a broker."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pika

from bridge.batch import Outcome
from bridge.inbound import MAX_BODY, Delivery, Refusal, is_direct_reply_to, team_of_user
from flow45 import names, wire
from flow45.redact import redact_body, redact_text
from flow45.settings import Settings, current_settings

log = logging.getLogger("flow45.bridge")

JSON = "application/json"
MAX_ERROR = 4000  # characters of a refusal's message in a reply; headers keep 1000
# A refused body over the inbox's MAX_BODY keeps this much in its dead-letter copy: enough to see what
# it was, and a sender of huge bodies fills neither the broker's disk nor the bridge's time with copies.
KEPT_OF_OVERSIZE = 64 * 1024


@dataclass(frozen=True)
class Publish:
    exchange: str
    routing_key: str
    body: bytes
    properties: pika.BasicProperties


@dataclass(frozen=True)
class Answer:
    reply: Publish | None  # None: no reply_to, one that is not direct reply-to, or published by its committer
    dead_letter: Publish | None  # the delivery is acked once this copy is confirmed; None: ack it now


def _text(value: object, limit: int) -> str:
    """A header-safe string: bytes decoded, lone surrogates replaced (pika encodes headers as UTF-8)."""
    if isinstance(value, bytes):
        value = value.decode("utf-8", errors="replace")
    text = str(value if value is not None else "")
    return text.encode("utf-8", errors="replace").decode("utf-8")[:limit]


def _clean(value: object, limit: int) -> tuple[str, int]:
    return redact_text(_text(value, limit))


def reply(delivery: Delivery, answer: dict) -> Publish | None:
    return reply_with(delivery, encode_answer(answer, delivery.message_id))


def encode_answer(answer: dict, message_id: object) -> bytes:
    """An answer's body: once for every delivery it answers. One over max_message_bytes becomes an
    error: the broker would close the bridge's channel on it, and the bridge would reconnect for all."""
    if answer.get("error"):
        answer = {**answer, "error": _text(answer["error"], MAX_ERROR)}
    try:
        body = wire.dumps(answer).encode()
    except wire.NotJSON as exc:  # a bug, not the sender's fault: answer without the result
        log.error("bridge: the reply to %r is not JSON: %s", message_id, exc)
        return wire.dumps({"ok": False, "code": "internal", "error": f"the reply could not be written: {exc}"}).encode()
    cap = current_settings().max_message_bytes
    if len(body) > cap:
        why = f"the answer is {len(body)} bytes, over max_message_bytes ({cap}): what it carries is too large to send"
        log.error("bridge: the reply to %r: %s", message_id, why)
        return wire.dumps({"ok": False, "code": "internal", "error": why}).encode()
    return body


def reply_with(delivery: Delivery, body: bytes) -> Publish | None:
    """The reply carrying `body`, or None when the delivery asked for no direct reply."""
    if not delivery.reply_to or not is_direct_reply_to(delivery.reply_to):
        return None
    properties = pika.BasicProperties(content_type=JSON, correlation_id=delivery.correlation_id)
    return Publish("", delivery.reply_to, body, properties)


def dead_letter_queue(settings: Settings, user_id: object, exchange: str | None = None) -> str:
    """The sender's team's dead-letter queue: the team of its user, else the team whose exchange it
    came through (the broker lets only that team's users publish there), so that one team's messages
    without a `user_id` do not fill the administrators' queue; that one when neither names a team."""
    found = team_of_user(settings, user_id)
    if found:
        return names.dead_queue(found[0])
    team = names.team_of_exchange(exchange)
    return names.dead_queue(team) if team in settings.teams else names.DEAD_QUEUE


def dead_letter(settings: Settings, delivery: Delivery, refusal: Refusal) -> Publish:
    """A copy of the refused message, secret-looking values redacted (in the body, the reason and the
    properties kept), with the reason in headers; a body over MAX_BODY cut to its first
    KEPT_OF_OVERSIZE bytes. Published to the queue by name (default exchange)."""
    headers: dict[str, object] = {}
    body = delivery.body
    if len(body) > MAX_BODY:
        headers["x-flow45-truncated"] = len(body)  # the size sent
        body = body[:KEPT_OF_OVERSIZE]
    body, redacted = redact_body(body)
    for name, value, limit in (
        ("x-flow45-code", refusal.code, 100), ("x-flow45-error", refusal.message, 1000),
        ("x-flow45-user", delivery.user_id, 255), ("x-flow45-exchange", delivery.exchange, 255),
        ("x-flow45-reply-to", delivery.reply_to, 255),
    ):
        headers[name], count = _clean(value, limit)
        redacted += count
    kept = {}
    for name in ("message_id", "correlation_id"):
        value = getattr(delivery, name)
        text, count = _clean(value, 255)
        kept[name] = None if value is None else value if not count else text
        redacted += count
    headers["x-flow45-redacted"] = redacted
    properties = pika.BasicProperties(content_type=JSON, delivery_mode=2, headers=headers, **kept)
    return Publish("", dead_letter_queue(settings, delivery.user_id, delivery.exchange), body, properties)


def _header(headers: dict, name: str) -> str | None:
    value = headers.get(name)
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else value if isinstance(value, str) else None


def quarantined(settings: Settings, delivery: Delivery, headers: dict | None) -> Publish:
    """The dead-letter copy of a message the inbox gave up on (RabbitMQ dead-lettered it after the
    delivery limit, e.g. because the bridge stopped while holding it, every time)."""
    headers = headers if isinstance(headers, dict) else {}
    reason = _header(headers, "x-first-death-reason") or "delivery_limit"
    exchange = _header(headers, "x-first-death-exchange") or delivery.exchange
    refusal = Refusal(
        "delivery_limit",
        f"the inbox gave up on this message ({reason}): the bridge did not finish it in "
        f"{names.INBOX_DELIVERY_LIMIT} deliveries. It may or may not have taken effect: resend it with the "
        "same message_id to find out (a message that did is answered as a duplicate).",
    )
    original = Delivery(delivery.tag, exchange, delivery.user_id, delivery.message_id, delivery.reply_to,
                        delivery.correlation_id, delivery.body, delivery.content_type)
    return dead_letter(settings, original, refusal)


def answer(settings: Settings, delivery: Delivery, outcome: Outcome) -> Answer:
    """The reply (unless its committer published it: `outcome.replied`) and the dead-letter copy (for
    a refusal that is not routine) of one delivery."""
    refusal = outcome.refusal
    answered = None if outcome.replied else reply_to(delivery, outcome)
    # A routine refusal (a claim that lost the race for an offer) is normal traffic: nothing to inspect.
    return Answer(answered, None if refusal is None or refusal.routine else dead_letter(settings, delivery, refusal))


def reply_to(delivery: Delivery, outcome: Outcome) -> Publish | None:
    """The reply of one delivery's outcome, or None when it asked for no direct reply."""
    refusal = outcome.refusal
    if refusal is None:
        return reply(delivery, {"ok": True, "result": outcome.result})
    return reply(delivery, {"ok": False, "code": refusal.code, "error": refusal.message})
