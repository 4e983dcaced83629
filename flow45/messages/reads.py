"""Operators -> Flow45: reads, answered off the workers' path."""

from __future__ import annotations

import functools
from typing import Annotated, Any, Literal, Union

from pydantic import Field, TypeAdapter

from flow45 import states as S
from flow45.messages.base import UtcTime, _Message, _types
from flow45.wire import INT64_MAX, INT64_MIN


# ---- operators -> Flow45: reads (exchange flow45.read, RPC) -----------------------------------
# Answered for the sender's own team, off the workers' path; another team's id is `not_found` in the
# words a missing id gets. Lists are pages of at most MAX_PAGE.

MAX_PAGE = 500
# Ids and versions in the store are 64-bit: a larger number among a read's bounds is refused as out
# of range (SQLite's driver fails on it), as the command line refuses it.
StoreId = Annotated[int, Field(le=INT64_MAX)]  # each field says its least


class WhoAmI(_Message):
    """The sender's broker user and the team it is an operator of."""

    type: Literal["whoami"]


class ReadWorkflows(_Message):
    """The team's deployed workflows, current versions."""

    type: Literal["workflows"]


class _ChoosingRuns(_Message):
    """What `runs` and `run_instances` choose a page of runs by."""

    type: str
    workflow: str | None = Field(None, max_length=200)
    status: Literal["queued", "running", "succeeded", "failed", "cancelled"] | None = None
    text: str = Field("", max_length=200, description="matched as the dashboard's search is; `#12` is run 12")
    before: StoreId | None = Field(None, ge=1,
                                   description="only runs with a smaller id: the last id of the page before")
    limit: int = Field(50, ge=1, le=MAX_PAGE)
    params: dict[str, Any] | None = Field(None, description="only runs whose params have each of these keys with that value")
    since: UtcTime | None = Field(None, description="only runs triggered at or after this UTC time")
    until: UtcTime | None = Field(None, description="only runs triggered before this UTC time")
    version: StoreId | None = Field(None, ge=1, description="with `workflow`: only runs following this version of it")
    key: str | None = Field(None, max_length=200, description="only the run of each workflow triggered with this key")
    ids: list[Annotated[int, Field(ge=INT64_MIN, le=INT64_MAX)]] | None = Field(None, max_length=MAX_PAGE,
                                  description="only these runs: what a live list reads again when events touch them")


class ReadRuns(_ChoosingRuns):
    """A page of the team's runs, newest first, with their counts (no instances)."""

    type: Literal["runs"]


class ReadRunInstances(_ChoosingRuns):
    """A page of the team's runs as `runs` chooses them, newest first, each with its id, its status and
    its instances of `task` in `state` (of any task, in any state, when not given): what a bulk action
    plans from, without reading each run whole."""

    type: Literal["run_instances"]
    task: str | None = Field(None, max_length=200, description="only the instances of this task")
    state: Literal[S.INSTANCE_STATES] | None = Field(None, description="only the instances in this state")


class ReadRun(_Message):
    """A run with its instances (and their attempts if asked); with `as_of` or `as_of_time`, the run
    as it was at that ledger event or time, rebuilt from the ledger (no attempts)."""

    type: Literal["run"]
    run: int
    attempts: bool = False
    as_of: StoreId | None = Field(None, ge=1, description="a ledger event id")
    as_of_time: UtcTime | None = Field(None, description="a UTC time, e.g. 2026-03-01T06:00:00Z")
    instances_from: int = Field(0, ge=0, description="leave out the run's first instances: as many as the answers "
                                                     "before gave, when they said `instances_more`")


class ReadStats(_Message):
    """Per-task p50/p95 duration and failure rate over the workflow's newest runs (`flow45 stats`)."""

    type: Literal["stats"]
    workflow: str = Field(max_length=200)
    runs: int = Field(50, ge=1, le=MAX_PAGE)


class ReadVersions(_Message):
    """A workflow's versions, newest first: who deployed each and when, its runs, what it changed
    (`flow45 versions`)."""

    type: Literal["versions"]
    workflow: str = Field(max_length=200)
    limit: int = Field(20, ge=1, le=MAX_PAGE)
    since: StoreId | None = Field(None, ge=1, description="also what changed from this version to the current one")


class ReadInstance(_Message):
    """A task instance with its attempts."""

    type: Literal["instance"]
    instance: int
    attempts_from: int = Field(0, ge=0, description="leave out the instance's first attempts: as many as the "
                                                    "answers before gave, when they said `attempts_more`")


class ReadEvents(_Message):
    """A page of the team's ledger, oldest first: events with an id above `after`; with `newest`,
    the newest `limit` events instead (with `before`, the newest below that id: the page before)."""

    type: Literal["events"]
    after: StoreId = Field(0, ge=0)
    run: int | None = None
    instance: int | None = None
    newest: bool = False
    before: StoreId | None = Field(None, ge=1, description="with `newest`: only events with a smaller id")
    since: UtcTime | None = Field(None, description="only events at or after this UTC time")
    until: UtcTime | None = Field(None, description="only events before this UTC time")
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
    tasks_from: int = Field(0, ge=0, le=INT64_MAX - MAX_PAGE,  # with limit, still a 64-bit number
                            description="leave out the inbox's first tasks: as many as the answers before gave, "
                                        "when they said `more` or were full")


class ReadSpec(_Message):
    """The workflow version a run follows (`run`), or a workflow's current one (`workflow`)."""

    type: Literal["spec"]
    run: int | None = None
    workflow: str | None = Field(None, max_length=200)


class ReadSchema(_Message):
    """`flow45 schema` for the team: messages, replies and the team's functions."""

    type: Literal["schema"]


OperatorRead = Annotated[
    Union[WhoAmI, ReadWorkflows, ReadRuns, ReadRunInstances, ReadRun, ReadStats, ReadVersions, ReadInstance, ReadEvents,
          ReadCounts,
          ReadInbox, ReadSpec, ReadSchema],
    Field(discriminator="type"),
]


@functools.cache
def operator_reads() -> TypeAdapter:
    """Built on first use, as worker_messages is."""
    return TypeAdapter(OperatorRead)


READ_TYPES = _types(OperatorRead)
