"""What workers do to an attempt: claim, progress, submit, fail, skip. Every write is fenced by the token."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flow45 import states as S
from flow45.clock import to_utc
from flow45.errors import StaleToken
from flow45.models import Attempt, Run, TaskInstance
from flow45.outputs import check_output
from flow45.settings import current_settings
from flow45.store.core import (
    describe, inputs_for, instances_of, lease_seconds, lock_instance, move_instance, offer, settle_run,
)
from flow45.store.once import apply_once
from flow45.store.specs import version_spec
from flow45.views import WorkerReply

MAX_MESSAGE = 2000


def _live(instance: TaskInstance, token: str) -> None:
    """Refuse unless `token` is the running attempt's."""
    if instance.state != S.RUNNING or instance.token != token:
        now_is = f"now {instance.state}, attempt {instance.attempt}"
        raise StaleToken(f"{describe(instance)}: token is not the current attempt's ({now_is}); nothing changed")


def _reply(instance: TaskInstance, **extra: Any) -> WorkerReply:
    return WorkerReply(instance=instance.id, state=instance.state, attempt=instance.attempt, **extra)


def claim(
    instance_id: int, token: str, worker: str, *, now: dt.datetime | None = None, team: str | None = None,
    message_id: str | None = None,
) -> WorkerReply:
    """Take an offered attempt: exactly one claim of an offer wins; the lease starts now."""
    at = to_utc(now)

    def change() -> WorkerReply:
        instance, run = lock_instance(instance_id, team)
        if instance.state != S.AVAILABLE or instance.token != token:
            held_by = f" by {instance.worker}" if instance.state == S.RUNNING and instance.token == token else ""
            raise StaleToken(
                f"{describe(instance)}: this offer is no longer open (instance is {instance.state}{held_by}, "
                f"attempt {instance.attempt}); nothing changed"
            )
        spec = version_spec(run.version_id)
        expires = at + dt.timedelta(seconds=lease_seconds(spec.task(instance.task)))
        move_instance(
            instance, S.RUNNING, kind="claim", actor=worker, at=at, detail={"attempt": instance.attempt},
            worker=worker, lease_expires_at=expires,
        )
        Attempt.create(
            instance=instance.id, number=instance.attempt, token=token, status="running", worker=worker, claimed_at=at
        )
        inputs = inputs_for(instance, instances_of(run), spec)
        return _reply(instance, token=token, lease_expires_at=expires, inputs=inputs, params=run.params)

    return apply_once(message_id, team, "claim", at, change)


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


def progress(
    instance_id: int, token: str, percent: float | None = None, message: str | None = None, *,
    now: dt.datetime | None = None, team: str | None = None, message_id: str | None = None,
) -> WorkerReply:
    """Record progress and renew the lease."""
    at = to_utc(now)

    def change() -> WorkerReply:
        instance, run = lock_instance(instance_id, team)
        _live(instance, token)
        task = version_spec(run.version_id).task(instance.task)
        instance.lease_expires_at = at + dt.timedelta(seconds=lease_seconds(task))
        if percent is not None:
            instance.progress_pct = max(0.0, min(100.0, float(percent)))
        if message is not None:
            instance.progress_message = message[:MAX_MESSAGE]
        instance.updated_at = at
        instance.save()
        return _reply(instance, token=token, lease_expires_at=instance.lease_expires_at)

    return apply_once(message_id, team, "progress", at, change)


def submit(
    instance_id: int, token: str, output: Any, *, now: dt.datetime | None = None, team: str | None = None,
    message_id: str | None = None,
) -> WorkerReply:
    """Finish the attempt with its output, validated against the task's output type."""
    at = to_utc(now)

    def change() -> WorkerReply:
        instance, run = lock_instance(instance_id, team)
        _live(instance, token)
        return finish_succeeded(instance, run, output, instance.worker or "worker", at)

    return apply_once(message_id, team, "submit", at, change)


def finish_succeeded(instance: TaskInstance, run: Run, output: Any, actor: str, at: dt.datetime) -> WorkerReply:
    spec = version_spec(run.version_id)
    task = spec.task(instance.task)
    clean = check_output(spec.types, task.output, output, current_settings().output_max_bytes, describe(instance))
    Attempt.update(status="succeeded", output=clean, finished_at=at).where(
        (Attempt.instance == instance.id) & (Attempt.token == instance.token) & (Attempt.status == "running")
    ).execute()
    move_instance(
        instance, S.SUCCEEDED, kind="submit", actor=actor, at=at, detail={"attempt": instance.attempt},
        token=None, lease_expires_at=None, progress_pct=100.0,
    )
    settle_run(run, instances_of(run), actor, at)
    return _reply(instance)


