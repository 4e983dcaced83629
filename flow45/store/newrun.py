"""Making a run: its params checked, its row and its instances inserted, and whether a slot is free.
Shared by `trigger` (flow45.store.runs) and connected runs started by the writer (flow45.store.connected)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

from peewee import fn
from pydantic import ValidationError

from flow45 import states as S
from flow45.db import generation
from flow45.errors import IllegalTransition, InvalidParams, LimitReached
from flow45.models import Run, TaskInstance
from flow45.outputs import find_secret, json_size
from flow45.settings import current_settings, open_limits
from flow45.store.bulk import insert_rows, insert_rows_later
from flow45.store.specs import VersionSpec, version_spec
from flow45.types import describe_errors


def validate_params(spec: VersionSpec, params: Any) -> dict:
    """The run's params as stored. Like outputs they are small and never secret: every claim of the
    run carries them, and the ledger keeps them."""
    name = f"{spec.team}/{spec.workflow_name}"
    params = {} if params is None else params
    if not isinstance(params, dict):
        raise InvalidParams(f"params for {name} must be a JSON object, got {type(params).__name__}")
    cap = current_settings().params_max_bytes
    try:
        size = json_size(params)
    except (TypeError, ValueError) as exc:
        raise InvalidParams(f"params for {name} are not JSON: {exc}") from exc
    if size > cap:
        raise InvalidParams(f"params for {name} are {size} bytes of JSON, over the cap of {cap}: params say "
                            "where the data is, never the data itself")
    if secret := find_secret(params, "params"):
        raise InvalidParams(f"params for {name}: refused, {secret}; params never carry secrets")
    if spec.workflow.params is None:
        if params:
            raise InvalidParams(f"{name} declares no params; got {', '.join(sorted(params))}")
        return {}
    try:
        return spec.types.validate(spec.workflow.params, params)
    except ValidationError as exc:
        raise InvalidParams(f"params for {name} ({spec.workflow.params}): {describe_errors(exc, 'params')}") from exc


def has_slot(workflow_id: int, spec: VersionSpec) -> bool:
    """Call with the workflow's row locked."""
    limit = spec.workflow.max_active_runs
    if limit is None:
        return True
    active = Run.select().where((Run.workflow == workflow_id) & (Run.status == S.RUNNING)).count()
    return active < limit


# Open runs and their instances counted per team (and database), with what was made since; a team far
# under its limits is not counted again for a while: the count reads each open run once.
_counted: dict[tuple[int, str], tuple[int, int, float]] = {}
RECOUNT_AFTER = 30.0  # seconds


def check_open(team: str, tasks: int, adding: int = 1) -> None:
    """LimitReached if `adding` runs more of `tasks` tasks each would take the team past its limit of
    runs queued or running, or of the task instances they hold: a team's runaway triggers, or its
    wide runs, fill the store all teams share. Counted afresh whenever the team may be near a limit;
    not exact under concurrent triggers: a few may pass it together."""
    (run_limit, instance_limit), key, now = open_limits(team), (generation(), team), time.monotonic()
    more_runs, more_instances = adding, adding * tasks
    known = _counted.get(key)
    if (known is not None and now - known[2] < RECOUNT_AFTER and known[0] + more_runs <= run_limit // 2
            and known[1] + more_instances <= instance_limit // 2):
        _counted[key] = (known[0] + more_runs, known[1] + more_instances, known[2])
        return
    open_runs, open_instances = _count_open(team)
    if open_runs + more_runs > run_limit:
        _counted.pop(key, None)
        runs = f"{open_runs:,} run" + ("" if open_runs == 1 else "s")
        raise LimitReached(f"team {team} has {runs} queued or running, and {_more(adding)} would pass its limit of "
                           f"{run_limit:,} (max_open_runs): let some finish, or cancel some, first")
    if open_instances + more_instances > instance_limit:
        _counted.pop(key, None)
        raise LimitReached(f"team {team} has {open_instances:,} task instances in runs queued or running, and "
                           f"{_more(adding)} of {tasks:,} task{'' if tasks == 1 else 's'} would pass its limit of "
                           f"{instance_limit:,} (max_open_instances): let some finish, or cancel some, first")
    if len(_counted) > 1024:
        _counted.clear()
    _counted[key] = (open_runs + more_runs, open_instances + more_instances, now)


def _more(adding: int) -> str:
    return f"{adding:,} more" if adding > 1 else "another"


def _count_open(team: str) -> tuple[int, int]:
    """The team's runs queued or running, and the task instances they hold (each run one per task of
    its version), from the (team, status) index and the runs' rows: at most max_open_runs of them."""
    by_version = (Run.select(Run.version, fn.COUNT(Run.id)).where((Run.team == team) & Run.status.in_(S.OPEN_RUN))
                  .group_by(Run.version).tuples())
    runs = instances = 0
    for version_id, count in by_version:
        runs += count
        instances += count * len(version_spec(version_id).workflow.tasks)
    return runs, instances


def insert_run(
    spec: VersionSpec, workflow_id: int, params: dict, status: str, at: dt.datetime, *, trigger_kind: str,
    triggered_by: str, logical_time: dt.datetime | None = None, upstream_run: int | None = None,
    priority: int | None = None, key: str | None = None,
) -> int:
    """The run and its pending instances; returns the run's id. The caller records the trigger and
    settles a running one."""
    (run_id,) = insert_rows(Run, [{
        "team": spec.team, "workflow": workflow_id, "version": spec.id, "status": status, "params": params,
        "logical_time": logical_time, "trigger": trigger_kind, "triggered_by": triggered_by[:128],
        "upstream_run": upstream_run, "key": key, "created_at": at,
        "started_at": at if status == S.RUNNING else None,
        "updated_at": at, "sla_due_at": at + dt.timedelta(seconds=spec.workflow.sla) if spec.workflow.sla else None,
    }], returning="id")  # the hot path's prepared INSERT: peewee built this SQL anew on every trigger
    insert_rows_later(TaskInstance, [
        {"run": run_id, "team": spec.team, "task": name, "function": task.function or "", "state": S.PENDING,
         "priority": max(task.priority, priority or 0), "human": task.human, "updated_at": at}
        for name, task in spec.workflow.tasks.items()
    ])  # read back under the run's lock, or committed: no round trip of its own
    return run_id


QUEUE, REFUSE = "queue", "refuse"  # what triggers of a paused workflow do (flow45.store.pause)


def refuse_or_queue(row, team: str, workflow: str) -> bool:
    """For a trigger, the workflow's row locked: True when the run must wait as queued (paused,
    triggers queue); refused when paused with triggers refused."""
    if row.retired_at is not None:
        raise IllegalTransition(f"workflow {team}/{workflow} is retired; deploy it again to bring it back")
    if row.paused_at is None:
        return False
    if row.paused_triggers == REFUSE:
        raise IllegalTransition(f"workflow {team}/{workflow} is paused and refuses triggers; resume it first")
    return True
