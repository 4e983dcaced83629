"""The lifecycle rules, once: pure functions over plain rows that change the rows in memory and
record what the writer must store (`Changes`). Nothing here reads or writes the database; the one
writer is `flow45.store.unit`, and every verb (worker messages, one or a batch, operator actions,
sweeps, undo, triggers) goes through it."""

from __future__ import annotations

import datetime as dt
import hashlib
import secrets
from dataclasses import dataclass, field
from typing import Any, Callable

from flow45 import states as S
from flow45.clock import iso
from flow45.durations import MAX_DURATION
from flow45.errors import IllegalTransition, StaleToken, TooLong
from flow45.names import offer_key
from flow45.settings import current_settings
from flow45.store.specs import VersionSpec
from flow45.views import WorkerReply

MAX_MESSAGE = 2000  # progress messages and errors are cut here


@dataclass(frozen=True)
class RunSlot:
    """Whether a finished run given work again may run: `waits`, why it must wait queued instead (its
    workflow's max_active_runs all running), or None; `over_limit`, why it runs past that limit (a
    running run waits for it: flow45.store.slots.awaited), or None."""

    waits: str | None = None
    over_limit: str | None = None


FREE_SLOT = RunSlot()


@dataclass
class Changes:
    """What one transaction decided, for the writer to store together."""

    at: dt.datetime
    instances: dict[int, Any] = field(default_factory=dict)  # changed instance rows by id
    runs: dict[int, Any] = field(default_factory=dict)  # changed run rows by id
    events: list[dict] = field(default_factory=list)
    new_attempts: list[dict] = field(default_factory=list)
    ended_attempts: list[tuple] = field(default_factory=list)  # (instance, token, status, output, error)
    offers: list[Any] = field(default_factory=list)  # instances whose offer the outbox must carry
    outputs: dict[int, Any] = field(default_factory=dict)  # instance -> output submitted here
    freed_slots: dict[int, str] = field(default_factory=dict)  # workflow -> actor of a run that left running
    # Workflows where a running run's instance began to wait (depends_on_past) for a run queued for a slot:
    # that run starts past the limit (flow45.store.slots.awaited_queued); they are in `freed_slots` too.
    awaited: set[int] = field(default_factory=set)
    comments: dict[tuple, str] = field(default_factory=dict)  # (instance, token) -> a human submit's comment
    logs: dict[tuple, tuple] = field(default_factory=dict)  # (instance, token) -> (log_url, log_tail), either may be None
    checkpoints: dict[tuple, Any] = field(default_factory=dict)  # (instance, token) -> the last checkpoint sent
    reached: list[tuple] = field(default_factory=list)  # (run, final state, actor): connected workflows may start
    # An instance becoming ready -> why the inputs it would receive do not meet its task's `when`, or
    # None (flow45.conditions); given by the writer, which can read those inputs.
    unmet: Callable[[Any], str | None] | None = None
    # An instance ready to offer -> the states of its upstream instances, by task: whether one succeeded
    # or all or one were skipped, for the trigger rules `none_failed_min_one_success`, `one_success`,
    # `all_skipped` and `none_skipped`; given by the writer, which reads them.
    upstream_states: Callable[[Any], dict[str, str]] | None = None
    # An instance to offer -> why it must wait `queued` (no free slot of a `max_running`, or its task's
    # `depends_on_past`: flow45.store.slots), or None.
    why_queued: Callable[[Any], str | None] | None = None
    # Instances that left a slot (no longer offered or running) or finished: what waits queued may go.
    may_free: list[Any] = field(default_factory=list)
    # A finished run that would run again -> whether it may (RunSlot); given by the writer, which counts
    # its workflow's running runs.
    run_slot: Callable[[Any], RunSlot] | None = None
    # A run's id -> its status, as changed here.
    run_status: Callable[[int], str] | None = None


def new_token() -> str:
    return secrets.token_urlsafe(18)


def describe(instance) -> str:
    return f"task instance {instance.id} ({instance.task} of run {instance.run_id})"


def reply(instance, **extra: Any) -> WorkerReply:
    return WorkerReply(instance=instance.id, state=instance.state, attempt=instance.attempt, **extra)


