"""Operators -> Flow45: the changes an operator asks for, each answered with a Reply."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter, field_validator

from flow45.config_human import USER_NAME
from flow45.messages.base import UtcTime, _Message, _types
from flow45.names import NAME
from flow45.run_keys import PATTERN as KEY_PATTERN
from flow45.run_keys import key_problem


# ---- operators -> Flow45 (exchange flow45.in.TEAM, RPC) --------------------------------------

class Deploy(_Message):
    """Deploy YAML files of the sender's own team. Reply: what changed, or every validation problem."""

    type: Literal["deploy"]
    files: dict[str, str] = Field(min_length=1, description="file name -> YAML text")
    prune: bool = Field(False, description="retire the team's deployed workflows that these files leave out")
    dry_run: bool = Field(False, description="answer what the deploy would do (versions, changes, refusals), "
                                             "keep nothing")


class Validate(_Message):
    type: Literal["validate"]
    files: dict[str, str] = Field(min_length=1)


class Trigger(_Message):
    type: Literal["trigger"]
    workflow: str
    params: dict[str, Any] | None = None
    logical_time: UtcTime | None = Field(None, description="the run's logical time, e.g. 2026-03-01T06:00:00Z")
    priority: int | None = Field(None, ge=0, le=9, description=(
        "an urgent run: each of its tasks' priority raised to at least this (0-9), so its offers go ahead in their "
        "queues"))
    key: str | None = Field(None, json_schema_extra={"pattern": KEY_PATTERN}, description=(
        "the caller's name for the run (an order number): the workflow has one run per key, and a trigger sent "
        "again with it is answered with that run (`existing`), when its params and logical time are the same"))

    @field_validator("key")
    @classmethod
    def _writable_key(cls, key: str | None) -> str | None:
        if key is not None and (problem := key_problem(key)):
            raise ValueError(problem)
        return key


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
    start: UtcTime = Field(description="the first logical time to cover (UTC)")
    end: UtcTime = Field(description="the last logical time to cover (UTC)")
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
    """Take a human task, or give it to `user`: others see who has it. Taking it from someone else needs a
    `reason`."""

    type: Literal["take"]
    instance: int
    reason: str | None = Field(None, max_length=2000)
    user: str | None = Field(None, pattern=USER_NAME, description="give it to this operator user (who must be "
                                                                      "allowed to decide it too) instead of taking it")


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


class Note(_Message):
    """A note on a run, or on one of its tasks: what the sender noticed or decided, kept in its ledger
    (a `note` event)."""

    type: Literal["note"]
    run: int
    text: str = Field(min_length=1, max_length=2000)
    task: str | None = Field(None, pattern=NAME, description="a note on this task's instance of the run")


class Status(_Message):
    """A run with its instances, or the team's newest runs."""

    type: Literal["status"]
    run: int | None = None
    limit: int = Field(20, ge=1, le=500)


OperatorMessage = Annotated[
    Union[Deploy, Validate, Trigger, Undo, OperatorSkip, Retry, Hold, Release, Cancel, OperatorSubmit, Take, HandBack,
          SetOutput, Backfill, Pause, Resume, Note, Status],
    Field(discriminator="type"),
]


@functools.cache
def operator_messages() -> TypeAdapter:
    """Built on first use, as worker_messages is."""
    return TypeAdapter(OperatorMessage)


OPERATOR_TYPES = _types(OperatorMessage)
