"""What workers do to an attempt, one message at a time: claim, progress, submit, fail, skip. Each is
a batch of one (`flow45.store.batch`), so the embedded default, `LocalTransport`, the CLI and the
bridge share one semantics. Every write is fenced by the token."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flow45 import messages as m
from flow45 import states as S
from flow45.checkpoints import check_checkpoint
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import StaleToken
from flow45.logs import check_logs
from flow45.models import TaskInstance
from flow45.settings import current_settings
from flow45.store.batch import Item, apply_worker_batch
from flow45.store.sweep import hand_on
from flow45.views import WorkerReply

WORKER_MESSAGES = (m.Claim, m.Progress, m.Submit, m.Fail, m.Skip, m.Park)
# The verbs below are called in-process, not from the wire: their messages skip its validation, and
# the rules cut an over-long error or message and clamp a percentage instead of refusing them.


def apply_message(
    message, *, team: str | None, message_id: str | None = None, now: dt.datetime | None = None
) -> WorkerReply:
    """One worker message (a `flow45.messages` Claim, Progress, Submit, Fail or Skip) by itself,
    in its own transaction; a refusal is raised."""
    if not isinstance(message, WORKER_MESSAGES):
        raise TypeError(f"not a worker message: {message!r}")
    item = Item(team, message_id, message)
    with atomic():
        apply_worker_batch([item], to_utc(now))
    hand_on(now)  # slots of a task's max_running it freed go to the instances queued for them
    if item.error is not None:
        raise item.error
    return item.result


def claim(
    instance_id: int, token: str, worker: str, *, now: dt.datetime | None = None, team: str | None = None,
    message_id: str | None = None,
) -> WorkerReply:
    """Take an offered attempt: exactly one claim of an offer wins; the lease starts now."""
    message = m.Claim.model_construct(type="claim", instance=instance_id, token=token, worker=worker)
    return apply_message(message, team=team, message_id=message_id, now=now)


def claim_next(
    team: str, functions: list[str], worker: str, *, now: dt.datetime | None = None, human: bool = False
) -> WorkerReply | None:
    """Claim the most urgent available instance of these functions, if any (polling workers)."""
    for _ in range(20):
        candidate = (
            TaskInstance.select(TaskInstance.id, TaskInstance.token)
            .where(
                (TaskInstance.team == team) & (TaskInstance.function.in_(functions))
                & (TaskInstance.state == S.AVAILABLE) & (TaskInstance.human == human)
            )
            .order_by(TaskInstance.priority.desc(), TaskInstance.id)
            .first()
        )
        if candidate is None:
            return None
        try:
            return claim(candidate.id, candidate.token, worker, now=now, team=team)
        except StaleToken:
            continue  # another worker took it first
    return None


def _logs(instance_id: int, log_url: str | None, log_tail: str | None) -> dict:
    """The log fields, checked here as the wire's parser checks them (these messages skip it)."""
    check_logs(log_url, log_tail, f"task instance {instance_id}", current_settings().output_max_bytes)
    return {"log_url": log_url, "log_tail": log_tail}


def progress(
    instance_id: int, token: str, percent: float | None = None, message: str | None = None, *,
    now: dt.datetime | None = None, team: str | None = None, message_id: str | None = None,
    log_url: str | None = None, log_tail: str | None = None, checkpoint: Any = None,
) -> WorkerReply:
    """Record progress and renew the lease; a log link or tail, and a checkpoint, are kept with the attempt."""
    check_checkpoint(checkpoint, f"task instance {instance_id}", current_settings().output_max_bytes)
    sent = m.Progress.model_construct(type="progress", instance=instance_id, token=token, percent=percent, message=message,
                                      checkpoint=checkpoint, **_logs(instance_id, log_url, log_tail))
    return apply_message(sent, team=team, message_id=message_id, now=now)


def submit(
    instance_id: int, token: str, output: Any, *, now: dt.datetime | None = None, team: str | None = None,
    message_id: str | None = None, log_url: str | None = None, log_tail: str | None = None,
) -> WorkerReply:
    """Finish the attempt with its output, validated against the task's output type."""
    message = m.Submit.model_construct(type="submit", instance=instance_id, token=token, output=output,
                                       **_logs(instance_id, log_url, log_tail))
    return apply_message(message, team=team, message_id=message_id, now=now)


def fail(
    instance_id: int, token: str, error: str, *, retryable: bool = True, now: dt.datetime | None = None,
    team: str | None = None, message_id: str | None = None, log_url: str | None = None, log_tail: str | None = None,
) -> WorkerReply:
    """Finish the attempt as failed; retried after its delay while retries are left."""
    message = m.Fail.model_construct(type="fail", instance=instance_id, token=token, error=str(error), retryable=retryable,
                                     **_logs(instance_id, log_url, log_tail))
    return apply_message(message, team=team, message_id=message_id, now=now)


def skip(
    instance_id: int, token: str, reason: str, *, now: dt.datetime | None = None, team: str | None = None,
    message_id: str | None = None,
) -> WorkerReply:
    """The worker decides there is nothing to do: downstream tasks get null for this input."""
    message = m.Skip.model_construct(type="skip", instance=instance_id, token=token, reason=reason)
    return apply_message(message, team=team, message_id=message_id, now=now)


def park(
    instance_id: int, token: str, deadline_seconds: float | None = None, *, now: dt.datetime | None = None,
    team: str | None = None, message_id: str | None = None,
) -> WorkerReply:
    """Park the running attempt: its reply carries the callback key that completes it later."""
    message = m.Park.model_construct(type="park", instance=instance_id, token=token, deadline_seconds=deadline_seconds)
    return apply_message(message, team=team, message_id=message_id, now=now)