def lease_seconds(task) -> float:
    lease = task.lease if task.lease is not None else current_settings().default_lease
    return min(lease, MAX_DURATION)  # a version stored before deploy refused longer ones


def retry_delay(task, failures: int, instance_id: int = 0) -> float:
    """The wait before the next attempt; at most a century, which the backoff reaches within the
    allowed retries (30s doubled 42 times is past the calendar's end). With `retry_jitter`, up to that
    fraction of it is taken off, by a draw fixed by the instance and the failure's number: instances
    that failed together come back spread out, and the same failure always waits the same."""
    base = task.retry_delay if task.retry_delay is not None else current_settings().default_retry_delay
    delay = base * task.retry_backoff ** (failures - 1)
    delay = min(delay, task.max_retry_delay if task.max_retry_delay is not None else MAX_DURATION, MAX_DURATION)
    if task.retry_jitter:
        draw = hashlib.blake2b(f"{instance_id}:{failures}".encode(), digest_size=8).digest()
        delay *= 1.0 - task.retry_jitter * int.from_bytes(draw, "big") / 2 ** 64
    return delay


def record(ch: Changes, team: str, kind: str, actor: str, *, run: int | None = None, instance: int | None = None,
           from_state: str | None = None, to_state: str | None = None, detail: Any = None) -> None:
    ch.events.append({"at": ch.at, "team": team, "run": run, "instance": instance, "kind": kind,
                      "from_state": from_state, "to_state": to_state, "actor": actor, "detail": detail})


# ---- moving ----------------------------------------------------------------------------------

def move(ch: Changes, instance, target: str, kind: str, actor: str, detail: Any = None, **values: Any) -> None:
    """The one way an instance changes state: checked against the transition table, and logged."""
    S.check_instance_move(describe(instance), instance.state, target)
    record(ch, instance.team, kind, actor, run=instance.run_id, instance=instance.id,
           from_state=instance.state, to_state=target, detail=detail)
    if (instance.state in S.TAKING_SLOTS and target not in S.TAKING_SLOTS) or target in S.FINISHED_INSTANCE:
        ch.may_free.append(instance)
    instance.state = target
    instance.updated_at = ch.at
    if target != S.RUNNING:  # a running attempt's key and deadline end with it
        instance.callback_key = instance.timeout_at = None
    for name, value in values.items():
        setattr(instance, name, value)
    ch.instances[instance.id] = instance


def move_run(ch: Changes, run, target: str, kind: str, actor: str, detail: Any = None) -> None:
    S.check_run_move(f"run {run.id}", run.status, target)
    record(ch, run.team, kind, actor, run=run.id, from_state=run.status, to_state=target, detail=detail)
    if run.status == S.RUNNING and target in S.FINISHED_RUN:
        ch.freed_slots.setdefault(run.workflow_id, actor)  # a queued run of the workflow may start
    if target in S.FINISHED_RUN:
        ch.reached.append((run, target, actor))
    run.status = target
    run.updated_at = ch.at
    if target == S.RUNNING and run.started_at is None:
        run.started_at = ch.at
    run.finished_at = ch.at if target in S.FINISHED_RUN else None
    ch.runs[run.id] = run


def end_attempt(ch: Changes, instance, status: str, *, output: Any = None, error: str | None = None) -> None:
    """The running attempt, if any, ends; its token stops counting."""
    if instance.state == S.RUNNING and instance.token:
        ch.ended_attempts.append((instance.id, instance.token, status, output, error))


# ---- what a worker does ----------------------------------------------------------------------

def require_open_offer(instance, token: str) -> None:
    if instance.state != S.AVAILABLE or instance.token != token:
        held = f" by {instance.worker}" if instance.state == S.RUNNING and instance.token == token else ""
        raise StaleToken(
            f"{describe(instance)}: this offer is no longer open (instance is {instance.state}{held}, "
            f"attempt {instance.attempt}); nothing changed"
        )


def require_live(instance, token: str) -> None:
    """Refuse unless `token` is the running attempt's."""
    if instance.state != S.RUNNING or instance.token != token:
        raise StaleToken(
            f"{describe(instance)}: token is not the current attempt's (now {instance.state}, "
            f"attempt {instance.attempt}); nothing changed"
        )


