"""What each request is answered with: the Reply, and the result types `flow45 schema` documents."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal, Union

from pydantic import BaseModel, Field, create_model

from flow45.messages.base import _Message
from flow45.messages.operator import (
    Backfill, Cancel, Deploy, HandBack, Hold, Note, OperatorSkip, OperatorSubmit, Pause, Release, Resume, Retry,
    SetOutput, Status, Take, Trigger, Undo, Validate,
)
from flow45.messages.reads import (
    ReadCounts, ReadEvents, ReadInbox, ReadInstance, ReadRun, ReadRunInstances, ReadRuns, ReadSchema, ReadSpec,
    ReadStats, ReadVersions, ReadWorkflows, WhoAmI,
)
from flow45.messages.worker import CallbackFail, CallbackSubmit, Claim, Fail, Park, Progress, Skip, Submit
from flow45.views import (
    BackfillPlan, DeployReport, EventView, InstanceView, RunInstances, RunView, Triggered, UndoPlan, WorkerReply,
    WorkflowStats, WorkflowVersions, WorkflowView,
)


class Reply(_Message):
    """The answer on `reply_to`, with the request's `correlation_id`: ok with a result, or an error
    code (invalid_message, unauthorized, not_found, stale, illegal_transition, invalid_output,
    invalid_params, invalid_config, not_allowed, refused, unavailable, too_slow) and a message naming the problem."""

    ok: bool
    code: str | None = None
    error: str | None = None
    result: Any = None


# ---- replies: what each request is answered with (for `flow45 schema`) ---------------------


class Refused(_Message):
    """A Reply saying no: `code` (see Reply) and `error`, naming the problem."""

    ok: Literal[False]
    code: str
    error: str
    result: None = None


class InstanceState(_Message):
    instance: int
    state: str


class RunState(_Message):
    run: int
    status: str


class ValidatedTeam(_Message):
    team: str
    workflows: list[str]
    types: list[str]


class Validated(_Message):
    teams: list[ValidatedTeam]


class RunList(_Message):
    runs: list[RunView]
    more: bool = Field(False, description="the page stopped short to keep the answer under the bridge's "
                                          "max_message_bytes: ask again from its last item")


class RunInstancesList(_Message):
    runs: list[RunInstances]
    more: bool = Field(False, description="the page stopped short to keep the answer under the bridge's "
                                          "max_message_bytes: ask again from its last item")


class Identity(_Message):
    user: str
    team: str


class WorkflowList(_Message):
    workflows: list[WorkflowView]


class EventList(_Message):
    events: list[EventView]
    more: bool = Field(False, description="the page stopped short to keep the answer under the bridge's "
                                          "max_message_bytes: ask again from its last item")


class StatusCounts(_Message):
    counts: dict[str, int]


class InboxTask(_Message):
    instance: InstanceView
    run: RunView | None
    inputs: dict[str, Any] = Field(description="parameter -> the upstream output it receives (null: skipped)")
    who: str = Field(description="who may decide it, groups with their members")
    overdue: bool
    checked_at: dt.datetime | None = Field(
        None, description="the bridge's time (UTC) when it read the inbox: overdue, and due in/overdue by, are "
                          "measured from it")


class Paused(_Message):
    workflow: str
    paused: str | None = Field(description="what triggers do while paused (queue | refuse); null once resumed")


class Taken(_Message):
    instance: int
    taken_by: str | None
    previous: str | None = Field(description="who had it before (take), or null")


class Inbox(_Message):
    tasks: list[InboxTask]
    more: bool = Field(False, description="the page stopped short to keep the answer under the bridge's "
                                          "max_message_bytes: ask again from its last item")


class VersionDocument(_Message):
    id: int
    team: str
    workflow: str
    version: int
    document: dict[str, Any] = Field(description="the workflow and the types it uses, as deployed")


# The `result` of a Reply that says yes, by request.
RESULTS: dict[type[BaseModel], Any] = {
    Claim: WorkerReply, Progress: WorkerReply, Submit: WorkerReply, Fail: WorkerReply, Skip: WorkerReply,
    Park: WorkerReply, CallbackSubmit: InstanceState, CallbackFail: InstanceState,
    Deploy: DeployReport, Validate: Validated, Trigger: Triggered, Undo: UndoPlan, OperatorSkip: InstanceState,
    Retry: InstanceState, Hold: InstanceState, Release: InstanceState, Cancel: RunState, OperatorSubmit: InstanceState,
    Take: Taken, HandBack: Taken, Note: RunState,
    SetOutput: InstanceState, Backfill: BackfillPlan, Pause: Paused, Resume: Paused,
    Status: Union[RunView, RunList],
    WhoAmI: Identity, ReadWorkflows: WorkflowList, ReadRuns: RunList, ReadRunInstances: RunInstancesList,
    ReadRun: RunView, ReadStats: WorkflowStats,
    ReadVersions: WorkflowVersions,
    ReadInstance: InstanceView,
    ReadEvents: EventList, ReadCounts: StatusCounts, ReadInbox: Inbox, ReadSpec: VersionDocument,
    ReadSchema: dict[str, Any],
}


def reply_to(request: type[BaseModel]) -> Any:
    """The type of the Reply to `request`: ok with its result, or Refused."""
    answered = create_model(
        f"{request.__name__}Answered", __base__=_Message, __doc__=f"A Reply saying yes to {request.__name__}.",
        ok=(Literal[True], ...), code=(None, None), error=(None, None), result=(RESULTS[request], ...),
    )
    return Union[answered, Refused]
