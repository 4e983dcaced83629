"""Connected workflows at deploy: each `on:` is checked against the upstream workflow as it will be
current (in the same deploy, or deployed), and each deployed upstream against the workflows
already connected to it; then the `connection` table is kept in line with the current versions."""

from __future__ import annotations

from dataclasses import dataclass

from flow45.config import BUILTIN_TYPES, FieldSpec, TeamConfig, TypeSpec, WorkflowSpec, cycle_text, find_cycle
from flow45.config_connect import ConnectSpec, source_parts
from flow45.models import Connection, Workflow, WorkflowVersion
from flow45.store.specs import parse_version


@dataclass
class Side:
    """A workflow as deploy sees it: its spec, the types it may use, and where it is written."""

    team: str
    name: str
    workflow: WorkflowSpec
    types: dict[str, TypeSpec]
    where: str  # a file (in this deploy) or "deployed version N"


def _deploying(teams: list[TeamConfig]) -> dict[tuple[str, str], Side]:
    return {
        (c.team, name): Side(c.team, name, wf, c.types, c.origins[f"workflows.{name}"])
        for c in teams for name, wf in c.workflows.items()
    }


def _deployed(team: str, name: str) -> Side | None:
    workflow = Workflow.get_or_none((Workflow.team == team) & (Workflow.name == name))
    if workflow is None:
        return None
    row = WorkflowVersion.get(
        (WorkflowVersion.workflow == workflow) & (WorkflowVersion.version == workflow.current_version))
    spec = parse_version(row)
    return Side(team, name, spec.workflow, spec.types.specs, f"deployed version {row.version}")


def _shape(spec: FieldSpec, types: dict[str, TypeSpec]) -> object:
    """What a value of this field looks like, constraints aside: equal shapes take the same JSON."""
    if spec.type == "list":
        return ("list", _shape(spec.items, types))
    if spec.type == "enum":
        return ("enum", tuple(sorted(spec.values)))
    if spec.type in BUILTIN_TYPES:
        return spec.type
    declared = types.get(spec.type)
    if declared is None:
        return ("unknown", spec.type)
    return ("struct", tuple(sorted((name, f.optional, _shape(f, types)) for name, f in declared.fields.items())))


def connection_problems(down: Side, up: Side) -> list[str]:
    """What is wrong with `down`'s `on:` against `up` as it would be current (without the file prefix)."""
    on: ConnectSpec = down.workflow.on
    path = f"workflows.{down.name}.on"
    problems: list[str] = []
    if up.team != down.team and down.team not in up.workflow.export:
        problems.append(
            f"{path}.workflow: {up.team}/{up.name} is not exported to team {down.team}: team {up.team} must add "
            f"`export: [{down.team}]` to workflow {up.name}"
        )
        return problems  # nothing more: its tasks and outputs are not the other team's to see
    params_type = down.types.get(down.workflow.params) if down.workflow.params else None
    if on.params and params_type is None:
        problems.append(f"{path}.params: {down.name} declares no params type to receive them (add `params: TYPE`)")
        return problems
    for field_name, source in on.params.items():
        where = f"{path}.params.{field_name}"
        target = params_type.fields.get(field_name)
        if target is None:
            problems.append(f"{where}: {down.workflow.params} has no field '{field_name}' "
                            f"(fields: {', '.join(params_type.fields)})")
            continue
        task_name, out_field = source_parts(source)
        task = up.workflow.tasks.get(task_name)
        if task is None:
            problems.append(f"{where}: {up.team}/{up.name} ({up.where}) has no task '{task_name}' "
                            f"(tasks: {', '.join(up.workflow.tasks)})")
            continue
        if task.output is None:
            problems.append(f"{where}: task '{task_name}' of {up.team}/{up.name} is a timer and has no output")
            continue
        if out_field is None:
            given, optional, described = FieldSpec(type=task.output), False, task.output
        else:
            output_type = up.types.get(task.output)
            given_spec = output_type.fields.get(out_field) if output_type else None
            if given_spec is None:
                fields = ", ".join(output_type.fields) if output_type else ""
                problems.append(f"{where}: output type {task.output} of task '{task_name}' of {up.team}/{up.name} "
                                f"has no field '{out_field}' (fields: {fields})")
                continue
            given, optional, described = given_spec, given_spec.optional, _describe(given_spec)
        if _shape(given, up.types) != _shape(target, down.types):
            problems.append(f"{where}: {source} of {up.team}/{up.name} is {described} but {down.workflow.params}."
                            f"{field_name} is {_describe(target)}")
        elif not target.optional and (optional or on.state != "succeeded"):
            why = "is optional" if optional else f"is null when task '{task_name}' did not succeed (state: {on.state})"
            problems.append(f"{where}: {source} {why}, so {down.workflow.params}.{field_name} must be optional")
    if params_type is not None:
        missing = [name for name, f in params_type.fields.items()
                   if not f.optional and f.default is None and name not in on.params]
        if missing:
            problems.append(f"{path}.params: {down.workflow.params} requires {', '.join(missing)}, "
                            "which the connection does not give (map them from the upstream's outputs)")
    return problems


