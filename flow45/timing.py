"""How long things took: queue wait and run time of runs and instances, from the times in their
views. Pure: what is still going is measured up to `now`, which the caller passes in."""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING

from flow45 import states as S

if TYPE_CHECKING:
    from flow45.views import InstanceView, RunView, WorkflowView


def _between(start: dt.datetime | None, end: dt.datetime | None) -> float | None:
    if start is None or end is None:
        return None
    return max(0.0, (end - start).total_seconds())


def run_wait(run: RunView, now: dt.datetime) -> float | None:
    """From trigger to start (a queued run: so far)."""
    return _between(run.created_at, run.started_at or (now if run.status == S.QUEUED else None))


def run_time(run: RunView, now: dt.datetime) -> float | None:
    """From start to finish (a running run: so far)."""
    return _between(run.started_at, run.finished_at or (now if run.status == S.RUNNING else None))


def instance_wait(view: InstanceView, now: dt.datetime) -> float | None:
    """The current attempt's wait from its offer to its claim (an open offer: so far)."""
    if view.offered_at is None:
        return None
    if view.started_at is not None and view.started_at >= view.offered_at:
        return _between(view.offered_at, view.started_at)
    return _between(view.offered_at, now) if view.state in (S.AVAILABLE, S.WAITING) else None


def instance_time(view: InstanceView, now: dt.datetime) -> float | None:
    """The current attempt's run time from claim to end (a running attempt: so far)."""
    if view.started_at is None:
        return None
    return _between(view.started_at, view.finished_at or (now if view.state == S.RUNNING else None))


def short_span(seconds: float | None) -> str:
    """`850ms`, `42s`, `3m05s`, `2h07m`, `3d04h`; `-` for nothing."""
    if seconds is None:
        return "-"
    if 0 < seconds < 1:
        return f"{seconds * 1000:.0f}ms"
    whole = int(seconds)
    for size, unit, next_size, next_unit in ((86400, "d", 3600, "h"), (3600, "h", 60, "m"), (60, "m", 1, "s")):
        if whole >= size:
            return f"{whole // size}{unit}{(whole % size) // next_size:02d}{next_unit}"
    return f"{whole}s"


def next_run_text(view: WorkflowView, now: dt.datetime, on_time: dt.timedelta) -> tuple[str | None, bool]:
    """When the schedule's next run is due (UTC), and whether it is overdue: due for longer than
    `on_time` (what a scheduler takes to make it), so that no scheduler is running or it cannot
    reach the store."""
    if view.next_run is None:
        if view.paused is not None and view.schedule:
            return "paused", False
        return ("ended" if view.schedule_ended else None), False
    at = view.next_run.strftime("%Y-%m-%d %H:%M:%S")
    ahead = (view.next_run - now).total_seconds()
    if ahead > 0:
        return f"{at} (in {short_span(ahead)})", False
    if -ahead <= on_time.total_seconds():
        return f"{at} (due now)", False
    return f"{at} (overdue {short_span(-ahead)}: is a scheduler running?)", True


def last_run_text(view: WorkflowView, now: dt.datetime) -> str | None:
    """`12 succeeded (3h05m ago)`: the workflow's latest run, its status and when it was triggered."""
    if view.last_run is None:
        return None
    # A run stamped ahead of this clock (another machine's, or the demo's simulated one) is just now.
    ago = f" ({short_span(max(0.0, (now - view.last_run_at).total_seconds()))} ago)" if view.last_run_at else ""
    return f"{view.last_run} {view.last_run_status}{ago}"
