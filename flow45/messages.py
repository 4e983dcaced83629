"""The JSON messages between Flow45, workers and operators, as pydantic models.

Their JSON Schema (`flow45 schema`) is the contract for workers in any language. Every inbound
message is a JSON object with a `type`; its AMQP `message_id` property is its idempotency key, and
`reply_to` + `correlation_id` ask for a `Reply`.
"""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any, Literal, Union, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, field_validator

from flow45.logs import LOG_TAIL_MAX, LOG_URL_MAX, tail_problem, url_problem
from flow45.settings import current_settings


class _Message(BaseModel):
    # Strict: on the wire a number is never a string, nor a boolean an integer ("14" is no instance id).
    model_config = ConfigDict(extra="forbid", strict=True)


# ---- Flow45 -> workers ---------------------------------------------------------------------

class _AboutAttempt(_Message):
    instance: int
    run: int
    team: str
    workflow: str
    version: int
    task: str
    function: str
    attempt: int


UTC_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"


class Offer(_AboutAttempt):
    """On queue flow45.tasks.TEAM.FUNCTION: an attempt is open for claiming."""

    token: str = Field(description="fencing token: every message about this attempt carries it")
    inputs: dict[str, Any] = Field(description="parameter -> upstream output, or null if that upstream was skipped")
    params: dict[str, Any]
    lease_seconds: float
    human: bool
    priority: int
    logical_time: str | None = Field(
        None, pattern=UTC_TIME,
        description="the run's logical time (UTC): the schedule tick it works for (scheduled, backfilled, or given "
                    "to trigger); null for a run without one")


class UndoNotice(_AboutAttempt):
    """On queue flow45.tasks.TEAM.FUNCTION.undo: an output was undone; remove what it produced."""

    output: Any = Field(description="the archived output of the undone attempt")
    reason: str
    actor: str
    params: dict[str, Any]


# ---- workers -> Flow45 (exchange flow45.in.TEAM) --------------------------------------------

class _Attempt(_Message):
    instance: int
    token: str = Field(min_length=1, max_length=64)


class Claim(_Attempt):
    """Take the offered attempt. Reply: the lease, inputs and params, or `stale`."""

    type: Literal["claim"]
    worker: str = Field(min_length=1, max_length=128)


class _Logged(_Attempt):
    """A message that may say where the attempt's log is, kept with the attempt (flow45.logs)."""

    log_url: str | None = Field(
        None, max_length=LOG_URL_MAX, json_schema_extra={"pattern": r"^[Hh][Tt][Tt][Pp][Ss]?://[^\s]+$"},
        description="where this attempt's log is: an http(s) URL without credentials (no user, password or "
                    "secret-looking query parameter); shown to the team's operators")
    log_tail: str | None = Field(
        None, max_length=LOG_TAIL_MAX,
        description=f"the log's last lines: at most {LOG_TAIL_MAX} bytes of UTF-8 and never over the output cap, "
                    "no control characters but tab and line breaks, nothing that looks like a secret")

    @field_validator("log_url")
    @classmethod
    def _acceptable_url(cls, url: str | None) -> str | None:
        if url is not None and (problem := url_problem(url)):
            raise ValueError(f"log_url {problem}")
        return url

    @field_validator("log_tail")
    @classmethod
    def _acceptable_tail(cls, tail: str | None) -> str | None:
        if tail is not None and (problem := tail_problem(tail, current_settings().output_max_bytes)):
            raise ValueError(f"log_tail {problem}")
        return tail


class Progress(_Logged):
    """Renews the lease."""

    type: Literal["progress"]
    percent: float | None = Field(None, ge=0, le=100)
    message: str | None = Field(None, max_length=2000)


class Submit(_Logged):
    type: Literal["submit"]
    output: Any = Field(description="validated against the task's output type")


class Fail(_Logged):
    type: Literal["fail"]
    error: str = Field(max_length=2000)
    retryable: bool = True


