"""The JSON messages between Flow45 and workers, as pydantic models (their JSON Schema is the contract)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Offer(_Message):
    """Flow45 -> workers, on queue flow45.tasks.TEAM.FUNCTION: an attempt is open for claiming."""

    instance: int
    run: int
    team: str
    workflow: str
    version: int
    task: str
    function: str
    attempt: int
    token: str = Field(description="fencing token: every message about this attempt carries it")
    inputs: dict[str, Any] = Field(description="parameter -> upstream output, or null if that upstream was skipped")
    params: dict[str, Any]
    lease_seconds: float
    human: bool
    priority: int


class UndoNotice(_Message):
    """Flow45 -> workers, on queue flow45.tasks.TEAM.FUNCTION.undo: an output was undone; remove what it produced."""

    instance: int
    run: int
    team: str
    workflow: str
    version: int
    task: str
    function: str
    attempt: int
    output: Any = Field(description="the archived output of the undone attempt")
    reason: str
    actor: str
    params: dict[str, Any]


class _WorkerMessage(_Message):
    message_id: str = Field(min_length=1, max_length=200, description="idempotency key: a repeat takes effect once")
    instance: int
    token: str


class Claim(_WorkerMessage):
    type: Literal["claim"] = "claim"
    worker: str = Field(min_length=1, max_length=128)


class Progress(_WorkerMessage):
    type: Literal["progress"] = "progress"
    percent: float | None = Field(None, ge=0, le=100)
    message: str | None = Field(None, max_length=2000)


class Submit(_WorkerMessage):
    type: Literal["submit"] = "submit"
    output: Any = Field(description="validated against the task's output type")


class Fail(_WorkerMessage):
    type: Literal["fail"] = "fail"
    error: str = Field(max_length=2000)
    retryable: bool = True


class Skip(_WorkerMessage):
    type: Literal["skip"] = "skip"
    reason: str = Field(max_length=2000)


class Reply(_Message):
    """The answer to an RPC: ok with a result, or an error code and a message naming the problem."""

    ok: bool
    code: str | None = None
    error: str | None = None
    result: dict[str, Any] | None = None


WORKER_MESSAGES = [Claim, Progress, Submit, Fail, Skip]
ALL_MESSAGES = [Offer, UndoNotice, *WORKER_MESSAGES, Reply]
