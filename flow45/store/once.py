"""At most once: a message id is recorded in the same transaction as the change it makes."""

from __future__ import annotations

import datetime as dt
from typing import Callable

import peewee

from flow45.db import atomic
from flow45.errors import Flow45Error
from flow45.models import ProcessedMessage
from flow45.views import WorkerReply


def apply_once(
    message_id: str | None, team: str | None, kind: str, at: dt.datetime, change: Callable[[], WorkerReply]
) -> WorkerReply:
    """Run `change` in one transaction unless `message_id` was already applied; then answer as before."""
    if message_id is None:
        with atomic():
            return change()
    key = f"{team or '*'}/{message_id}"
    try:
        with atomic():
            seen = ProcessedMessage.get_or_none(ProcessedMessage.message_id == key)
            if seen is not None:
                return WorkerReply.from_json({**seen.reply, "duplicate": True})
            reply = change()
            ProcessedMessage.create(message_id=key, team=team or reply_team(reply), kind=kind, processed_at=at, reply=reply.to_json())
            return reply
    except peewee.IntegrityError:
        # The same message applied concurrently by another consumer: that one won.
        seen = ProcessedMessage.get(ProcessedMessage.message_id == key)
        return WorkerReply.from_json({**seen.reply, "duplicate": True})
    except Flow45Error:
        # Refused (typically stale) because a concurrent copy of this message committed while this one
        # waited for the run's lock: that one won, so answer as before. Otherwise the refusal stands.
        seen = ProcessedMessage.get_or_none(ProcessedMessage.message_id == key)
        if seen is None:
            raise
        return WorkerReply.from_json({**seen.reply, "duplicate": True})


def reply_team(reply: WorkerReply) -> str:
    from flow45.models import TaskInstance

    return TaskInstance.get_by_id(reply.instance).team