class Skip(_Attempt):
    type: Literal["skip"]
    reason: str = Field(max_length=2000)


MAX_DEADLINE = 400 * 86400  # seconds; a callback nobody answers for longer than a year is lost anyway


class Park(_Attempt):
    """Park the running attempt under a callback key (in the reply's `callback_key`, 256 random bits),
    to be completed or failed later by whoever holds the key (`callback_submit`, `callback_fail`).
    The lease stops counting; past `deadline_seconds` (none: no deadline) the attempt fails as an
    expired lease does, counted against retries. The token still works until then."""

    type: Literal["park"]
    deadline_seconds: float | None = Field(None, gt=0, le=MAX_DEADLINE)


WorkerMessage = Annotated[Union[Claim, Progress, Submit, Fail, Skip, Park], Field(discriminator="type")]


# ---- anyone holding a callback key -> Flow45 (exchange flow45.in.TEAM; workers and operators) ----

class _Callback(_Message):
    key: str = Field(min_length=1, max_length=64, description="the callback key a parked attempt got; a secret")


class CallbackSubmit(_Callback):
    """Complete the parked attempt with its output. The ledger names the sender. A key that is
    unknown, ended or another team's is answered `not_found`, in the same words."""

    type: Literal["callback_submit"]
    output: Any = Field(description="validated against the task's output type")


class CallbackFail(_Callback):
    """Fail the parked attempt: retried after its delay while retries are left (unless not retryable)."""

    type: Literal["callback_fail"]
    error: str = Field(min_length=1, max_length=2000)
    retryable: bool = True


CallbackMessage = Annotated[Union[CallbackSubmit, CallbackFail], Field(discriminator="type")]


# ---- operators -> Flow45 (exchange flow45.in.TEAM, RPC) --------------------------------------

class Deploy(_Message):
    """Deploy YAML files of the sender's own team. Reply: what changed, or every validation problem."""

    type: Literal["deploy"]
    files: dict[str, str] = Field(min_length=1, description="file name -> YAML text")
    prune: bool = Field(False, description="retire the team's deployed workflows that these files leave out")


class Validate(_Message):
    type: Literal["validate"]
    files: dict[str, str] = Field(min_length=1)


class Trigger(_Message):
    type: Literal["trigger"]
    workflow: str
    params: dict[str, Any] | None = None
    logical_time: str | None = Field(None, pattern=UTC_TIME, description="the run's logical time, e.g. 2026-03-01T06:00:00Z")


class Pause(_Message):
    """Pause a workflow: its schedule makes no runs; triggers meanwhile queue or are refused."""

    type: Literal["pause"]
    workflow: str
    triggers: Literal["queue", "refuse"] = Field("queue", description="what a trigger does while paused")
    reason: str | None = Field(None, max_length=2000)


class Resume(_Message):
    """Resume a paused workflow: its queued runs take the free slots; the schedule catches up by its policy."""

    type: Literal["resume"]
    workflow: str


class Backfill(_Message):
    """One run per schedule tick from `start` to `end` (both included); a dry run only lists them."""

    type: Literal["backfill"]
    workflow: str
    start: str = Field(pattern=UTC_TIME, description="the first logical time to cover (UTC)")
    end: str = Field(pattern=UTC_TIME, description="the last logical time to cover (UTC)")
    dry_run: bool = False


class Undo(_Message):
    type: Literal["undo"]
    instance: int
    reason: str = Field(min_length=1, max_length=2000)
    hold: bool = False
    dry_run: bool = False
    cancel_connected: bool = Field(False, description="also cancel the unfinished runs the run started (connected workflows)")


class OperatorSkip(_Message):
    type: Literal["skip"]
    instance: int
    reason: str = Field(min_length=1, max_length=2000)


class Retry(_Message):
    type: Literal["retry"]
    instance: int


