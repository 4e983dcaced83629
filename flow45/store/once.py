"""At most once: a message id is recorded in the same transaction as the change it makes."""

from __future__ import annotations

import datetime as dt
from typing import Any, Callable, TypeVar

import peewee

from flow45.db import atomic
from flow45.errors import Flow45Error, MessageIdReused
from flow45.models import ProcessedMessage
from flow45.views import WorkerReply

T = TypeVar("T")


def processed_key(team: str, message_id: str) -> str:
    """The row key of a processed message: ids are the sender's, so each team has its own."""
    return f"{team}/{message_id}"


def remember(
    message_id: str, team: str, kind: str, at: dt.datetime, change: Callable[[], T],
    encode: Callable[[T], Any], decode: Callable[[Any], T], instance: int | None = None,
) -> T:
    """Run `change` in one transaction unless `message_id` was already applied for this team;
    then answer as before, from the recorded reply. `instance`, the one the message is about, lets
    `flow45 prune` remove the record with its run."""
    key = processed_key(team, message_id)

    def earlier() -> T | None:
        seen = ProcessedMessage.get_or_none(ProcessedMessage.message_id == key)
        if seen is None:
            return None
        if (seen.kind, seen.instance) != (kind, instance):  # not a copy of this message: its answer is not this one's
            about = f" about task instance {seen.instance}" if seen.instance is not None else ""
            raise reused(message_id, f"a {seen.kind} message{about}")
        return decode(seen.reply)

    try:
        with atomic():
            if (found := earlier()) is not None:
                return found
            result = change()
            ProcessedMessage.create(message_id=key, team=team, kind=kind, processed_at=at, reply=encode(result),
                                    instance=instance)
            return result
    except peewee.IntegrityError:
        # The same message applied concurrently by another consumer: that one won. Else the change
        # itself broke a constraint, which no earlier reply answers.
        if (found := earlier()) is None:
            raise
        return found
    except Flow45Error:
        # Refused (typically stale) because a concurrent copy of this message committed while this one
        # waited for the run's lock: that one won, so answer as before. Otherwise the refusal stands.
        if (found := earlier()) is None:
            raise
        return found


def reused(message_id: str, other: str) -> MessageIdReused:
    return MessageIdReused(f"message_id {message_id!r} was given to {other} already; nothing was applied: "
                           "give each message an id of its own")


def apply_once(
    message_id: str | None, team: str | None, kind: str, at: dt.datetime, change: Callable[[], WorkerReply]
) -> WorkerReply:
    """A worker's change, once per message id (no id: simply once, in one transaction)."""
    if message_id is None:
        with atomic():
            return change()
    return remember(
        message_id, team or "*", kind, at, change,
        encode=lambda reply: reply.to_json(),
        decode=lambda data: WorkerReply.from_json({**data, "duplicate": True}),
    )
