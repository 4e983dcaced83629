"""Flow45 <-> workers: offers and undo notices out; claims, progress, submits, fails, skips and parks in;
and callbacks from anyone holding a parked attempt's key."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, field_validator

from flow45.checkpoints import CHECKPOINT_MAX, checkpoint_problem
from flow45.logs import LOG_TAIL_MAX, LOG_URL_MAX, tail_problem, url_problem
from flow45.messages.base import UtcTime, _Message, _types
from flow45.names import NAME
from flow45.settings import current_settings


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


class Offer(_AboutAttempt):
    """On queue flow45.tasks.TEAM.FUNCTION: an attempt is open for claiming."""

    token: str = Field(description="fencing token: every message about this attempt carries it")
    inputs: dict[str, Any] = Field(description="parameter -> upstream output, or null if that upstream was skipped")
    params: dict[str, Any]
    lease_seconds: float
    human: bool
    priority: int
    logical_time: UtcTime | None = Field(
        None,
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
    checkpoint: Any = Field(
        None, description=f"where the work got to, any JSON value up to {CHECKPOINT_MAX} bytes (and the output cap), "
                          "nothing that looks like a secret: kept with the attempt, and given to the instance's next "
                          "attempt (a retry, or after an expired lease) in its claim's answer so that it can resume; "
                          "null leaves the last one. An undo starts the instance afresh, without it")

    @field_validator("checkpoint")
    @classmethod
    def _keepable_checkpoint(cls, checkpoint: Any) -> Any:
        if checkpoint is not None and (problem := checkpoint_problem(checkpoint, current_settings().output_max_bytes)):
            raise ValueError(f"checkpoint {problem}")
        return checkpoint


MAX_NEXT = 64  # functions a worker may name in `next`


class Submit(_Logged):
    type: Literal["submit"]
    output: Any = Field(description="validated against the task's output type")
    next: list[Annotated[str, Field(pattern=NAME)]] = Field(
        default_factory=list, max_length=MAX_NEXT,
        description="functions this worker will run next in the slot this attempt frees: a downstream instance "
                    "of the same run that this submit makes available, of one of these functions, is claimed for "
                    "the worker at once and comes back in the reply's `next` instead of being offered")


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


@functools.cache
def worker_messages() -> TypeAdapter:
    """The parser of a worker message, built on first use: a process that parses none (a command,
    the dashboard) does not spend its start building the schemas."""
    return TypeAdapter(WorkerMessage)


@functools.cache
def callback_messages() -> TypeAdapter:
    """Built on first use, as worker_messages is."""
    return TypeAdapter(CallbackMessage)


WORKER_TYPES = _types(WorkerMessage)
CALLBACK_TYPES = _types(CallbackMessage)
