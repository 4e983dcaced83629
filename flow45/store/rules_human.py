"""Human task rules, pure like `flow45.store.rules`: who may decide, taking and handing back, the
submit checks, and the reminders and overdue outcome that come due. The writer (`Unit`) attaches an
`Assignment` to every human instance it reads (`instance.assignment`); `rules.offer` arms it when the
task becomes available, and the scheduler's sweep (`flow45.store.sweep.human_alarms`) calls `alarm`."""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass, field

from flow45 import states as S
from flow45.clock import iso
from flow45.config_human import GROUP_PREFIX, USER_NAME
from flow45.durations import format_duration
from flow45.errors import Flow45Error, IllegalTransition, NotAllowed
from flow45.settings import current_settings
from flow45.store import rules

SWEEPER = "flow45-scheduler"


@dataclass(frozen=True)
class Assignment:
    """One human task of a deployed version: who may decide it, by when, and what happens after."""

    deciders: tuple[str, ...] = ()  # users and @groups as written; none: any operator of the team
    groups: dict = field(default_factory=dict, hash=False, compare=False)  # group -> members, as last deployed
    due: float | None = None  # seconds after becoming available
    reminders: tuple[float, ...] = ()  # seconds after becoming available
    overdue: object = None  # flow45.config_human.OverdueSpec, or None

    def arm(self, instance, at: dt.datetime) -> None:
        arm(instance, at)

    @property
    def escalated_to(self) -> tuple[str, ...]:
        return tuple(self.overdue.to) if self.overdue is not None and self.overdue.action == "escalate" else ()

    def names(self, escalated: bool) -> tuple[str, ...]:
        return self.deciders + (self.escalated_to if escalated else ())

    def users(self, escalated: bool) -> set[str] | None:
        """Who may decide; None: anyone of the team."""
        if not self.deciders:
            return None
        found: set[str] = set()
        for name in self.names(escalated):
            found.update(self.groups.get(name[1:], ()) if name.startswith(GROUP_PREFIX) else (name,))
        return found

    def who(self, escalated: bool) -> str:
        """"ann, @finance (ann, bob)", for refusals and the inbox."""
        if not self.deciders:
            return "any operator of the team"
        return ", ".join(
            f"{name} ({', '.join(self.groups.get(name[1:], ())) or 'nobody'})" if name.startswith(GROUP_PREFIX) else name
            for name in self.names(escalated)
        )


def run_assignments(spec, current) -> dict[str, Assignment]:
    """task -> Assignment for the human tasks of a version. Who may decide is as the version names them,
    and a group's members are as `current` (the workflow's current version) has them: someone taken out
    of a group by a deploy may no longer decide the tasks of earlier runs either. A group the current
    version no longer names keeps the members the run's version has."""
    if not spec.human_tasks:
        return {}
    groups = {**spec.groups, **current.groups}
    return {
        name: Assignment(tuple(task.assignees), groups, task.due, tuple(task.reminders), task.overdue)
        for name, task in ((name, spec.task(name)) for name in spec.human_tasks)
    }


# ---- arming ----------------------------------------------------------------------------------

def arm(instance, at: dt.datetime) -> None:
    """A human task that became available now: nobody has it, its due time and alarms start now.
    Anything else (held, pending) carries none."""
    assignment = instance.assignment
    available = instance.state == S.AVAILABLE
    instance.taken_by = None
    instance.reminders_sent = 0
    instance.overdue_at = None
    instance.due_at = at + dt.timedelta(seconds=assignment.due) if available and assignment.due is not None else None
    instance.alarm_at = next_alarm(instance) if available else None


def next_alarm(instance) -> dt.datetime | None:
    """The next moment the sweep has something to do: a reminder not sent, or the due time not handled."""
    assignment = instance.assignment
    moments = []
    sent = instance.reminders_sent or 0
    if sent < len(assignment.reminders):
        moments.append(instance.offered_at + dt.timedelta(seconds=assignment.reminders[sent]))
    if instance.due_at is not None and instance.overdue_at is None:
        moments.append(instance.due_at)
    return min(moments, default=None)


# ---- what an operator does -------------------------------------------------------------------

def _require_open(instance) -> None:
    if not instance.human:
        raise Flow45Error(f"{rules.describe(instance)} is not a human task; its worker does it")
    if instance.state != S.AVAILABLE:
        raise IllegalTransition(f"{rules.describe(instance)} is {instance.state}; only an available human task can be "
                                "taken, handed back or submitted")