def claim(ch: Changes, instance, task, worker: str) -> None:
    """Take the offered attempt: the lease starts now, and the task's timeout, if it has one."""
    timeout_at = None if task.timeout is None else ch.at + dt.timedelta(seconds=min(task.timeout, MAX_DURATION))
    move(ch, instance, S.RUNNING, "claim", worker, {"attempt": instance.attempt}, worker=worker,
         lease_expires_at=within_timeout(ch.at + dt.timedelta(seconds=lease_seconds(task)), timeout_at),
         timeout_at=timeout_at)
    ch.new_attempts.append({"instance": instance.id, "number": instance.attempt, "token": instance.token,
                            "status": "running", "worker": worker, "claimed_at": ch.at})


def within_timeout(deadline: dt.datetime | None, timeout_at: dt.datetime | None) -> dt.datetime | None:
    """A lease's or a parked attempt's deadline (None: none), never past the attempt's timeout: the lease
    sweep then ends an attempt that outran its task's timeout, however often it reported progress."""
    if timeout_at is None:
        return deadline
    return timeout_at if deadline is None else min(deadline, timeout_at)


def take_next(ch: Changes, offered: list, functions: list[str], task_of, worker: str):
    """Eager dispatch: of the instances a submit just offered, the most urgent one of `functions`
    (the submitting worker's) is claimed for that worker at once, and its offer is not sent. Returns
    it, or None."""
    wanted = [i for i in offered if i.function in functions]
    if not wanted:
        return None
    chosen = max(wanted, key=lambda i: i.priority)  # the first of the most urgent
    ch.offers.remove(chosen)
    claim(ch, chosen, task_of(chosen), worker)
    return chosen


def progress(ch: Changes, instance, task, percent: float | None, message: str | None) -> None:
    """Record progress and renew the lease (a parked attempt keeps its deadline instead)."""
    if instance.callback_key is None:
        instance.lease_expires_at = within_timeout(ch.at + dt.timedelta(seconds=lease_seconds(task)), instance.timeout_at)
    if percent is not None:
        instance.progress_pct = max(0.0, min(100.0, float(percent)))
    if message is not None:
        instance.progress_message = message[:MAX_MESSAGE]
    instance.updated_at = ch.at
    ch.instances[instance.id] = instance


def keep_checkpoint(ch: Changes, instance_id: int, token: str, checkpoint: Any) -> None:
    """Keep where the attempt of this token got to (once its message is accepted); none sent leaves
    the last one (flow45.checkpoints)."""
    if checkpoint is not None:
        ch.checkpoints[(instance_id, token)] = checkpoint


def note_log(ch: Changes, instance_id: int, token: str, url: str | None, tail: str | None) -> None:
    """Keep a log link or tail with the attempt of this token (once its message is accepted); a message
    without one leaves the last one sent."""
    if url is not None or tail is not None:
        before_url, before_tail = ch.logs.get((instance_id, token), (None, None))
        ch.logs[(instance_id, token)] = (url if url is not None else before_url,
                                         tail if tail is not None else before_tail)


def succeed(ch: Changes, instance, output: Any, actor: str) -> None:
    """Finish the running attempt with its (already checked) output."""
    end_attempt(ch, instance, "succeeded", output=output)
    ch.outputs[instance.id] = output
    move(ch, instance, S.SUCCEEDED, "submit", actor, {"attempt": instance.attempt},
         token=None, lease_expires_at=None, progress_pct=100.0)


SETTABLE = (S.QUEUED, S.AVAILABLE, S.RUNNING, S.RETRY_WAIT, S.HELD, S.FAILED)


def check_settable(instance) -> None:
    """Whether an operator may set this instance's output now (asked before the output is checked)."""
    if instance.state not in SETTABLE:
        raise IllegalTransition(
            f"{describe(instance)} is {instance.state}; an output can be set only while it is "
            + ", ".join(SETTABLE) + (" (undo it first)" if instance.state == S.SUCCEEDED else "")
        )


