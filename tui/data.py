"""What the dashboard works out from what it reads. Every read goes through the operator's client
(`flow45.client.Client`, on `app.client`), so the dashboard is the same on the database and through
the broker; nothing here queries or writes the store.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from flow45.client import Client, RunFilter
from flow45.store.specs import VersionSpec
from flow45.views import InstanceView

PAGE = 100  # runs read per page: the runs screen never loads more than it shows

__all__ = ["PAGE", "Inputs", "RunFilter", "current_output", "instance_inputs", "teams_and_workflows"]


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


def instance_inputs(client: Client, view: InstanceView, spec: VersionSpec, run_params: Any) -> Inputs:
    task = spec.task(view.task)
    ids = client.instance_ids(view.run, view.upstream)
    upstream = {name: client.instance(ids[name]) for name in view.upstream if name in ids}
    by_param = {
        param: (up, upstream[up].state, current_output(upstream[up]))
        for param, up in task.inputs.items() if up in upstream
    }
    after = {name: upstream[name].state for name in task.after if name in upstream}
    return Inputs(run_params, by_param, after)
