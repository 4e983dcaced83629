"""What operators do to an instance: skip, retry, hold, release, and submit a human task."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flow45 import states as S
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import Flow45Error, IllegalTransition
from flow45.models import Attempt
from flow45.store.core import (
    describe, instances_of, lock_instance, move_instance, offer, revoke_live_attempt, settle_run, upstream_done,
)
from flow45.store.specs import version_spec
from flow45.store.work import finish_succeeded
from flow45.views import WorkerReply


def skip_instance(
    instance_id: int, reason: str, *, actor: str, now: dt.datetime | None = None, team: str | None = None
) -> None:
    """Skip an unfinished or failed instance; a running attempt loses its token."""
    at = to_utc(now)
    with atomic():
        instance, run = lock_instance(instance_id, team)
        _refuse_if_cancelled(instance, run)
        S.check_instance_move(describe(instance), instance.state, S.SKIPPED)
        revoke_live_attempt(instance, "revoked", at, f"skipped by {actor}")
        move_instance(
            instance, S.SKIPPED, kind="skip", actor=actor, at=at, detail={"reason": reason},
            token=None, lease_expires_at=None,
        )
        settle_run(run, instances_of(run), actor, at)


def retry_instance(instance_id: int, *, actor: str, now: dt.datetime | None = None, team: str | None = None) -> None:
    """Offer a failed instance again, with its retries counted afresh."""
    at = to_utc(now)
    with atomic():
        instance, run = lock_instance(instance_id, team)
        _refuse_if_cancelled(instance, run)
        if instance.state != S.FAILED:
            raise IllegalTransition(f"{describe(instance)} is {instance.state}; only a failed instance can be retried")
        instance.failures = 0
        offer(instance, run, instances_of(run), kind="retry", actor=actor, at=at)
        settle_run(run, instances_of(run), actor, at)


def hold(
    instance_id: int, *, actor: str, reason: str | None = None, now: dt.datetime | None = None, team: str | None = None
) -> None:
    """Pause an instance that has not started: its open offer stops counting."""
    at = to_utc(now)
    with atomic():
        instance, run = lock_instance(instance_id, team)
        _refuse_if_cancelled(instance, run)
        if instance.state not in (S.PENDING, S.AVAILABLE, S.RETRY_WAIT):
            raise IllegalTransition(
                f"{describe(instance)} is {instance.state}; only pending, available or retry_wait instances can be held"
            )
        move_instance(instance, S.HELD, kind="hold", actor=actor, at=at, detail={"reason": reason}, token=None)


def release(instance_id: int, *, actor: str, now: dt.datetime | None = None, team: str | None = None) -> None:
    """Let a held instance go: offered now if its upstream is done, else pending."""
    at = to_utc(now)
    with atomic():
        instance, run = lock_instance(instance_id, team)
        if instance.state != S.HELD:
            raise IllegalTransition(f"{describe(instance)} is {instance.state}, not held")
        run_instances = instances_of(run)
        if run.status != S.QUEUED and upstream_done(instance, run_instances, version_spec(run.version_id)):
            offer(instance, run, run_instances, kind="release", actor=actor, at=at)
        else:
            move_instance(instance, S.PENDING, kind="release", actor=actor, at=at)
        settle_run(run, instances_of(run), actor, at)


def submit_human(
    instance_id: int, output: Any, *, actor: str, now: dt.datetime | None = None, team: str | None = None
) -> WorkerReply:
    """An operator completes an available human task."""
    at = to_utc(now)
    with atomic():
        instance, run = lock_instance(instance_id, team)
        if not instance.human:
            raise Flow45Error(f"{describe(instance)} is not a human task; its worker submits it")
        if instance.state != S.AVAILABLE:
            raise IllegalTransition(f"{describe(instance)} is {instance.state}; only an available human task can be submitted")
        move_instance(
            instance, S.RUNNING, kind="claim", actor=actor, at=at, detail={"attempt": instance.attempt}, worker=actor
        )
        Attempt.create(
            instance=instance.id, number=instance.attempt, token=instance.token, status="running",
            worker=actor, claimed_at=at,
        )
        return finish_succeeded(instance, run, output, actor, at)


def _refuse_if_cancelled(instance, run) -> None:
    if run.status == S.CANCELLED:
        raise IllegalTransition(f"{describe(instance)}: run {run.id} is cancelled; nothing in it can change")
