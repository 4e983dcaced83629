"""An inbound delivery, checked before it touches the store: properties, bytes, JSON, schema, sender, role.

Everything here is untrusted. The body is parsed with limits (`flow45.strictjson`) and validated in
pydantic's strict mode; any problem is a `Refusal` naming it, never an exception of another kind.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from flow45.messages import (
    CALLBACK_TYPES, OPERATOR_TYPES, READ_TYPES, WORKER_TYPES, callback_messages, operator_messages, worker_messages,
)
from flow45.names import READ_EXCHANGE, inbound_exchange, read_exchange, team_of_inbound_exchange
from flow45.settings import Settings
from flow45.strictjson import JSONRefused, loads
from flow45.wire import INT64_MAX, INT64_MIN

MAX_BODY = 256 * 1024
MAX_MESSAGE_ID = 128
DIRECT_REPLY_TO = "amq.rabbitmq.reply-to"


class Refusal(Exception):
    """A message Flow45 will not apply: answered with `code` and the message, then dead-lettered."""

    def __init__(self, code: str, message: str, routine: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.routine = routine  # answered, but not worth a dead letter


@dataclass
class Delivery:
    """One message from the inbox, as the broker gave it (pika leaves a property that is not UTF-8 as bytes)."""

    tag: int
    exchange: str
    user_id: str | bytes | None
    message_id: str | bytes | None
    reply_to: str | bytes | None
    correlation_id: str | bytes | None
    body: bytes
    content_type: str | bytes | None = None


def delivery_from(method: Any, properties: Any, body: bytes) -> Delivery:
    """The Delivery of pika's `basic_consume` callback arguments (other properties, headers included,
    are not read)."""
    return Delivery(
        tag=method.delivery_tag, exchange=method.exchange, user_id=properties.user_id,
        message_id=properties.message_id, reply_to=properties.reply_to,
        correlation_id=properties.correlation_id, body=body, content_type=properties.content_type,
    )


@dataclass(frozen=True)
class Inbound:
    team: str
    user: str
    role: str  # worker | operator
    message_id: str
    message: BaseModel

    @property
    def is_callback(self) -> bool:
        """A callback key's holder (worker or operator) completing or failing a parked attempt."""
        return self.message.type in CALLBACK_TYPES


def _shown(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def is_direct_reply_to(reply_to: object) -> bool:
    """RabbitMQ's direct reply-to, as set by a requester or as the broker rewrote it for the bridge."""
    return isinstance(reply_to, str) and (reply_to == DIRECT_REPLY_TO or reply_to.startswith(DIRECT_REPLY_TO + "."))


def team_of_user(settings: Settings, user_id: object) -> tuple[str, str] | None:
    """(team, role) of a user named in the settings, or None."""
    for team, team_settings in settings.teams.items():
        role = team_settings.users.get(user_id) if isinstance(user_id, str) else None
        if role is not None:
            return team, role
    return None


def identify(settings: Settings, user_id: object, exchange: str) -> tuple[str, str]:
    """(team, role) of the broker-validated user; refuses unknown users and other teams' exchanges."""
    if not user_id:
        raise Refusal("unauthorized", "the message has no user_id property: set it to your broker user name")
    found = team_of_user(settings, user_id)
    if found is None:
        raise Refusal("unauthorized", f"user {_shown(user_id)} is not a worker or operator of any team in the settings")
    team, role = found
    if team_of_inbound_exchange(exchange) != team:
        raise Refusal("unauthorized", f"user {user_id} belongs to team {team}; publish to {inbound_exchange(team)}")
    return team, role


def _is_json(content_type: object) -> bool:
    return isinstance(content_type, str) and content_type.split(";")[0].strip().lower() == "application/json"


def _errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p)[:60] for p in error["loc"]) or "body"
        parts.append(f"{where}: {'unknown field' if error['type'] == 'extra_forbidden' else error['msg']}")
    return "; ".join(parts)


def _check_ids(team: str, message: BaseModel) -> None:
    """An id beyond 64 bits names nothing in the store: answered as any unknown id is."""
    for field, what in (("instance", "task instance"), ("run", "run")):
        value = getattr(message, field, None)
        if value is not None and not INT64_MIN <= value <= INT64_MAX:
            raise Refusal("not_found", f"{what} {value} not found for team {team}")


def json_object(delivery: Delivery) -> dict[str, Any]:
    """The delivery's body as a JSON object with a string `type`, parsed strictly and within limits."""
    body = delivery.body
    if delivery.content_type is not None and not _is_json(delivery.content_type):
        raise Refusal("invalid_message", f"content_type is {_shown(delivery.content_type)}: bodies are application/json")
    if len(body) > MAX_BODY:
        raise Refusal("invalid_message", f"the body is {len(body)} bytes, over {MAX_BODY}")
    try:
        data: Any = loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Refusal("invalid_message", f"the body is not UTF-8 (byte {exc.start})") from exc
    except JSONRefused as exc:
        raise Refusal("invalid_message", f"body: {exc.message}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise Refusal("invalid_message", "the body must be a JSON object with a string field `type`")
    return data


def parse(settings: Settings, delivery: Delivery) -> Inbound:
    if delivery.reply_to and not is_direct_reply_to(delivery.reply_to):
        raise Refusal(
            "invalid_reply_to",
            f"reply_to is {_shown(delivery.reply_to)}: replies go only to direct reply-to ({DIRECT_REPLY_TO}); "
            "nothing was answered or applied",
        )
    team, role = identify(settings, delivery.user_id, delivery.exchange)
    message_id = delivery.message_id
    if not message_id:
        raise Refusal("invalid_message", "the message has no message_id property: it is the idempotency key")
    if not isinstance(message_id, str):
        raise Refusal("invalid_message", f"the message_id property {_shown(message_id)} is not UTF-8")
    if len(message_id) > MAX_MESSAGE_ID:
        raise Refusal("invalid_message", f"message_id is {len(message_id)} characters, over {MAX_MESSAGE_ID}")
    data = json_object(delivery)
    kind = data["type"]
    allowed = (WORKER_TYPES if role == "worker" else OPERATOR_TYPES) | CALLBACK_TYPES
    if kind not in allowed and kind in READ_TYPES:  # a read sent to the inbox by mistake: say where reads go
        raise Refusal("invalid_message", f"`{kind}` is a read: publish it to the exchange {read_exchange(team)} "
                      f"(or the shared {READ_EXCHANGE}), not to {delivery.exchange}")
    if kind not in allowed:
        other = "an operator" if kind in OPERATOR_TYPES else "a worker" if kind in WORKER_TYPES else None
        why = f"`{kind}` is {other} message" if other else f"unknown message type {_shown(kind)}"
        raise Refusal("unauthorized" if other else "invalid_message", f"{why}; user {delivery.user_id} is a {role} of team {team}")
    adapter = (callback_messages() if kind in CALLBACK_TYPES else worker_messages() if role == "worker"
               else operator_messages())
    try:
        message = adapter.validate_python(data)
    except ValidationError as exc:
        raise Refusal("invalid_message", f"{kind}: {_errors(exc)}") from exc
    _check_ids(team, message)
    return Inbound(team=team, user=delivery.user_id, role=role, message_id=message_id, message=message)
