"""Runs: trigger (with max_active_runs queueing) and cancel. Queued runs start when a slot frees, in
the transaction that frees it (`Unit.flush`)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import peewee as pw

from flow45 import states as S
from flow45 import wire
from flow45.clock import to_utc
from flow45.db import atomic
from flow45.errors import RunExists
from flow45.models import Run
from flow45.run_keys import check_key
from flow45.store import rules
from flow45.store.deploy import find_workflow
from flow45.store.newrun import check_open, has_slot, insert_run, refuse_or_queue, validate_params
from flow45.store.slots import awaited
from flow45.store.specs import current_spec
from flow45.views import Triggered
from flow45.store.unit import Unit, lock_workflow, lock_workflow_for_a_run


def trigger(
    team: str, workflow: str, params: Any = None, *, actor: str, now: dt.datetime | None = None,
    trigger_kind: str = "manual", logical_time: dt.datetime | None = None, priority: int | None = None,
    key: str | None = None,
) -> int:
    """Create a run of the workflow's current version (see `trigger_run`); its id."""
    return trigger_run(team, workflow, params, actor=actor, now=now, trigger_kind=trigger_kind,
                       logical_time=logical_time, priority=priority, key=key).run


def trigger_run(
    team: str, workflow: str, params: Any = None, *, actor: str, now: dt.datetime | None = None,
    trigger_kind: str = "manual", logical_time: dt.datetime | None = None, priority: int | None = None,
    key: str | None = None,
) -> Triggered:
    """Create a run of the workflow's current version; it waits as `queued` when no slot is free.
    `priority`: an urgent run, each of its tasks' priority raised to at least this. `key`: the caller's
    name for the run (flow45.run_keys); a key the workflow has a run for answers that run, unchanged,
    when the params and logical time are the same, and is refused when they are not."""
    at = to_utc(now)
    if key is not None:
        check_key(key)
    with atomic():
        seen = find_workflow(team, workflow)
        # Keyed triggers of one workflow take turns: the second must see the first's run.
        row = lock_workflow(seen.id) if key is not None else lock_workflow_for_a_run(seen)
        spec = current_spec(row)
        clean_params = validate_params(spec, params)
        logical = to_utc(logical_time) if logical_time else None
        if key is not None and (keyed := _run_for_key(row.id, key)) is not None:
            _check_same_request(keyed, f"{team}/{workflow}", key, clean_params, logical)
            return Triggered(keyed.id, keyed.status, existing=True)
        queue, over = refuse_or_queue(row, team, workflow), None
        if not queue and not has_slot(row.id, spec):
            over = awaited(row.id, logical or at, None)  # a running run would wait for it: it goes past the limit
            queue = over is None
        status = S.QUEUED if queue else S.RUNNING
        check_open(team, len(spec.workflow.tasks))
        if logical is not None:
            _refuse_taken(row.id, team, workflow, logical)
        try:
            run_id = insert_run(spec, row.id, clean_params, status, at, trigger_kind=trigger_kind, triggered_by=actor,
                                logical_time=logical, priority=priority, key=key)
        except pw.IntegrityError as exc:
            if logical is None or "logical_time" not in str(exc):
                raise
            raise RunExists(f"{team}/{workflow} has a run for {_shown(logical)} already (made just now)") from None
        unit = Unit(at)  # the trigger's event goes with the run's first moves, in their round trip
        rules.record(unit.changes, team, "trigger", actor, run=run_id, to_state=status,
                     detail={"workflow": workflow, "version": spec.number, "trigger": trigger_kind,
                             **({"priority": priority} if priority is not None else {}),
                             **({"over_max_active_runs": over} if over is not None else {}),
                             **({"key": key} if key is not None else {})})
        if status == S.RUNNING:
            unit.start_new(run_id, spec, actor)
        unit.flush()
        return Triggered(run_id, status)


def _run_for_key(workflow_id: int, key: str) -> Run | None:
    return (Run.select(Run.id, Run.status, Run.params, Run.logical_time)
            .where((Run.workflow == workflow_id) & (Run.key == key)).first())


def _check_same_request(keyed: Run, name: str, key: str, params: dict, logical: dt.datetime | None) -> None:
    """A key names one run: asked again for something else, the caller has mixed up two of its own."""
    differ = []
    if json.loads(wire.dumps(params)) != keyed.params:
        differ.append(f"params {wire.dumps(keyed.params)}, not {wire.dumps(params)}")
    if logical != keyed.logical_time:
        was = _shown(keyed.logical_time) if keyed.logical_time else "none"
        differ.append(f"logical time {was}, not {_shown(logical) if logical else 'none'}")
    if differ:
        raise RunExists(f"{name} has run {keyed.id} ({keyed.status}) for key {key!r} already, triggered with "
                        f"{' and '.join(differ)}: a key names one run; give another key for another run",
                        run=keyed.id)


def _refuse_taken(workflow_id: int, team: str, workflow: str, logical: dt.datetime) -> None:
    """A workflow has one run per logical time: a second trigger for it is refused, naming the first."""
    found = Run.select(Run.id, Run.status).where((Run.workflow == workflow_id) & (Run.logical_time == logical)).first()
    if found is not None:
        raise RunExists(f"{team}/{workflow} has a run for {_shown(logical)} already: run {found.id} ({found.status}); "
                        f"undo its tasks to run it again", run=found.id)


def _shown(logical: dt.datetime) -> str:
    return f"{logical:%Y-%m-%d %H:%M:%S}Z"


def cancel_run(
    run_id: int, *, actor: str, reason: str | None = None, now: dt.datetime | None = None, team: str | None = None
) -> None:
    """Cancel every unfinished instance; running attempts lose their token. The slot a running run
    held goes to the oldest queued run."""
    with atomic():
        unit = Unit(to_utc(now))
        unit.lock_runs([run_id], teams=[team])
        run = unit.run(run_id, team)
        rules.cancel_run(unit.changes, run, unit.by_run[run.id], actor, reason)
        unit.flush()