def set_output(ch: Changes, instance, output: Any, reason: str, actor: str) -> None:
    """An operator sets a worker task's (already checked) output by hand: a running attempt is
    revoked, and a fresh attempt, made and finished by the operator with the reason kept, succeeds."""
    check_settable(instance)
    end_attempt(ch, instance, "revoked", error=f"output set by {actor}")
    number, token = instance.attempt + 1, new_token()
    ch.new_attempts.append({"instance": instance.id, "number": number, "token": token, "status": "running",
                            "worker": actor, "claimed_at": ch.at})
    ch.ended_attempts.append((instance.id, token, "succeeded", output, None))
    ch.comments[(instance.id, token)] = reason
    ch.outputs[instance.id] = output
    move(ch, instance, S.SUCCEEDED, "set_output", actor, {"attempt": number, "reason": reason},
         attempt=number, token=None, worker=actor, lease_expires_at=None, not_before=None, progress_pct=100.0)


MAX_SAID = 2000  # an operator's reason or comment: as much as the messages carry


def said(text: str | None, what: str = "reason") -> str | None:
    """An operator's reason or comment as the ledger keeps it: stripped, blank as none. Longer than
    MAX_SAID characters it is refused, as the bridge refuses it, rather than kept cut short."""
    if text is not None and len(text) > MAX_SAID:
        raise TooLong(f"the {what} is {len(text):,} characters, over the {MAX_SAID:,} kept: shorten it "
                      "(nothing changed)")
    return (text or "").strip() or None


def skip(ch: Changes, instance, reason: str, actor: str, *, revoked: str | None = None) -> None:
    """Nothing to do: downstream tasks get null for this input. `revoked`: an operator's skip ends a
    running attempt as revoked, with this error; a worker's own skip ends it as skipped."""
    if revoked is None:
        end_attempt(ch, instance, "skipped", error=reason)
    else:
        end_attempt(ch, instance, "revoked", error=revoked)
    move(ch, instance, S.SKIPPED, "skip", actor, {"reason": said(reason)}, token=None, lease_expires_at=None)


def fail(ch: Changes, instance, task, error: str, retryable: bool, actor: str, *, expired: bool = False,
         unclaimed: bool = False) -> None:
    """A failed or expired attempt: counted against retries, then a new offer, retry_wait, or failed.
    `unclaimed`: an offer no worker claimed in time (a task's start_within), said in the ledger."""
    error = str(error)[:MAX_MESSAGE]
    end_attempt(ch, instance, "expired" if expired else "failed", error=error)
    instance.failures += 1
    detail = {"attempt": instance.attempt, "error": error, "failures": instance.failures, "retries": task.retries,
              **({"unclaimed": True} if unclaimed else {})}
    kind = "expire" if expired else "fail"
    if retryable and instance.failures <= task.retries:
        delay = retry_delay(task, instance.failures, instance.id)
        if delay <= 0:
            offer(ch, instance, kind, actor, detail)
        else:
            move(ch, instance, S.RETRY_WAIT, kind, actor, detail, token=None, lease_expires_at=None,
                 not_before=ch.at + dt.timedelta(seconds=delay))
    else:
        move(ch, instance, S.FAILED, kind, actor, detail, token=None, lease_expires_at=None)
        if task.optional:  # failed, as the ledger says, and skipped at once: the run goes on without it
            move(ch, instance, S.SKIPPED, "skip", actor, {"reason": f"optional, failed: {error}", "optional": True})


# ---- offers and runs -------------------------------------------------------------------------

def offer(ch: Changes, instance, kind: str, actor: str, detail: Any = None, target: str = S.AVAILABLE) -> None:
    """A fresh attempt and token; an available worker task gets its offer written. A timer
    (`instance.timer`, see flow45.store.timers) is armed instead: it waits until due, offered to nobody."""
    due = None
    if instance.timer is not None and target in (S.AVAILABLE, S.WAITING):
        target, due = S.WAITING, instance.timer.due(ch.at)
        detail = {**(detail or {}), "due": iso(due)}
    if target != S.HELD and ch.run_status is not None and ch.run_status(instance.run_id) == S.QUEUED:
        # Its run waits queued for a slot (`reopen`): attempts running then go on, what follows waits for the start.
        waits = f"run {instance.run_id} is queued"
        return hold_back(ch, instance, S.PENDING, kind, actor, {**(detail or {}), "queued": waits})
    if instance.human and target == S.AVAILABLE:  # said in the ledger, for whoever tells people a decision waits
        detail = {**(detail or {}), "human": True}
    elif target == S.AVAILABLE and ch.why_queued is not None and (why := ch.why_queued(instance)) is not None:
        return hold_back(ch, instance, S.QUEUED, kind, actor, {**(detail or {}), "queued": why})
    move(ch, instance, target, kind, actor, detail, attempt=instance.attempt + 1, token=new_token(),
         lease_expires_at=None, not_before=due, offered_at=ch.at, worker=None, progress_pct=None,
         progress_message=None)
    if instance.assignment is not None:  # a human task: nobody has it, its due time starts now
        instance.assignment.arm(instance, ch.at)
    if target == S.AVAILABLE and not instance.human:  # operators do human tasks: no worker is offered them
        ch.offers.append(instance)