def escalated(instance) -> bool:
    return instance.overdue_at is not None and bool(instance.assignment.escalated_to)


def require_allowed(instance, actor: str) -> None:
    """Refuse someone who may not decide, naming who may."""
    users = instance.assignment.users(escalated(instance))
    if users is not None and actor not in users:
        raise NotAllowed(f"{rules.describe(instance)}: {actor} may not decide it; "
                         f"who may: {instance.assignment.who(escalated(instance))}")


def take(ch: rules.Changes, instance, actor: str, reason: str | None = None, for_user: str | None = None) -> bool:
    """`actor` takes the task, or gives it to `for_user` (Camunda's assign): others see who has it. Both
    must be allowed to decide it. Taking it over from someone other than the two needs a reason.
    Returns False when the one it is for already has it (nothing changes)."""
    _require_open(instance)
    require_allowed(instance, actor)
    holder, taker = instance.taken_by, for_user or actor
    if taker != actor:
        _require_operator(instance.team, taker)
        require_allowed(instance, taker)
    if holder == taker:
        return False
    reason = rules.said(reason)
    if holder is not None and holder != actor and reason is None:
        who = "" if taker == actor else f" --for {taker}"
        raise NotAllowed(f"{rules.describe(instance)} is taken by {holder}; take it over with a reason "
                         f"(flow45 take {instance.id}{who} --reason TEXT)")
    _note(ch, instance, "take", actor, {"taken_by": taker, "from": holder, "reason": reason})
    instance.taken_by = taker
    return True


def _require_operator(team: str, user: str) -> None:
    """Someone a task can be given to: a user name, not one of the team's workers' broker users nor
    another team's (local operators, named with --as, are not listed in the settings)."""
    if not re.match(USER_NAME, user):
        raise Flow45Error(f"{user!r} is not a user name (letters, digits and _ . @ + -)")
    if (why := never_decides(team, user)) is not None:
        raise NotAllowed(why)


def never_decides(team: str, user: str) -> str | None:
    """Why `user` can never decide a human task of `team`, or None: a broker user of another team (the
    bridge takes its messages for that team), or a worker's of this one."""
    for other, listed in current_settings().teams.items():
        if other != team and user in listed.users:
            return f"{user} is a broker user of team {other}, not of team {team}"
    listed = current_settings().teams.get(team)
    if listed is not None and listed.users.get(user) == "worker":
        return f"{user} is a worker's broker user of team {team}, not an operator"
    return None


def hand_back(ch: rules.Changes, instance, actor: str) -> None:
    """The holder lets the task go: anyone who may decide can take it."""
    _require_open(instance)
    if instance.taken_by != actor:
        holder = f"taken by {instance.taken_by}" if instance.taken_by else "not taken"
        raise NotAllowed(f"{rules.describe(instance)} is {holder}; only its holder can hand it back")
    _note(ch, instance, "hand_back", actor, {"from": actor})
    instance.taken_by = None


def check_submit(instance, actor: str) -> None:
    """A decision from someone allowed, and not while someone else has the task."""
    _require_open(instance)
    require_allowed(instance, actor)
    if instance.taken_by is not None and instance.taken_by != actor:
        raise NotAllowed(f"{rules.describe(instance)} is taken by {instance.taken_by}; take it over with a reason "
                         f"(flow45 take {instance.id} --reason TEXT) to decide it")


def _note(ch: rules.Changes, instance, kind: str, actor: str, detail: dict) -> None:
    """A ledger event that moves nothing."""
    rules.record(ch, instance.team, kind, actor, run=instance.run_id, instance=instance.id, detail=detail)
    instance.updated_at = ch.at
    ch.instances[instance.id] = instance


# ---- what time does --------------------------------------------------------------------------

def is_due(instance, at: dt.datetime) -> bool:
    return instance.human and instance.state == S.AVAILABLE and instance.alarm_at is not None and instance.alarm_at <= at


def alarm(ch: rules.Changes, instance, output_type_check, actor: str = SWEEPER) -> None:
    """Send the reminders whose time came (each once) and, when due passed, apply the overdue outcome
    (once). `output_type_check(output)` returns the default output as stored."""
    assignment, at = instance.assignment, ch.at
    who = assignment.who(escalated(instance))
    while (instance.reminders_sent or 0) < len(assignment.reminders):
        n = instance.reminders_sent or 0
        when = instance.offered_at + dt.timedelta(seconds=assignment.reminders[n])
        if when > at:
            break
        _note(ch, instance, "remind", actor, {
            "reminder": n + 1, "of": len(assignment.reminders), "to": who, "taken_by": instance.taken_by,
            "due": iso(instance.due_at) if instance.due_at else None,
            "reason": f"waiting {format_duration(assignment.reminders[n])} since it became available",
        })
        instance.reminders_sent = n + 1
    if instance.due_at is not None and instance.overdue_at is None and instance.due_at <= at:
        _overdue(ch, instance, output_type_check, actor)
    instance.alarm_at = next_alarm(instance) if instance.state == S.AVAILABLE else None
    ch.instances[instance.id] = instance


