"""What operators do to an instance: skip, retry, hold, release, and submit a human task; and a note on
a run or one of its tasks. Each is one transaction through the lifecycle's one writer (`Unit`), with
the same rules as worker messages."""

from __future__ import annotations

import datetime as dt
import difflib
from contextlib import contextmanager
from typing import Any, Iterator

from flow45 import states as S
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import Flow45Error, IllegalTransition, NotFound
from flow45.outputs import check_output
from flow45.settings import current_settings
from flow45.store import rules, rules_human
from flow45.store.unit import Row, Unit
from flow45.views import WorkerReply


@contextmanager
def changing(instance_id: int, team: str | None, now: dt.datetime | None) -> Iterator[tuple[Unit, Row]]:
    """One transaction that locks the instance's run, yields the unit and the instance, and stores
    what the rules changed."""
    with atomic():
        unit = Unit(to_utc(now))
        unit.lock_instances([instance_id], teams=[team])
        yield unit, unit.instance(instance_id, team)
        unit.flush()


def note_run(run_id: int, text: str, *, actor: str, now: dt.datetime | None = None, team: str | None = None,
             task: str | None = None) -> str:
    """An operator's note on a run, or on the instance of one of its tasks (Airflow's run and task
    instance notes): a `note` ledger event that moves nothing. Returns the run's status."""
    said = rules.said(text, "note")
    if said is None:
        raise IllegalTransition("a note needs some text")
    with atomic():
        unit = Unit(to_utc(now))
        unit.lock_runs([run_id], teams=[team])
        run = unit.run(run_id, team)
        instance, detail = None, {"text": said}
        if task is not None:
            instance = _instance_of_task(unit, run, task).id
            detail["task"] = task
        rules.record(unit.changes, run.team, "note", actor, run=run.id, instance=instance, detail=detail)
        unit.flush()
        return run.status


def _instance_of_task(unit: Unit, run, task: str):
    found = unit.by_run[run.id]  # by task
    if task not in found:
        close = difflib.get_close_matches(task, list(found), n=1)
        raise NotFound(f"run {run.id} has no task {task!r}" + (f"; did you mean {close[0]}?" if close else
                                                                 f"; its tasks: {', '.join(found)}"))
    return found[task]


def skip_instance(
    instance_id: int, reason: str, *, actor: str, now: dt.datetime | None = None, team: str | None = None
) -> None:
    """Skip an unfinished or failed instance; a running attempt loses its token."""
    if rules.said(reason) is None:  # rules.skip keeps it as said
        raise IllegalTransition("skip needs a reason")
    with changing(instance_id, team, now) as (unit, instance):
        _refuse_if_cancelled(unit, instance)
        if instance.state == S.FAILED:
            rules.unfail(unit.changes, instance, S.SKIPPED, unit.by_run[instance.run_id], unit.spec(instance.run_id),
                         "skip", actor)
        rules.skip(unit.changes, instance, reason, actor, revoked=f"skipped by {actor}")
        unit.settle(instance.run_id, actor)


def retry_instance(instance_id: int, *, actor: str, now: dt.datetime | None = None, team: str | None = None) -> None:
    """Offer a failed instance again, with its retries counted afresh; pending instead, when its run
    must wait queued for a slot of its workflow's max_active_runs (flow45.store.rules.reopen)."""
    with changing(instance_id, team, now) as (unit, instance):
        _refuse_if_cancelled(unit, instance)
        if instance.state != S.FAILED:
            raise IllegalTransition(f"{rules.describe(instance)} is {instance.state}; only a failed instance can be retried")
        run = unit.run_of(instance)
        rules.unfail(unit.changes, instance, S.AVAILABLE, unit.by_run[run.id], unit.spec(run.id), "retry", actor)
        instance.failures = 0
        not_done = {**rules.not_done_of(unit.by_run[run.id]), instance.task: S.AVAILABLE}
        rules.reopen(unit.changes, run, unit.by_run[run.id], not_done, "retry", actor)
        rules.offer(unit.changes, instance, "retry", actor)  # pending, if the run now waits queued
        unit.settle(instance.run_id, actor)


def hold(
    instance_id: int, *, actor: str, reason: str | None = None, now: dt.datetime | None = None, team: str | None = None
) -> None:
    """Pause an instance that has not started: its open offer stops counting."""
    with changing(instance_id, team, now) as (unit, instance):
        _refuse_if_cancelled(unit, instance)
        if instance.state not in (S.PENDING, S.QUEUED, S.AVAILABLE, S.RETRY_WAIT, S.WAITING):
            raise IllegalTransition(
                f"{rules.describe(instance)} is {instance.state}; only pending, queued, available, retry_wait or "
                "waiting instances can be held"
            )
        rules.move(unit.changes, instance, S.HELD, "hold", actor, {"reason": rules.said(reason)}, token=None)
        unit.settle(instance.run_id, actor)  # the last thing on its way in a run with a failure: it fails


