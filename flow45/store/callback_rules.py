"""Callback rules, pure like `flow45.store.rules`: a worker parks its running attempt under a key;
whoever holds the key completes or fails it later. The attempt stays `running` (its token still
works); `lease_expires_at` becomes the deadline (none: it never expires; either way within the task's
timeout), so the lease sweep fails it past the deadline, counted against retries as an expired lease is."""

from __future__ import annotations

import datetime as dt
import secrets
from typing import Any

from flow45 import states as S
from flow45.clock import iso
from flow45.durations import format_duration
from flow45.errors import IllegalTransition
from flow45.store import rules


def new_key() -> str:
    # 256 random bits as 64 hex digits: never a leading "-", which a shell command line would read
    # as an option (`flow45 callback complete KEY`), nor characters a URL or header must escape.
    return secrets.token_hex(32)


def park(ch: rules.Changes, instance, deadline_seconds: float | None, actor: str) -> str:
    """Suspend the lease; returns the callback key."""
    if instance.callback_key is not None:
        raise IllegalTransition(f"{rules.describe(instance)}: attempt {instance.attempt} is parked already")
    instance.callback_key = new_key()
    deadline = None if deadline_seconds is None else ch.at + dt.timedelta(seconds=deadline_seconds)
    instance.lease_expires_at = rules.within_timeout(deadline, instance.timeout_at)
    instance.updated_at = ch.at
    ch.instances[instance.id] = instance
    rules.record(ch, instance.team, "park", actor, run=instance.run_id, instance=instance.id,
                 detail={"attempt": instance.attempt, "deadline": iso(instance.lease_expires_at)})
    return instance.callback_key


def is_parked(instance, key: str) -> bool:
    return (instance.state == S.RUNNING and instance.callback_key is not None
            and secrets.compare_digest(instance.callback_key, key))


def complete(ch: rules.Changes, instance, output: Any, actor: str) -> None:
    """The key's holder finishes the parked attempt with its (already checked) output."""
    rules.end_attempt(ch, instance, "succeeded", output=output)
    ch.outputs[instance.id] = output
    rules.move(ch, instance, S.SUCCEEDED, "callback", actor, {"attempt": instance.attempt},
               token=None, lease_expires_at=None, progress_pct=100.0)


def ran_out_of_time(instance) -> bool:
    """Whether the attempt the lease sweep ends reached its task's timeout (neither its lease nor a
    parked attempt's deadline runs past it), rather than its lease or callback deadline."""
    return instance.timeout_at is not None and instance.lease_expires_at >= instance.timeout_at


def deadline_error(instance, task) -> str:
    """Why the lease sweep fails an attempt: its lease or, parked, its callback deadline passed, or
    its task's timeout."""
    if ran_out_of_time(instance):
        return (f"timed out at {instance.timeout_at:%Y-%m-%d %H:%M:%S} UTC: running longer than its task's "
                f"timeout of {format_duration(task.timeout)}")
    what = "callback deadline passed" if instance.callback_key is not None else "lease expired"
    return f"{what} at {instance.lease_expires_at:%Y-%m-%d %H:%M:%S} UTC"
