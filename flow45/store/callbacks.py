"""Completing or failing a parked attempt by its callback key (the CLI's `flow45 callback`, and the
broker's `callback_submit` / `callback_fail`). Holding the key is the permission, bound to the
sender's team: an unknown key, one whose attempt ended and another team's are refused in the same words."""

from __future__ import annotations

import datetime as dt
from typing import Any

from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import NotFound
from flow45.models import TaskInstance
from flow45.outputs import check_output
from flow45.settings import current_settings
from flow45.store import callback_rules, rules
from flow45.store.unit import Row, Unit
from flow45.views import WorkerReply

UNKNOWN = "no parked task instance has this callback key"


def _parked(unit: Unit, key: str, team: str | None) -> Row:
    """The parked instance holding `key`, its run locked; NotFound in one wording for every miss."""
    unknown = NotFound(UNKNOWN + (f" for team {team}" if team else ""))
    if not isinstance(key, str) or not 0 < len(key) <= 64:
        raise unknown
    found = TaskInstance.select(TaskInstance.id).where(TaskInstance.callback_key == key).first()
    if found is None:
        raise unknown
    unit.lock_instances([found.id], teams=[team])
    instance = unit.instances.get(found.id)
    if instance is None or not callback_rules.is_parked(instance, key) or (team is not None and instance.team != team):
        raise unknown  # ended or re-parked since we looked, or another team's
    return instance


def complete_callback(key: str, output: Any, *, actor: str, team: str | None = None,
                      now: dt.datetime | None = None) -> WorkerReply:
    """Finish the parked attempt with `output`, validated against the task's output type."""
    with atomic():
        unit = Unit(to_utc(now))
        instance = _parked(unit, key, team)
        spec, task = unit.spec(instance.run_id), unit.task(instance)
        clean = check_output(spec.types, task.output, output, current_settings().output_max_bytes,
                             rules.describe(instance))
        callback_rules.complete(unit.changes, instance, clean, actor)
        unit.settle(instance.run_id, actor)
        unit.flush()
        return rules.reply(instance)


def fail_callback(key: str, error: str, *, actor: str, retryable: bool = True, team: str | None = None,
                  now: dt.datetime | None = None) -> WorkerReply:
    """Fail the parked attempt; retried after its delay while retries are left."""
    with atomic():
        unit = Unit(to_utc(now))
        instance = _parked(unit, key, team)
        rules.fail(unit.changes, instance, unit.task(instance), error, retryable, actor)
        unit.settle(instance.run_id, actor)
        unit.flush()
        return rules.reply(instance)
