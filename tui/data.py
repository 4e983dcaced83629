"""What the dashboard works out from what it reads. Every read goes through the operator's client
(`flow45.client.Client`, on `app.client`), so the dashboard is the same on the database and through
the broker; nothing here queries or writes the store.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flow45.client import Client, RunFilter
from flow45.store.specs import VersionSpec
from flow45.views import EventView, InstanceView, RunView

PAGE = 100  # runs read per page: the runs screen never loads more than it shows
MANY = 25  # more changed instances of a run than this in one tick: read the whole run once instead
SMALL_RUN = 20  # a run of at most this many instances is read whole: one read instead of one per change

__all__ = ["MANY", "PAGE", "SMALL_RUN", "Inputs", "RunFilter", "changed_instances", "changed_runs", "current_output",
           "instance_inputs", "teams_and_workflows"]


def teams_and_workflows(client: Client) -> dict[str, list[str]]:
    found: dict[str, list[str]] = {}
    for view in client.workflows():
        found.setdefault(view.team, []).append(view.name)
    return found


def current_output(view: InstanceView) -> Any:
    """The output of the instance's current (not archived) succeeded attempt, if any."""
    for attempt in reversed(view.attempts):
        if attempt.status == "succeeded" and not attempt.archived:
            return attempt.output
    return None


@dataclasses.dataclass(frozen=True)
class Inputs:
    """What an instance gets: each parameter's upstream task, its state and its current output."""

    params: Any
    by_param: dict[str, tuple[str, str, Any]]  # param -> (upstream task, its state, its output or None)
    after: dict[str, str]  # ordering-only upstream task -> its state
    ids: dict[str, int] = dataclasses.field(default_factory=dict)  # upstream task -> its instance


def instance_inputs(client: Client, view: InstanceView, spec: VersionSpec, run_params: Any,
                    ids: dict[str, int] | None = None) -> Inputs:
    """`ids`: the upstream instances, when known (an instance's upstream never changes)."""
    task = spec.task(view.task)
    if ids is None:
        ids = client.instance_ids(view.run, view.upstream)
    upstream = {name: client.instance(ids[name]) for name in view.upstream if name in ids}
    by_param = {
        param: (up, upstream[up].state, current_output(upstream[up]))
        for param, up in task.inputs.items() if up in upstream
    }
    after = {name: upstream[name].state for name in task.after if name in upstream}
    return Inputs(run_params, by_param, after, ids)


def changed_runs(client: Client, where: RunFilter, loaded: frozenset[int],
                 events: list[EventView]) -> tuple[list[RunView], dict[str, int] | None] | None:
    """What a list of runs under `where`, showing the runs `loaded`, reads when these events come: the
    new runs that match (at most a page) and the loaded ones the events touched, each in one read, and
    the counts per status when a run's status moved (else None: they stand); None when no event is
    about a run."""
    touched = {e.run for e in events if e.run is not None}
    if not touched:
        return None
    newest = max(loaded, default=0)
    new = sorted((run for run in touched if run > newest), reverse=True)[:PAGE]
    known = sorted(touched & loaded, reverse=True)  # updated whatever the filter says of them now
    every = RunFilter(team=where.team)
    if where == every:  # no filter: new and known runs in one read
        rows = client.runs(every, ids=new + known, limit=len(new) + len(known)) if new or known else []
    else:
        rows = client.runs(where, ids=new, limit=len(new)) if new else []
        rows.extend(client.runs(every, ids=known, limit=len(known)) if known else [])
    moved = any(e.instance is None and e.to_state is not None and e.to_state != e.from_state for e in events)
    return rows, client.status_counts(where) if moved else None


def changed_instances(client: Client, run_id: int, events: list[EventView],
                      size: int = 0) -> tuple[RunView | None, list[InstanceView]] | None:
    """What a run's page (of `size` instances) reads when these events come: the run's row and the
    instances they changed, or the whole run in one read when it is small or many changed; None when
    none is about the run."""
    mine = [e for e in events if e.run == run_id]
    if not mine:
        return None
    changed = sorted({e.instance for e in mine if e.instance is not None})
    noted = any(e.kind == "note" for e in mine)  # the run's row alone has no notes
    if noted or (changed and (size <= SMALL_RUN or len(changed) > MANY)):
        run = client.run(run_id)
        return dataclasses.replace(run, instances=[]), run.instances
    return client.run_row(run_id), [client.instance(i) for i in changed]