def hold_back(ch: Changes, instance, target: str, kind: str, actor: str, detail: Any) -> None:
    """Not offered, or no longer: `queued` (a slot or its run before) or `pending` (its run is queued),
    with no token, lease, offer or worker."""
    move(ch, instance, target, kind, actor, detail, token=None, lease_expires_at=None, not_before=None,
         offered_at=None, worker=None, progress_pct=None, progress_message=None)


def offer_if_met(ch: Changes, instance, task, kind: str, actor: str, rule_unmet: str | None = None) -> bool | None:
    """Offer an instance whose upstream is done, or skip it when the inputs it would receive do not
    meet its task's `when` (flow45.conditions), the ledger naming the condition, or when `rule_unmet`
    says why its trigger rule lets it go without running (see `trigger_unmet`). Whether it was offered;
    None when it waits on (a `one_success` task whose upstream tasks done so far were all skipped)."""
    if rule_unmet is None and task.trigger_rule in ("none_failed_min_one_success", "one_success"):
        upstream = ch.upstream_states(instance).values()
        if S.SUCCEEDED not in upstream:
            if any(state != S.SKIPPED for state in upstream):
                return None  # one_success: an upstream task not done yet may still succeed
            rule_unmet = f"trigger_rule {task.trigger_rule}: every upstream task was skipped"
    elif rule_unmet is None and task.trigger_rule == "all_skipped":
        ran = [name for name, state in ch.upstream_states(instance).items() if state != S.SKIPPED]
        if ran:  # its upstream is done: each one not skipped succeeded
            rule_unmet = f"trigger_rule all_skipped: upstream task {ran[0]} succeeded"
    elif rule_unmet is None and task.trigger_rule == "none_skipped":
        skipped = [name for name, state in ch.upstream_states(instance).items() if state == S.SKIPPED]
        if skipped:
            rule_unmet = f"trigger_rule none_skipped: upstream task {skipped[0]} was skipped"
    if rule_unmet is not None:
        move(ch, instance, S.SKIPPED, "skip", actor, {"reason": rule_unmet, "trigger_rule": task.trigger_rule})
        return False
    why = ch.unmet(instance) if task.when and ch.unmet is not None else None
    if why is None:
        offer(ch, instance, kind, actor)
        return True
    move(ch, instance, S.SKIPPED, "skip", actor, {"reason": why, "when": True})
    return False


def reoffer(ch: Changes, instance, actor: str, previous: str) -> None:
    """The same attempt and token offered again (a lost offer); `updated_at` keeps the waiting time."""
    record(ch, instance.team, "reoffer", actor, run=instance.run_id, instance=instance.id,
           detail={"attempt": instance.attempt, "previous_offer": previous})
    instance.offered_at = ch.at
    ch.instances[instance.id] = instance
    ch.offers.append(instance)


def reopens(run, not_done: dict[str, str]) -> bool:
    """Whether a finished run has work again, its instances not done being `not_done` (by task): one is
    left and none failed (an operator's undo, retry, skip or output)."""
    return run.status in (S.SUCCEEDED, S.FAILED) and bool(not_done) and S.FAILED not in not_done.values()


UNOFFERED = (S.AVAILABLE, S.QUEUED, S.RETRY_WAIT, S.WAITING)  # what a run that waits queued takes back