def _overdue(ch: rules.Changes, instance, output_type_check, actor: str) -> None:
    assignment = instance.assignment
    instance.overdue_at = ch.at
    outcome = assignment.overdue.action if assignment.overdue is not None else "none"
    detail = {"outcome": outcome, "due": iso(instance.due_at), "taken_by": instance.taken_by,
              "reason": f"not decided within {format_duration(assignment.due)} (due {iso(instance.due_at)})"}
    if outcome == "escalate":
        detail["to"] = assignment.who(True)
        _note(ch, instance, "overdue", actor, detail)
    elif outcome == "none":
        _note(ch, instance, "overdue", actor, detail)
    elif outcome == "skip":
        rules.move(ch, instance, S.SKIPPED, "overdue", actor, detail, token=None, taken_by=None)
    else:  # fail or default: an attempt by the sweeper, so the record shows who finished it
        output = None
        if outcome == "default":
            try:
                output = output_type_check(assignment.overdue.output)
            except Flow45Error as exc:  # the output cap was lowered since the deploy, say: a person decides
                detail.update(outcome="none", refused=f"the default output: {exc.message}")
                _note(ch, instance, "overdue", actor, detail)
                return
        ch.new_attempts.append({"instance": instance.id, "number": instance.attempt, "token": instance.token,
                                "status": "running", "worker": actor, "claimed_at": ch.at})
        if outcome == "default":
            ch.ended_attempts.append((instance.id, instance.token, "succeeded", output, None))
            ch.outputs[instance.id] = output
            rules.move(ch, instance, S.SUCCEEDED, "overdue", actor, detail, token=None, worker=actor,
                       progress_pct=100.0)
        else:
            ch.ended_attempts.append((instance.id, instance.token, "failed", None, detail["reason"]))
            rules.move(ch, instance, S.FAILED, "overdue", actor, detail, token=None, worker=actor)


# ---- how it reads ----------------------------------------------------------------------------

def relative(seconds: float) -> str:
    """2d 3h, 2h, 1h 5m, 45m, 30s: as a person reads a due time."""
    seconds = int(abs(seconds))
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days}d" + (f" {hours}h" if hours else "")
    if hours:
        return f"{hours}h" + (f" {minutes}m" if minutes else "")
    return f"{minutes}m" if minutes else f"{secs}s"


def due_text(due_at: dt.datetime | None, now: dt.datetime) -> str | None:
    if due_at is None:
        return None
    if due_at <= now:
        return f"overdue by {relative((now - due_at).total_seconds())}" if due_at < now else "due now"
    return f"due in {relative((due_at - now).total_seconds())}"


DUE_BY = re.compile(r"due by (\d{4}-\d\d-\d\d \d\d:\d\d(?::\d\d)?)Z")


def waiting_text(task: str, taken_by: str | None, due_at: dt.datetime | None, assignment: Assignment | None,
                 escalated_now: bool) -> str:
    """"approve (ann, due by 2026-03-01 14:00Z)": who has it (or who may take it) and when it is due.
    The store says when, whatever its clock; `relative_due` turns it into "due in 2h" where it is shown."""
    if taken_by:
        who = taken_by
    elif assignment is None or not assignment.deciders:
        who = "any operator"
    else:
        who = "for " + ", ".join(assignment.names(escalated_now))
    due = None
    if due_at is not None:
        due = "due by " + due_at.strftime("%Y-%m-%d %H:%M" if not due_at.second and not due_at.microsecond
                                          else "%Y-%m-%d %H:%M:%S") + "Z"
    return f"{task} ({', '.join(p for p in (who, due) if p)})"


def relative_due(text: str | None, now: dt.datetime) -> str | None:
    """A run's waiting-for text with each human task's "due by TIME" read against `now`: "due in 2h",
    "overdue by 1h" (timers keep their time: they are not waiting for anybody)."""
    if not text:
        return text
    return DUE_BY.sub(lambda m: due_text(dt.datetime.fromisoformat(m.group(1)), now), text)
