"""What plays in the headless demo: a scripted operator doing what the newcomer would do in the
dashboard, a printer of the ledger's events and of the workers' lines (their progress reports among
them), and the demo's clock skipping ahead to a waiting timer once nothing else can move."""

from __future__ import annotations

import datetime as dt
import logging
import queue
import time
from pathlib import Path
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from flow45 import clock
from flow45 import states as S
from flow45 import store
from flow45.clock import utcnow

TEAM = "reports"
OPERATOR = "demo-operator"
MONTHLY, NIGHTLY = "monthly_report", "nightly_sales"


def timer_to_skip_to() -> tuple[Any, dt.datetime] | None:
    """The waiting timer (instance, due) the clock may skip ahead to: one is due later, and no worker holds
    or could take a task (nothing running, offered to workers or about to be retried), so a lease
    granted before the skip cannot expire because of it. Human tasks are days away from due."""
    now = utcnow()
    waiting = []
    for run in store.list_runs(team=TEAM, status=S.RUNNING, limit=100):
        for i in store.get_run(run.id).instances:
            if i.state in (S.RUNNING, S.RETRY_WAIT) or (i.state == S.AVAILABLE and not i.human):
                return None
            if i.state == S.WAITING and i.not_before is not None and i.not_before > now:
                waiting.append((i, i.not_before))
    return min(waiting, key=lambda found: found[1]) if waiting else None


def skip_to_timer(tell: Callable[[str], None] | None = None) -> bool:
    """Skip the clock ahead to the next waiting timer when nothing else can move; said with `tell`
    (default: a line on stdout, as the scripted operator's)."""
    found = timer_to_skip_to()
    if found is None:
        return False
    instance, due = found
    now = utcnow()
    (tell or say)(f"run {instance.run} {instance.task} waits until {due:%H:%M} UTC ({_span(due - now)} from now) "
                  "and nothing else can move: the demo's clock skips ahead to it")
    clock.skip_ahead(max(due - now, dt.timedelta(0)))  # due may have come in between
    return True


def _span(delta: dt.timedelta) -> str:
    minutes = max(1, round(delta.total_seconds() / 60))
    return f"{minutes // 60}h{minutes % 60:02d}m" if minutes >= 60 else f"{minutes}m"


def say(text: str) -> None:
    now = utcnow()
    print(f"{now:%H:%M:%S}.{now.microsecond // 1000:03d}  operator  {text}", flush=True)


class Printer(logging.Handler):
    """One line per ledger event, read from the store as the dashboard does, and one per line a worker
    logs (as a logging handler): each progress report a worker makes, so none is missed however busy
    the machine is. Printed at each poll, merged in time order."""

    def __init__(self) -> None:
        super().__init__()
        self.after = 0
        self.tasks: dict[int, str] = {}
        self.said: queue.SimpleQueue[tuple[dt.datetime, str]] = queue.SimpleQueue()

    def emit(self, record: logging.LogRecord) -> None:
        """A worker's line, from its thread: kept for the next poll, timed on the demo's clock."""
        at = dt.datetime.fromtimestamp(record.created, dt.timezone.utc).replace(tzinfo=None) + clock.ahead()
        self.said.put((at, record.getMessage()))

    def poll(self) -> None:
        """Print what happened since the last poll, in time order. The workers' lines are taken before
        the events are read, so none comes out ahead of the event it follows (a progress, its claim)."""
        said = []
        while not self.said.empty():
            said.append(self.said.get())
        lines = [(e.at, e.id, self._event_line(e)) for e in self._events()]
        lines += [(at, 0, (at, "worker", text, "", "")) for at, text in said]
        for _, _, line in sorted(lines, key=lambda item: item[:2]):
            _line(*line)

    def drain(self) -> None:
        """The last lines, once the services have stopped."""
        self.poll()

    def _events(self) -> list:
        events = store.list_events(self.after, team=TEAM, limit=1000)
        if events:
            self.after = events[-1].id
        return events

    def _event_line(self, e) -> tuple:
        if e.instance and e.instance not in self.tasks:
            self.tasks[e.instance] = store.get_instance(e.instance).task
        detail = e.detail if isinstance(e.detail, dict) else {}
        where = f"run {e.run}" if e.run else e.team
        if e.instance:
            where += f" {self.tasks[e.instance]}"
        elif e.kind == "trigger":
            run = store.get_run(e.run)
            where += f" {run.workflow}"
            by = f" to {run.triggered_by}" if run.trigger == "connected" else ""
            detail = {"note": run.trigger + (f" {run.logical_time:%Y-%m-%d %H:%M} UTC" if run.logical_time else "") + by}
        elif e.kind == "connect":
            detail = {"note": f"started run {detail.get('run')} {detail.get('workflow')}"}
        elif e.kind == "deploy":
            where += f"/{detail.get('workflow')} v{detail.get('version')}"
        move = f"{e.from_state or '-'} -> {e.to_state}" if e.to_state else ""
        note = detail.get("error") or detail.get("reason") or detail.get("note") or ""
        if not note and detail.get("due") and e.kind in ("ready", "timer", "undo"):  # a timer's due time
            note = f"due {detail['due']}"
        return e.at, e.kind, where, move, e.actor, note