def reopen(ch: Changes, run, run_instances: dict, not_done: dict[str, str], kind: str, actor: str,
           detail: Any = None, slot: RunSlot | None = None) -> None:
    """A finished run with work again runs again, if its workflow has a free slot (`max_active_runs`);
    else it waits queued for one, as a trigger's run would: what a failed run still offered (or kept
    waiting) goes back to pending until it starts, and the caller offers nothing in it. Attempts
    running go on. `run_instances`: the whole run, by task; `slot`: as the caller already asked it."""
    if not reopens(run, not_done):
        return
    if slot is None:
        slot = ch.run_slot(run) if ch.run_slot is not None else FREE_SLOT
    if slot.waits is None:
        over = {"over_max_active_runs": slot.over_limit} if slot.over_limit else {}
        return move_run(ch, run, S.RUNNING, kind, actor, {**(detail or {}), **over} or detail)
    move_run(ch, run, S.QUEUED, kind, actor, {**(detail or {}), "queued": slot.waits})
    for instance in run_instances.values():
        if instance.state in UNOFFERED:
            take_back(ch, instance, kind, actor, {"queued": f"run {run.id} is queued: {slot.waits}"})


def take_back(ch: Changes, instance, kind: str, actor: str, detail: dict) -> None:
    """An instance offered (or waiting to be) goes back to pending: what it waits for is no longer done."""
    hold_back(ch, instance, S.PENDING, kind, actor, detail)
    if instance.assignment is not None:  # a human task: its due time and alarms start again when offered
        instance.assignment.arm(instance, ch.at)


def upstream_done(instance, run_instances: dict, spec: VersionSpec) -> bool:
    """Whether every upstream of `instance` is done, its run's instances given by task."""
    return _upstream_done(instance.task, not_done_of(run_instances), spec)


def not_done_of(run_instances: dict) -> dict[str, str]:
    """The state of each of a run's instances that is not done, by task."""
    return {name: i.state for name, i in run_instances.items() if i.state not in S.DONE}


def settle_run(ch: Changes, run, run_instances: dict, spec: VersionSpec, actor: str) -> None:
    """Offer every pending instance whose upstream is done, then bring the run's status in line; a
    finished run given work again runs again, or waits queued for a slot (`reopen`)."""
    not_done = not_done_of(run_instances)
    if reopens(run, not_done):
        reopen(ch, run, run_instances, not_done, "run", actor)
        not_done = not_done_of(run_instances)  # as reopen left them
    settle_after(ch, run, [run_instances[name] for name in spec.order if name in not_done], not_done, spec, actor)


def ready_after(changed: list[str], not_done: dict[str, str], spec: VersionSpec) -> list[str]:
    """The tasks that the changes to the `changed` tasks made ready to offer (pending, every upstream
    done), in order; `not_done`: the state of each of the run's instances that is not done, by task."""
    downstream = {name for task in changed if task not in not_done for name in spec.downstream[task]}
    if spec.after_failure:  # a failure lets the tasks of `after_failure` after it go, however far down
        downstream.update(name for task in changed if not_done.get(task) == S.FAILED
                          for name in spec.after_failure_of(task))
    return spec.in_order(name for name in downstream if ready(name, not_done, spec))


def ready(name: str, not_done: dict[str, str], spec: VersionSpec) -> bool:
    return not_done.get(name) == S.PENDING and _upstream_done(name, not_done, spec)


def _upstream_done(name: str, not_done: dict[str, str], spec: VersionSpec) -> bool:
    """Every upstream succeeded or skipped; for a task with `trigger_rule: all_done`, `all_failed` or
    `none_skipped`, every upstream ended: done, failed for good, or pending for good behind such a
    failure; for `one_failed`, one upstream ended so, or every upstream done (it is then skipped:
    `trigger_unmet`); for `one_success`, one upstream done (`offer_if_met` asks whether one succeeded)."""
    if name in spec.one_success:
        return any(up not in not_done for up in spec.upstream(name))
    if name in spec.on_failure:
        return not any(up in not_done for up in spec.upstream(name)) or _failed_upstream(name, not_done, spec)
    if name in spec.after_failure:
        blocked: dict[str, bool] = {}
        return all(not_done.get(up) in (None, S.FAILED) or _blocked(up, not_done, spec, blocked)
                   for up in spec.upstream(name))
    return not any(up in not_done for up in spec.upstream(name))


def _failed_upstream(name: str, not_done: dict[str, str], spec: VersionSpec) -> bool:
    """An upstream of `name` failed for good, or waits for good behind such a failure."""
    blocked: dict[str, bool] = {}
    return any(not_done.get(up) == S.FAILED or _blocked(up, not_done, spec, blocked) for up in spec.upstream(name))