def fail(
    instance_id: int, token: str, error: str, *, retryable: bool = True, now: dt.datetime | None = None,
    team: str | None = None, message_id: str | None = None,
) -> WorkerReply:
    """Finish the attempt as failed; retried after its delay while retries are left."""
    at = to_utc(now)

    def change() -> WorkerReply:
        instance, run = lock_instance(instance_id, team)
        _live(instance, token)
        end_attempt_failed(instance, run, "failed", str(error)[:MAX_MESSAGE], retryable, instance.worker or "worker", at)
        return _reply(instance)

    return apply_once(message_id, team, "fail", at, change)


def retry_delay(task, failures: int) -> float:
    base = task.retry_delay if task.retry_delay is not None else current_settings().default_retry_delay
    delay = base * task.retry_backoff ** (failures - 1)
    return min(delay, task.max_retry_delay) if task.max_retry_delay is not None else delay


def end_attempt_failed(
    instance: TaskInstance, run: Run, status: str, error: str, retryable: bool, actor: str, at: dt.datetime
) -> None:
    """A failed or expired attempt: counted against retries, then retry_wait, a new offer, or failed."""
    task = version_spec(run.version_id).task(instance.task)
    Attempt.update(status=status, error=error, finished_at=at).where(
        (Attempt.instance == instance.id) & (Attempt.token == instance.token) & (Attempt.status == "running")
    ).execute()
    instance.failures += 1
    detail = {"attempt": instance.attempt, "error": error, "failures": instance.failures, "retries": task.retries}
    kind = "expire" if status == "expired" else "fail"
    if retryable and instance.failures <= task.retries:
        delay = retry_delay(task, instance.failures)
        if delay <= 0:
            offer(instance, run, instances_of(run), kind=kind, actor=actor, at=at, detail=detail)
        else:
            move_instance(
                instance, S.RETRY_WAIT, kind=kind, actor=actor, at=at, detail=detail,
                token=None, lease_expires_at=None, not_before=at + dt.timedelta(seconds=delay),
            )
    else:
        move_instance(instance, S.FAILED, kind=kind, actor=actor, at=at, detail=detail, token=None, lease_expires_at=None)
    settle_run(run, instances_of(run), actor, at)


def skip(
    instance_id: int, token: str, reason: str, *, now: dt.datetime | None = None, team: str | None = None,
    message_id: str | None = None,
) -> WorkerReply:
    """The worker decides there is nothing to do: downstream tasks get null for this input."""
    at = to_utc(now)

    def change() -> WorkerReply:
        instance, run = lock_instance(instance_id, team)
        _live(instance, token)
        Attempt.update(status="skipped", finished_at=at, error=reason).where(
            (Attempt.instance == instance.id) & (Attempt.token == token) & (Attempt.status == "running")
        ).execute()
        actor = instance.worker or "worker"
        move_instance(
            instance, S.SKIPPED, kind="skip", actor=actor, at=at, detail={"reason": reason},
            token=None, lease_expires_at=None,
        )
        settle_run(run, instances_of(run), actor, at)
        return _reply(instance)

    return apply_once(message_id, team, "skip", at, change)


def apply_message(
    message, *, team: str, message_id: str | None = None, now: dt.datetime | None = None
) -> WorkerReply:
    """One worker message (a `flow45.messages` Claim, Progress, Submit, Fail or Skip) by itself."""
    from flow45 import messages as m

    common = {"now": now, "team": team, "message_id": message_id}
    if isinstance(message, m.Claim):
        return claim(message.instance, message.token, message.worker, **common)
    if isinstance(message, m.Progress):
        return progress(message.instance, message.token, message.percent, message.message, **common)
    if isinstance(message, m.Submit):
        return submit(message.instance, message.token, message.output, **common)
    if isinstance(message, m.Fail):
        return fail(message.instance, message.token, message.error, retryable=message.retryable, **common)
    if isinstance(message, m.Skip):
        return skip(message.instance, message.token, message.reason, **common)
    raise TypeError(f"not a worker message: {message!r}")
