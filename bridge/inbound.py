"""An inbound delivery, checked before it touches the store: bytes, JSON, schema, sender, role."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge.names import team_of_inbound_exchange
from flow45.messages import OPERATOR_MESSAGES, WORKER_MESSAGES
from flow45.settings import Settings

MAX_BODY = 256 * 1024
MAX_MESSAGE_ID = 128


class Refusal(Exception):
    """A message Flow45 will not apply: answered with `code` and the message, then dead-lettered."""

    def __init__(self, code: str, message: str, routine: bool = False):
        super().__init__(message)
        self.code = code
        self.message = message
        self.routine = routine  # answered, but not worth a dead letter


@dataclass(frozen=True)
class Inbound:
    team: str
    user: str
    role: str  # worker | operator
    message_id: str
    message: BaseModel


def identify(settings: Settings, user_id: str | None, exchange: str) -> tuple[str, str]:
    """(team, role) of the broker-validated user; refuses unknown users and other teams' exchanges."""
    if not user_id:
        raise Refusal("unauthorized", "the message has no user_id property: set it to your broker user name")
    for team, team_settings in settings.teams.items():
        role = team_settings.users.get(user_id)
        if role is None:
            continue
        published_to = team_of_inbound_exchange(exchange)
        if published_to != team:
            raise Refusal("unauthorized", f"user {user_id} belongs to team {team}; publish to flow45.in.{team}")
        return team, role
    raise Refusal("unauthorized", f"user {user_id} is not a worker or operator of any team in the settings")


def _errors(exc: ValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        where = ".".join(str(p) for p in error["loc"]) or "body"
        parts.append(f"{where}: {'unknown field' if error['type'] == 'extra_forbidden' else error['msg']}")
    return "; ".join(parts)


def parse(settings: Settings, body: bytes, user_id: str | None, exchange: str, message_id: str | None) -> Inbound:
    team, role = identify(settings, user_id, exchange)
    if not message_id:
        raise Refusal("invalid_message", "the message has no message_id property: it is the idempotency key")
    if len(message_id) > MAX_MESSAGE_ID:
        raise Refusal("invalid_message", f"message_id is {len(message_id)} characters, over {MAX_MESSAGE_ID}")
    if len(body) > MAX_BODY:
        raise Refusal("invalid_message", f"the body is {len(body)} bytes, over {MAX_BODY}")
    try:
        data: Any = json.loads(body.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise Refusal("invalid_message", f"the body is not UTF-8 (byte {exc.start})") from exc
    except json.JSONDecodeError as exc:
        raise Refusal("invalid_message", f"the body is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}") from exc
    if not isinstance(data, dict) or not isinstance(data.get("type"), str):
        raise Refusal("invalid_message", "the body must be a JSON object with a string field `type`")
    kind = data["type"]
    worker_types, operator_types = {"claim", "progress", "submit", "fail", "skip"}, {
        "deploy", "validate", "trigger", "undo", "skip", "retry", "hold", "release", "cancel", "status",
    }
    allowed = worker_types if role == "worker" else operator_types
    if kind not in allowed:
        other = "an operator" if kind in operator_types else "a worker" if kind in worker_types else None
        why = f"`{kind}` is {other} message" if other else f"unknown message type `{kind}`"
        raise Refusal("unauthorized" if other else "invalid_message", f"{why}; user {user_id} is a {role} of team {team}")
    adapter = WORKER_MESSAGES if role == "worker" else OPERATOR_MESSAGES
    try:
        message = adapter.validate_python(data)
    except ValidationError as exc:
        raise Refusal("invalid_message", f"{kind}: {_errors(exc)}") from exc
    return Inbound(team=team, user=user_id, role=role, message_id=message_id, message=message)