class Hold(_Message):
    type: Literal["hold"]
    instance: int
    reason: str | None = None


class Release(_Message):
    type: Literal["release"]
    instance: int


class Cancel(_Message):
    type: Literal["cancel"]
    run: int
    reason: str | None = None


class OperatorSubmit(_Message):
    """The output of a human task, decided by the sender (the ledger names the broker user). Refused
    `not_allowed`, naming who may, when the sender is not among them, or while someone else has taken it."""

    type: Literal["submit"]
    instance: int
    output: Any = Field(description="validated against the task's output type")
    comment: str | None = Field(None, max_length=2000, description="why, kept in the attempt")


class Take(_Message):
    """Take a human task: others see who has it. Taking it from someone else needs a `reason`."""

    type: Literal["take"]
    instance: int
    reason: str | None = Field(None, max_length=2000)


class HandBack(_Message):
    """Let go of a human task the sender has taken."""

    type: Literal["hand_back"]
    instance: int


class SetOutput(_Message):
    """Set a worker task's output by hand ("mark success", typed): recorded as an attempt by the sender."""

    type: Literal["set_output"]
    instance: int
    output: Any = Field(description="validated against the task's output type, as a worker's output is")
    reason: str = Field(min_length=1, max_length=2000, description="kept with the attempt and in the ledger")


class Status(_Message):
    """A run with its instances, or the team's newest runs."""

    type: Literal["status"]
    run: int | None = None
    limit: int = Field(20, ge=1, le=500)


OperatorMessage = Annotated[
    Union[Deploy, Validate, Trigger, Undo, OperatorSkip, Retry, Hold, Release, Cancel, OperatorSubmit, Take, HandBack,
          SetOutput, Backfill, Pause, Resume, Status],
    Field(discriminator="type"),
]

# ---- operators -> Flow45: reads (exchange flow45.read, RPC) -----------------------------------
# Answered for the sender's own team, off the workers' path; another team's id is `not_found` in the
# words a missing id gets. Lists are pages of at most MAX_PAGE.

MAX_PAGE = 500


class WhoAmI(_Message):
    """The sender's broker user and the team it is an operator of."""

    type: Literal["whoami"]


class ReadWorkflows(_Message):
    """The team's deployed workflows, current versions."""

    type: Literal["workflows"]


class ReadRuns(_Message):
    """A page of the team's runs, newest first, with their counts (no instances)."""

    type: Literal["runs"]
    workflow: str | None = Field(None, max_length=200)
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    text: str = Field("", max_length=200, description="matched as the dashboard's search is; `#12` is run 12")
    before: int | None = Field(None, ge=1, description="only runs with a smaller id: the last id of the page before")
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    params: dict[str, Any] | None = Field(None, description="only runs whose params have each of these keys with that value")
    since: str | None = Field(None, pattern=UTC_TIME, description="only runs triggered at or after this UTC time")
    until: str | None = Field(None, pattern=UTC_TIME, description="only runs triggered before this UTC time")


class ReadRun(_Message):
    """A run with its instances (and their attempts if asked); with `as_of` or `as_of_time`, the run
    as it was at that ledger event or time, rebuilt from the ledger (no attempts)."""

    type: Literal["run"]
    run: int
    attempts: bool = False
    as_of: int | None = Field(None, ge=1, description="a ledger event id")
    as_of_time: str | None = Field(None, pattern=UTC_TIME, description="a UTC time, e.g. 2026-03-01T06:00:00Z")


class ReadStats(_Message):
    """Per-task p50/p95 duration and failure rate over the workflow's newest runs (`flow45 stats`)."""

    type: Literal["stats"]
    workflow: str = Field(max_length=200)
    runs: int = Field(50, ge=1, le=MAX_PAGE)


class ReadInstance(_Message):
    """A task instance with its attempts."""

    type: Literal["instance"]
    instance: int


