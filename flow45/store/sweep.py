"""Time-driven changes, each a function of `now`: lease expiry and retries that come due."""

from __future__ import annotations

import datetime as dt

from flow45 import states as S
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.models import TaskInstance
from flow45.store.core import instances_of, lock_instance, offer, settle_run
from flow45.store.work import end_attempt_failed

SWEEPER = "flow45-scheduler"


def expire_leases(now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """Running attempts whose lease passed fail as expired (counted against retries)."""
    at = to_utc(now)
    due = [
        row.id for row in TaskInstance.select(TaskInstance.id)
        .where((TaskInstance.state == S.RUNNING) & (TaskInstance.lease_expires_at < at))
        .order_by(TaskInstance.lease_expires_at).limit(limit)
    ]
    expired = []
    for instance_id in due:
        with atomic():
            instance, run = lock_instance(instance_id)
            if instance.state != S.RUNNING or instance.lease_expires_at is None or instance.lease_expires_at >= at:
                continue  # progress renewed it, or it finished, since we looked
            end_attempt_failed(instance, run, "expired", f"lease expired at {instance.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC", True, SWEEPER, at)
            expired.append(instance_id)
    return expired


def release_due_retries(now: dt.datetime | None = None, limit: int = 500) -> list[int]:
    """retry_wait instances whose time came are offered again."""
    at = to_utc(now)
    due = [
        row.id for row in TaskInstance.select(TaskInstance.id)
        .where((TaskInstance.state == S.RETRY_WAIT) & (TaskInstance.not_before <= at))
        .order_by(TaskInstance.not_before).limit(limit)
    ]
    released = []
    for instance_id in due:
        with atomic():
            instance, run = lock_instance(instance_id)
            if instance.state != S.RETRY_WAIT:
                continue
            offer(instance, run, instances_of(run), kind="retry", actor=SWEEPER, at=at)
            settle_run(run, instances_of(run), SWEEPER, at)
            released.append(instance_id)
    return released
