"""Timer rules, pure like `flow45.store.rules`: when a `wait`/`wait_until` task is due, and how it
succeeds by itself. `rules.offer` arms a ready timer (state `waiting`, due time in `not_before`)
instead of offering it to workers; the scheduler's sweep fires it when due."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from dataclasses import dataclass

from flow45 import states as S
from flow45.clock import iso
from flow45.models import place_of
from flow45.store import rules

TIMER_ACTOR = "flow45-scheduler"


@dataclass(frozen=True)
class Timer:
    """A timer task of one run: `wait` seconds from when it is ready, or an absolute `until`."""

    wait: float | None = None
    until: dt.datetime | None = None  # naive UTC

    def due(self, ready_at: dt.datetime) -> dt.datetime:
        if self.until is not None:
            return self.until
        return ready_at + dt.timedelta(seconds=self.wait or 0.0)


def until_on_logical_day(time_of_day: str, logical: dt.datetime, timezone: str) -> dt.datetime:
    """`HH:MM[:SS]` on the day of `logical` (naive UTC) as seen in `timezone`, as naive UTC."""
    zone = zoneinfo.ZoneInfo(timezone)
    day = logical.replace(tzinfo=dt.timezone.utc).astimezone(zone).date()
    local = dt.datetime.combine(day, dt.time.fromisoformat(time_of_day), tzinfo=zone)
    return local.astimezone(dt.timezone.utc).replace(tzinfo=None)


def run_timers(spec, run) -> dict[str, Timer]:
    """task -> Timer for the timer tasks of a run (`run` needs logical_time and created_at)."""
    found: dict[str, Timer] = {}
    for name in spec.timer_tasks:
        task = spec.task(name)
        if task.wait is not None:
            found[name] = Timer(wait=task.wait)
        elif task.wait_until is not None:
            zone = spec.workflow.schedule.timezone if spec.workflow.schedule else "UTC"
            found[name] = Timer(until=until_on_logical_day(task.wait_until, place_of(run), zone))
    return found


def is_due(instance, at: dt.datetime) -> bool:
    """Due at its time exactly, not a microsecond before."""
    return instance.state == S.WAITING and instance.not_before is not None and instance.not_before <= at


def fire(ch: rules.Changes, instance, actor: str = TIMER_ACTOR) -> None:
    """A due timer succeeds with no output; its attempt is recorded as done by `actor`."""
    ch.new_attempts.append({"instance": instance.id, "number": instance.attempt, "token": instance.token,
                            "status": "running", "worker": actor, "claimed_at": ch.at})
    ch.ended_attempts.append((instance.id, instance.token, "succeeded", None, None))
    ch.outputs[instance.id] = None
    detail = {"attempt": instance.attempt, "due": iso(instance.not_before)}
    rules.move(ch, instance, S.SUCCEEDED, "timer", actor, detail, token=None, not_before=None, worker=actor,
               progress_pct=100.0)