def _describe(spec: FieldSpec) -> str:
    return f"a list of {_describe(spec.items)}" if spec.type == "list" else spec.type


def check_connections(teams: list[TeamConfig]) -> list[str]:
    """Every problem of the connections these configs declare or change, each naming its file."""
    deploying = _deploying(teams)
    problems: list[str] = []
    for (team, name), down in deploying.items():
        on = down.workflow.on
        if on is None:
            continue
        key = on.upstream
        if key == (team, name):
            problems.append(f"{down.where}: workflows.{name}.on.workflow: a workflow cannot be connected to itself")
            continue
        up = deploying.get(key) or _deployed(*key)
        if up is None:
            problems.append(f"{down.where}: workflows.{name}.on.workflow: workflow {on.workflow} is not deployed "
                            "(deploy it first, or in the same deploy)")
            continue
        problems += [f"{down.where}: {p}" for p in connection_problems(down, up)]
    problems += _cycle_problems(deploying)
    # A changed upstream must still give what the workflows connected to it (not in this deploy) take.
    for (team, name), up in deploying.items():
        query = (Connection.select(Connection, Workflow).join(Workflow)
                 .where((Connection.upstream_team == team) & (Connection.upstream_workflow == name)))
        for row in query:
            key = (row.workflow.team, row.workflow.name)
            if key in deploying:
                continue
            down = _deployed(*key)
            for problem in connection_problems(down, up):
                problems.append(f"{up.where}: workflows.{name}: {key[0]}/{key[1]} ({down.where}) is connected "
                                f"to it: {problem}")
    return problems


def keep_connection(workflow: Workflow, spec: WorkflowSpec) -> None:
    """The table follows the workflow's current version."""
    Connection.delete().where(Connection.workflow == workflow.id).execute()
    if spec.on is not None:
        team, name = spec.on.upstream
        Connection.create(workflow=workflow, upstream_team=team, upstream_workflow=name, state=spec.on.state)


def _cycle_problems(deploying: dict[tuple[str, str], Side]) -> list[str]:
    """Workflows connected in a ring would start each other for ever: refused, naming the ring."""
    edges: dict[str, list[str]] = {}
    for row in Connection.select(Connection, Workflow).join(Workflow):
        if (row.workflow.team, row.workflow.name) not in deploying:
            edges.setdefault(f"{row.upstream_team}/{row.upstream_workflow}", []).append(
                f"{row.workflow.team}/{row.workflow.name}")
    for (team, name), side in deploying.items():
        if side.workflow.on is not None and side.workflow.on.upstream != (team, name):
            edges.setdefault(side.workflow.on.workflow, []).append(f"{team}/{name}")
    cycle = find_cycle(edges)
    if cycle is None:
        return []
    mine = next((deploying[tuple(node.split("/"))] for node in cycle if tuple(node.split("/")) in deploying), None)
    where = f"{mine.where}: workflows.{mine.name}.on" if mine else "connections"
    return [f"{where}: connected workflows would start each other in a ring: {cycle_text(cycle)}"]