def release(instance_id: int, *, actor: str, now: dt.datetime | None = None, team: str | None = None) -> None:
    """Let a held instance go: offered now if its upstream is done, else pending."""
    with changing(instance_id, team, now) as (unit, instance):
        if instance.state != S.HELD:
            raise IllegalTransition(f"{rules.describe(instance)} is {instance.state}, not held")
        run = unit.run_of(instance)
        spec, run_instances = unit.spec(run.id), unit.by_run[run.id]
        goes = None
        if run.status != S.QUEUED and rules.upstream_done(instance, run_instances, spec):
            unmet = rules.trigger_unmet(instance.task, rules.not_done_of(run_instances), spec)
            goes = rules.offer_if_met(unit.changes, instance, unit.task(instance), "release", actor, unmet)
        if goes is None:  # its upstream not done (or, `one_success`, none succeeded yet): it waits
            rules.move(unit.changes, instance, S.PENDING, "release", actor)
        unit.settle(run.id, actor)


def submit_human(
    instance_id: int, output: Any, *, actor: str, comment: str | None = None, now: dt.datetime | None = None,
    team: str | None = None,
) -> WorkerReply:
    """An operator decides an available human task: claimed and submitted in one go, by them, with
    their comment kept in the attempt. Refused for someone who may not decide it, or while someone
    else has taken it."""
    with changing(instance_id, team, now) as (unit, instance):
        if not instance.human:
            raise Flow45Error(f"{rules.describe(instance)} is not a human task; its worker submits it")
        rules_human.check_submit(instance, actor)
        spec, task = unit.spec(instance.run_id), unit.task(instance)
        clean = check_output(spec.types, task.output, output, current_settings().output_max_bytes, rules.describe(instance))
        rules.claim(unit.changes, instance, task, actor)
        if comment := rules.said(comment, "comment"):
            unit.changes.comments[(instance.id, instance.token)] = comment
        rules.succeed(unit.changes, instance, clean, actor)
        unit.settle(instance.run_id, actor)
        return rules.reply(instance)


def set_output(
    instance_id: int, output: Any, *, reason: str, actor: str, now: dt.datetime | None = None, team: str | None = None,
) -> WorkerReply:
    """An operator sets a worker task's output by hand ("mark success", typed): checked against the
    task's output type, recorded as an attempt by the operator with the reason; downstream goes on
    as after a submit."""
    reason = rules.said(reason)
    if reason is None:
        raise Flow45Error("setting an output needs a reason (--reason TEXT)")
    with changing(instance_id, team, now) as (unit, instance):
        _refuse_if_cancelled(unit, instance)
        if instance.human:
            raise Flow45Error(f"{rules.describe(instance)} is a human task; decide it with submit")
        if instance.timer is not None:
            raise Flow45Error(f"{rules.describe(instance)} is a timer; it has no output to set")
        if unit.run_of(instance).status == S.QUEUED:
            raise IllegalTransition(f"{rules.describe(instance)}: run {instance.run_id} is queued; it has not started")
        rules.check_settable(instance)  # a pending task is refused as such, whatever the output
        spec, task = unit.spec(instance.run_id), unit.task(instance)
        if instance.state == S.HELD and not rules.upstream_done(instance, unit.by_run[instance.run_id], spec):
            # held while pending: it would succeed, and its downstream go, before its upstream ran
            raise IllegalTransition(f"{rules.describe(instance)} is held before its upstream is done; an output "
                                    "can be set once it is, as for a pending one")
        clean = check_output(spec.types, task.output, output, current_settings().output_max_bytes, rules.describe(instance))
        if instance.state == S.FAILED:
            rules.unfail(unit.changes, instance, S.SUCCEEDED, unit.by_run[instance.run_id], spec, "set_output", actor)
        rules.set_output(unit.changes, instance, clean, reason, actor)
        unit.settle(instance.run_id, actor)
        return rules.reply(instance)


def take(
    instance_id: int, *, actor: str, reason: str | None = None, now: dt.datetime | None = None, team: str | None = None,
    for_user: str | None = None,
) -> str | None:
    """`actor` takes a human task, or gives it to `for_user` (others see who has it); taking it from
    someone else needs a reason. Returns who had it before (None: nobody, or it had it already)."""
    with changing(instance_id, team, now) as (unit, instance):
        before = instance.taken_by
        rules_human.take(unit.changes, instance, actor, reason, for_user)
        return before if before != (for_user or actor) else None


def hand_back(instance_id: int, *, actor: str, now: dt.datetime | None = None, team: str | None = None) -> None:
    """The holder of a human task lets it go."""
    with changing(instance_id, team, now) as (unit, instance):
        rules_human.hand_back(unit.changes, instance, actor)


def _refuse_if_cancelled(unit: Unit, instance: Row) -> None:
    if unit.run_of(instance).status == S.CANCELLED:
        raise IllegalTransition(f"{rules.describe(instance)}: run {instance.run_id} is cancelled; nothing in it can change")