def _line(at: dt.datetime, kind: str, where: str, what: str, actor: str, note: str = "") -> None:
    text = f"{at:%H:%M:%S}.{at.microsecond // 1000:03d}  {kind:<9} {where:<26} {what:<26} {actor:<16} {note}"
    print(text.rstrip(), flush=True)


class ScriptedOperator:
    """What a newcomer would do in the dashboard: approve each report after a look (the one started by
    hand and the one the nightly run starts), then undo the monthly render ("wrong logo") once its run
    has finished, and approve the new render only after the withdrawn report is gone from published/.
    Between acts, when only the nightly run's timer is left waiting, the clock skips ahead to it."""

    REVIEW = 1.0  # seconds spent looking at a report before approving it

    def __init__(self) -> None:
        self.seen: dict[tuple[int, int], float] = {}  # (approve instance, attempt) -> first seen
        self.approvals = 0
        self.undone_file: Path | None = None
        self.removed = False

    def play(self, printer: Printer, timeout: float) -> list[str]:
        """Act until every run has finished; the list of what did not happen (empty: all did)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            printer.poll()
            skip_to_timer()  # here, between acts, so no approval of ours starts work before the skip
            runs = store.list_runs(team=TEAM, limit=100)
            self._approve(runs)
            self._undo(runs)
            if self.undone_file is not None and not self.removed and not self.undone_file.exists():
                self.removed = True
                self._say(f"the withdrawn report {self.undone_file.name} is gone from published/")
            if self.removed and any(r.workflow == NIGHTLY and r.trigger == "schedule" for r in runs) and all(
                r.status in S.FINISHED_RUN for r in runs
            ):
                return self._missing(runs)
            time.sleep(0.1)
        return [f"not done within {timeout:g}s", *self._missing(store.list_runs(team=TEAM, limit=100))]

    def _approve(self, runs) -> None:
        for run in runs:
            if run.status != S.RUNNING or run.workflow != MONTHLY:
                continue
            approve = next(i for i in store.get_run(run.id).instances if i.task == "approve")
            if approve.state != S.AVAILABLE:
                continue
            if approve.taken_by is None:  # others see who is looking at it
                store.take(approve.id, actor=OPERATOR)
            first_seen = self.seen.setdefault((approve.id, approve.attempt), time.monotonic())
            if time.monotonic() - first_seen < self.REVIEW or (self.undone_file is not None and not self.removed):
                continue  # still looking at it, or waiting for the withdrawn report to go
            self._say(f"run {run.id}: looked at the rendered report; approves it")
            store.submit_human(approve.id, {"approved": True, "reviewer": OPERATOR, "comment": "looks right"},
                               actor=OPERATOR, comment="figures and logo checked")
            self.approvals += 1

    def _undo(self, runs) -> None:
        if self.undone_file is not None:
            return
        done = [r for r in runs if r.workflow == MONTHLY and r.trigger == "manual" and r.status == S.SUCCEEDED]
        if not done:
            return
        run = store.get_run(done[0].id, with_attempts=True)
        by_task = {i.task: i for i in run.instances}
        published = next(a.output for a in by_task["publish"].attempts if a.status == "succeeded" and not a.archived)
        plan = store.undo(by_task["render"].id, "wrong logo on page 1: render again", actor=OPERATOR, dry_run=True)
        affected = ", ".join(f"{a.task} -> {a.becomes}" + (" (undo notice)" if a.notify else "") for a in plan.affected)
        self._say(f"run {run.id}: the report has the wrong logo; undo render would change: {affected}")
        store.undo(by_task["render"].id, "wrong logo on page 1: render again", actor=OPERATOR)
        self.undone_file = Path(unquote(urlsplit(published["uri"]).path))

    def _missing(self, runs) -> list[str]:
        missing = [f"run {r.id} {r.workflow} is {r.status}" for r in runs if r.status != S.SUCCEEDED]
        if not any(r.workflow == NIGHTLY and r.trigger == "schedule" for r in runs):
            missing.append("the scheduler created no nightly_sales run")
        if not any(r.workflow == MONTHLY and r.trigger == "connected" for r in runs):
            missing.append("the nightly run started no monthly_report (its connected workflow)")
        if self.approvals < 3:
            missing.append(f"{self.approvals} approvals, expected 3 (before and after the undo, and the connected run's)")
        if self.undone_file is None:
            missing.append("no undo")
        elif not self.removed:
            missing.append(f"the undo notice was not handled: {self.undone_file} is still published")
        return missing

    _say = staticmethod(say)
