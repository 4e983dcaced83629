"""Connected workflows: a workflow started by another workflow's run reaching a state (`on:`), with
declared parts of that run's outputs as its params, and the teams allowed to connect to a workflow
(`export:`). What needs the deployed upstream is checked at deploy (flow45.store.connections); the
runs are started by the one writer (flow45.store.connected)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

UPSTREAM = r"^[a-z][a-z0-9_-]{0,62}/[a-z][a-z0-9_-]{0,62}$"
PARAM_FIELD = r"^[A-Za-z_][A-Za-z0-9_]{0,62}$"
SOURCE = r"^[a-z][a-z0-9_-]{0,62}(\.[A-Za-z_][A-Za-z0-9_]{0,62})?$"  # task, or task.output_field
REACHED = ("succeeded", "failed", "cancelled")


class ConnectSpec(BaseModel):
    """`on: {workflow: TEAM/NAME, state: succeeded, params: {field: task.output_field}}`."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    workflow: str = Field(pattern=UPSTREAM, description="TEAM/NAME of the upstream workflow")
    state: Literal["succeeded", "failed", "cancelled"] = Field(
        "succeeded", description="the upstream run's final state that starts a run of this workflow; a run "
                                 "undone and finished again starts another",
    )
    params: dict[Annotated[str, Field(pattern=PARAM_FIELD)], Annotated[str, Field(pattern=SOURCE)]] = Field(
        default_factory=dict,
        description="params field -> `task` (that task's whole output) or `task.field` (one field of it) of the "
                    "upstream run; checked at deploy against the upstream's output types and this workflow's "
                    "params type. A task that did not succeed gives null",
    )

    @property
    def upstream(self) -> tuple[str, str]:
        team, name = self.workflow.split("/")
        return team, name


Export = list[Annotated[str, Field(pattern=r"^[a-z][a-z0-9_-]{0,62}$")]]
EXPORT_DESCRIPTION = "other teams whose workflows may be connected to this one (`on: {workflow: THIS_TEAM/NAME}`)"


def source_parts(source: str) -> tuple[str, str | None]:
    task, _, field = source.partition(".")
    return task, field or None