class ReadEvents(_Message):
    """A page of the team's ledger, oldest first: events with an id above `after`; with `newest`,
    the newest `limit` events instead."""

    type: Literal["events"]
    after: int = Field(0, ge=0)
    run: int | None = None
    instance: int | None = None
    newest: bool = False
    limit: int = Field(200, ge=1, le=MAX_PAGE)


class ReadCounts(_Message):
    """The team's runs per status, under a workflow and a text as `runs` takes them."""

    type: Literal["counts"]
    workflow: str | None = Field(None, max_length=200)
    text: str = Field("", max_length=200)


class ReadInbox(_Message):
    """The team's available human tasks, overdue first, each with its run, the inputs it receives,
    who may decide it and whether it is overdue."""

    type: Literal["inbox"]
    show: Literal["all", "mine", "groups", "overdue"] = Field(
        "all", description="mine: taken by or naming the sender; groups: naming a group the sender is in")
    limit: int = Field(MAX_PAGE, ge=1, le=MAX_PAGE)


class ReadSpec(_Message):
    """The workflow version a run follows (`run`), or a workflow's current one (`workflow`)."""

    type: Literal["spec"]
    run: int | None = None
    workflow: str | None = Field(None, max_length=200)


class ReadSchema(_Message):
    """`flow45 schema` for the team: messages, replies and the team's functions."""

    type: Literal["schema"]


OperatorRead = Annotated[
    Union[WhoAmI, ReadWorkflows, ReadRuns, ReadRun, ReadStats, ReadInstance, ReadEvents, ReadCounts, ReadInbox,
          ReadSpec, ReadSchema],
    Field(discriminator="type"),
]

WORKER_MESSAGES = TypeAdapter(WorkerMessage)
CALLBACK_MESSAGES = TypeAdapter(CallbackMessage)
OPERATOR_MESSAGES = TypeAdapter(OperatorMessage)
OPERATOR_READS = TypeAdapter(OperatorRead)


def _types(message: Any) -> frozenset[str]:
    """The `type` values of a discriminated union of messages."""
    union = get_args(message)[0]
    return frozenset(get_args(model.model_fields["type"].annotation)[0] for model in get_args(union))


WORKER_TYPES = _types(WorkerMessage)
CALLBACK_TYPES = _types(CallbackMessage)
OPERATOR_TYPES = _types(OperatorMessage)
READ_TYPES = _types(OperatorRead)


class Reply(_Message):
    """The answer on `reply_to`, with the request's `correlation_id`: ok with a result, or an error
    code (invalid_message, unauthorized, not_found, stale, illegal_transition, invalid_output,
    invalid_params, invalid_config, not_allowed, refused, unavailable) and a message naming the problem."""

    ok: bool
    code: str | None = None
    error: str | None = None
    result: Any = None


# ---- replies: what each request is answered with (for `flow45 schema`) ---------------------

from pydantic import create_model  # noqa: E402  (kept with the reply models it builds)

from flow45.views import (  # noqa: E402
    BackfillPlan, DeployReport, EventView, InstanceView, RunView, UndoPlan, WorkerReply, WorkflowStats, WorkflowView,
)


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


class Identity(_Message):
    user: str
    team: str


class WorkflowList(_Message):
    workflows: list[WorkflowView]


class EventList(_Message):
    events: list[EventView]


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
    Deploy: DeployReport, Validate: Validated, Trigger: RunState, Undo: UndoPlan, OperatorSkip: InstanceState,
    Retry: InstanceState, Hold: InstanceState, Release: InstanceState, Cancel: RunState, OperatorSubmit: InstanceState,
    Take: Taken, HandBack: Taken,
    SetOutput: InstanceState, Backfill: BackfillPlan, Pause: Paused, Resume: Paused,
    Status: Union[RunView, RunList],
    WhoAmI: Identity, ReadWorkflows: WorkflowList, ReadRuns: RunList, ReadRun: RunView, ReadStats: WorkflowStats,
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