def trigger_unmet(name: str, not_done: dict[str, str], spec: VersionSpec) -> str | None:
    """Why a task whose upstream is done is skipped rather than offered: a `one_failed` task none of
    whose upstream tasks failed, or an `all_failed` one with an upstream task that succeeded or was
    skipped (Airflow skips them so too). None for any other."""
    if name in spec.on_failure and not _failed_upstream(name, not_done, spec):
        return "trigger_rule one_failed: no upstream task failed"
    if name in spec.all_failed and (done := [up for up in spec.upstream(name) if up not in not_done]):
        return f"trigger_rule all_failed: upstream task {done[0]} did not fail"
    return None


def _blocked(name: str, not_done: dict[str, str], spec: VersionSpec, known: dict[str, bool]) -> bool:
    """Pending (or held) for good: waiting for the success of an upstream that failed for good, or of one
    waiting for good itself (Airflow's upstream_failed). Walked without recursion: a chain can be thousands long."""
    stack = [name]
    while stack:
        task = stack[-1]
        if task in known:
            stack.pop()
        elif not_done.get(task) not in S.HELD_UP or task in spec.after_failure:
            known[task] = False
            stack.pop()
        elif (task in spec.one_success and not_done[task] == S.HELD
              and any(up not in not_done for up in spec.upstream(task))):
            known[task] = False  # held: a done upstream may have succeeded, and then it runs once released
            stack.pop()
        elif unknown := [up for up in spec.upstream(task) if up not in known and not_done.get(up) in S.HELD_UP]:
            stack.extend(unknown)
        elif task in spec.one_success:  # pending: the upstream tasks done were all skipped (else it was offered)
            ended = [up not in not_done or not_done[up] == S.FAILED or known.get(up, False) for up in spec.upstream(task)]
            known[task] = all(ended) and any(up in not_done for up in spec.upstream(task))
            stack.pop()
        else:
            known[task] = any(not_done.get(up) == S.FAILED or known.get(up, False) for up in spec.upstream(task))
            stack.pop()
    return known[name]


_UNFAILED = {"retry": "retried", "skip": "skipped", "set_output": "given an output"}  # by the kind of change


def unfail(ch: Changes, instance, becomes: str, run_instances: dict, spec: VersionSpec, kind: str, actor: str) -> None:
    """Before a failed `instance` becomes `becomes` other than by undo (an operator's retry, skip or output):
    the tasks after it that its failure let go (`all_done`, `one_failed`, `all_failed`, `none_skipped`), and
    that must now wait for what follows it or be skipped for their rule (nothing, or not everything, failed
    now; an upstream task skipped), go back to pending while only offered; one that has started refuses
    the change, naming undo."""
    let_go = [run_instances[name] for name in spec.in_order(spec.after_failure_of(instance.task))
              if run_instances[name].state not in S.HELD_UP | {S.CANCELLED}]
    if not let_go:
        return
    verb = _UNFAILED[kind]
    not_done = {**not_done_of(run_instances), instance.task: becomes}
    if becomes in S.DONE:
        del not_done[instance.task]
    waits = [i for i in let_go if not _upstream_done(i.task, not_done, spec) or trigger_unmet(i.task, not_done, spec)
             or (becomes == S.SKIPPED and spec.task(i.task).trigger_rule == "none_skipped"
                 and instance.task in spec.upstream(i.task))]
    if started := [i for i in waits if i.state not in UNOFFERED or i.state == S.RETRY_WAIT]:
        named = ", ".join(f"{i.task} ({i.id}, {i.state})" for i in started)
        which = ", ".join(sorted({spec.task(i.task).trigger_rule for i in started}))
        raise IllegalTransition(
            f"{describe(instance)} cannot be {verb}: {named} ran after its failure (trigger_rule: {which}); undo "
            f"instance {instance.id} to run it and {'them' if len(started) > 1 else 'that'} again")
    for after in waits:
        take_back(ch, after, kind, actor,
                  {"taken_back": f"instance {instance.id} ({instance.task}) is {verb}: it waits for what follows"})


