"""Connected runs: when a run reaches a final state, each workflow connected to it (`on:`, kept in the
`connection` table by deploy) gets a run in the same transaction, its params taken from the run's
outputs. Called by the writer (`Unit.flush`) with the unit that moved the run; and what an undo of
the upstream run shows and may cancel."""

from __future__ import annotations

from typing import Any

from flow45 import states as S
from flow45.config_connect import source_parts
from flow45.db import dialect
from flow45.errors import IllegalTransition, InvalidParams, LimitReached
from flow45.models import Attempt, Run, Workflow, WorkflowVersion
from flow45.store import rules
from flow45.store.newrun import check_open, has_slot, insert_run, refuse_or_queue, validate_params
from flow45.store.specs import version_spec
from flow45.views import ConnectedRun

KIND = "connected"

# The connections from the teams whose runs finished (a team has few), by the index on the team; a
# prepared statement, not peewee's SQL built again for every batch that finishes a run.
_CONNECTIONS = ('SELECT upstream_team, upstream_workflow, state, workflow_id FROM "connection" '
                "WHERE upstream_team {} ORDER BY workflow_id")


def start_connected(unit, reached: list[tuple]) -> None:
    """For each (run, state, actor) that reached a final state: start the runs connected to it.
    The connections of all of them are read at once (a batch finishes many runs; few have any)."""
    if not reached:
        return
    teams = {run.team for run, _state, _actor in reached}
    workflows = {unit.spec(run.id).workflow_name for run, _state, _actor in reached}
    connected: dict[tuple[str, str, str], list[int]] = {}
    for team, workflow, state, workflow_id in dialect().select_in(_CONNECTIONS, sorted(teams), "varchar[]").fetchall():
        if workflow in workflows:
            connected.setdefault((team, workflow, state), []).append(workflow_id)
    for run, state, actor in reached:
        spec = unit.spec(run.id)
        for workflow_id in connected.get((run.team, spec.workflow_name, state), ()):
            _start_one(unit, run, spec, state, actor, workflow_id)


def _start_one(unit, run, spec, state: str, actor: str, workflow_id: int) -> None:
    ch = unit.changes
    workflow = dialect().for_update(Workflow.select().where(Workflow.id == workflow_id)).get()
    version = WorkflowVersion.get(
        (WorkflowVersion.workflow == workflow) & (WorkflowVersion.version == workflow.current_version))
    down = version_spec(version.id)
    upstream = f"{run.team}/{spec.workflow_name}"
    about = {"team": workflow.team, "workflow": workflow.name}
    try:
        if workflow.team != run.team and workflow.team not in spec.workflow.export:
            raise InvalidParams(f"{upstream} version {spec.number} is not exported to team {workflow.team}")
        params = validate_params(down, _params(unit, run, down.workflow.on.params))
        paused = refuse_or_queue(workflow, workflow.team, workflow.name)  # as a trigger: queued, or refused
        check_open(workflow.team, len(down.workflow.tasks))
    except (InvalidParams, IllegalTransition, LimitReached) as exc:  # said on both sides (deploy checked the
        # params; an older upstream version may differ; the connected workflow may be paused refusing
        # triggers, or retired; its team may have as many runs open as it may)
        rules.record(ch, run.team, "connect_refused", actor, run=run.id, detail={**about, "error": str(exc)})
        rules.record(ch, workflow.team, "connect_refused", actor,
                     detail={"workflow": workflow.name, "upstream": {"team": run.team, "workflow": spec.workflow_name,
                                                                     "run": run.id}, "error": str(exc)})
        return
    status = S.QUEUED if paused or not has_slot(workflow.id, down) else S.RUNNING
    new_id = insert_run(down, workflow.id, params, status, unit.at, trigger_kind=KIND,
                        triggered_by=f"run {run.id} of {upstream}", upstream_run=run.id)
    rules.record(ch, workflow.team, "trigger", actor, run=new_id, to_state=status, detail={
        "workflow": workflow.name, "version": down.number, "trigger": KIND,
        "upstream": {"team": run.team, "workflow": spec.workflow_name, "run": run.id, "state": state}})
    rules.record(ch, run.team, "connect", actor, run=run.id, detail={**about, "run": new_id, "status": status})
    if status == S.RUNNING:
        unit.start_new(new_id, down, actor)


def _params(unit, run, mapping: dict[str, str]) -> dict[str, Any]:
    """Each params field from the upstream run's outputs; null where the task did not succeed."""
    instances = unit.by_run[run.id]
    wanted = {instances[task].id for task, _ in map(source_parts, mapping.values())
              if task in instances and instances[task].state == S.SUCCEEDED}
    outputs = {}
    if wanted:
        rows = Attempt.select(Attempt.instance, Attempt.output).where(
            Attempt.instance.in_(sorted(wanted)) & (Attempt.status == "succeeded")
            & (Attempt.archived == False))  # noqa: E712
        outputs = {a.instance_id: a.output for a in rows}
    params = {}
    for name, source in mapping.items():
        task, field = source_parts(source)
        output = outputs.get(instances[task].id) if task in instances else None
        params[name] = output.get(field) if field and isinstance(output, dict) else (None if field else output)
    return {k: v for k, v in params.items() if v is not None}


def connected_runs(run_id: int, team: str | None = None) -> list[ConnectedRun]:
    """The runs this run started, oldest first; `cancel`: unfinished and of the operator's `team` (None: an
    administrator's, any team), so `undo --cancel-connected` cancels it. Another team's run, connected to an
    export of this one, is its own operators' to stop."""
    rows = (Run.select(Run.id, Run.team, Run.status, Workflow.name).join(Workflow)
            .where(Run.upstream_run == run_id).order_by(Run.id))
    return [ConnectedRun(run=r.id, team=r.team, workflow=r.workflow.name, status=r.status,
                         cancel=r.status not in S.FINISHED_RUN and team in (None, r.team)) for r in rows]


def cancel_connected(unit, connected: list[ConnectedRun], actor: str, reason: str) -> None:
    """Cancel the unfinished connected runs with the undo, in its transaction."""
    ids = [c.run for c in connected if c.cancel]
    unit.lock_runs(ids)
    for run_id in sorted(ids):
        run = unit.runs[run_id]
        if run.status not in S.FINISHED_RUN:  # looked at again under the lock
            rules.cancel_run(unit.changes, run, unit.by_run[run_id], actor, reason)