def settle_after(ch: Changes, run, candidates: list, not_done: dict[str, str], spec: VersionSpec,
                 actor: str) -> list:
    """Offer the `candidates` (instances, in order) that are pending with every upstream done, or skip
    those whose inputs do not meet their task's `when`; then bring the run's status in line. `not_done`
    holds the state of every instance of the run that is not done, by task (a run too wide to read
    whole for one change: its pending instances downstream of what changed are the only candidates),
    and follows the moves made here. Returns the instances skipped so: their downstream may be ready."""
    skipped = []
    if run.status not in (S.QUEUED, S.CANCELLED):
        for instance in candidates:  # stable and readable in the ledger
            if instance.state == S.PENDING and ready(instance.task, not_done, spec):
                unmet = trigger_unmet(instance.task, not_done, spec)
                offered = offer_if_met(ch, instance, spec.task(instance.task), "ready", actor, unmet)
                if offered:
                    not_done[instance.task] = instance.state
                elif offered is not None:
                    del not_done[instance.task]
                    skipped.append(instance)
    target = S.run_status_from_not_done(not_done.values(), run.status)
    if target != run.status:
        move_run(ch, run, target, "run", actor)
    return skipped


def cancel_run(ch: Changes, run, run_instances: dict, actor: str, reason: str | None,
               timeout: str | None = None) -> None:
    """Every unfinished instance cancelled (running attempts lose their token), then the run;
    `timeout`: the workflow's, which the run ran past (the ledger keeps it for `notify`)."""
    S.check_run_move(f"run {run.id}", run.status, S.CANCELLED)
    for instance in run_instances.values():
        if instance.state in S.FINISHED_INSTANCE:
            continue
        end_attempt(ch, instance, "revoked", error="run cancelled")
        move(ch, instance, S.CANCELLED, "cancel", actor, token=None, lease_expires_at=None)
    detail = {"reason": said(reason), **({"timeout": timeout} if timeout else {})}
    move_run(ch, run, S.CANCELLED, "cancel", actor, detail)


def start_run(ch: Changes, run, run_instances: dict, spec: VersionSpec, actor: str, detail: Any = None) -> None:
    """A queued run takes the slot that came free (or goes past the limit, `detail` saying why)."""
    move_run(ch, run, S.RUNNING, "start", actor, detail)
    settle_run(ch, run, run_instances, spec, actor)


def inputs(instance, run_instances: dict, spec: VersionSpec, outputs: dict[int, Any]) -> dict:
    """What the instance receives: each declared input's upstream output (null unless it succeeded)."""
    chosen = {}
    for param, up in spec.task(instance.task).inputs.items():
        upstream = run_instances[up]
        chosen[param] = outputs.get(upstream.id) if upstream.state == S.SUCCEEDED else None
    return chosen


def lineage(instance, run_instances: dict, spec: VersionSpec) -> dict | None:
    """Which upstream attempt's output each declared input carries, read off the rows in memory
    (a succeeded instance's `attempt` is the attempt that succeeded); attempt null: skipped, passes null."""
    links = {}
    for param, up in spec.task(instance.task).inputs.items():
        upstream = run_instances[up]
        links[param] = {"task": up, "instance": upstream.id,
                        "attempt": upstream.attempt if upstream.state == S.SUCCEEDED else None}
    return links or None


def upstream_outputs_needed(instance, run_instances: dict, spec: VersionSpec) -> list[int]:
    return [run_instances[up].id for up in spec.task(instance.task).inputs.values()
            if run_instances[up].state == S.SUCCEEDED]


def offer_row(instance, run, spec: VersionSpec, given: dict, at: dt.datetime) -> dict:
    """The outbox row that carries an offer to the instance's function queue."""
    task = spec.task(instance.task)
    body = {
        "instance": instance.id, "run": run.id, "team": run.team, "workflow": spec.workflow_name,
        "version": spec.number, "task": instance.task, "function": instance.function,
        "attempt": instance.attempt, "token": instance.token, "inputs": given, "params": run.params,
        "lease_seconds": lease_seconds(task), "human": task.human, "priority": instance.priority,
        "logical_time": iso(run.logical_time),
    }
    return {"team": run.team, "kind": "offer", "routing_key": offer_key(run.team, instance.function),
            "priority": instance.priority, "body": body, "instance": instance.id, "created_at": at}
