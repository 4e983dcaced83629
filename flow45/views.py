"""What leaves the store: plain frozen dataclasses, each with its JSON form."""

from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import types
import typing
from typing import Any

from flow45 import states as S
from flow45.clock import iso, parse_utc


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return iso(value)
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value):
        return value.to_json()
    return value


class View:
    def to_json(self) -> dict:
        return {name: getattr(self, name) if encode is None else encode(getattr(self, name))
                for name, encode in _encoders(type(self))}

    @classmethod
    def from_json(cls, data: dict):
        """The view back from its JSON form (as a read through the broker answers it)."""
        return cls(**{name: _revived(kind, data[name]) for name, kind in _fields(cls) if name in data})


@functools.cache
def _fields(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, declared type) of a view's fields, worked out once per class: a run of a thousand
    instances read through the broker would otherwise spend a second resolving annotations."""
    hints = typing.get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in dataclasses.fields(cls))


@functools.cache
def _encoders(cls: type) -> tuple[tuple[str, Any], ...]:
    """(name, how its value becomes JSON, or None when it already is) for each field of a view,
    chosen once per class from the declared types: the bridge answers reads of hundreds of events
    and runs, and walking every value to find out what it is was most of a read's cost."""
    return tuple((name, _encoder(kind)) for name, kind in _fields(cls))


_PLAIN = (str, int, float, bool, type(None))


def _encoder(kind: Any):
    options, views, item = _options(kind)
    if item is not None:
        if item in _PLAIN:
            return None
        inner = _encoder(item)
        return _jsonable if inner is None else (lambda value: None if value is None else [inner(v) for v in value])
    if all(o in _PLAIN for o in options):
        return None
    if dt.datetime in options and all(o in _PLAIN or o is dt.datetime for o in options):
        return _time
    if views and all(o in _PLAIN or o in views for o in options):
        return lambda value: None if value is None else value.to_json()
    return _jsonable  # Any, dicts and the rest: looked at value by value


def _time(value: Any) -> Any:
    """A datetime as `iso` writes it (the store's are naive UTC: the quick way)."""
    if isinstance(value, dt.datetime):
        return value.isoformat() + "Z" if value.tzinfo is None else iso(value)
    return value


@functools.cache
def _options(kind: Any) -> tuple[Any, tuple[Any, ...], Any]:
    """(the types a value of `kind` may be, whether it is a list, and of what)."""
    options = typing.get_args(kind) if typing.get_origin(kind) in (typing.Union, types.UnionType) else (kind,)
    item = typing.get_args(kind)[0] if typing.get_origin(kind) is list else None
    views = tuple(o for o in options if isinstance(o, type) and issubclass(o, View))
    return options, views, item


def _revived(kind: Any, value: Any) -> Any:
    """`value` from JSON as the declared `kind`: times and nested views made again, the rest as is."""
    if value is None:
        return None
    options, views, item = _options(kind)
    if dt.datetime in options and isinstance(value, str):
        return parse_utc(value)
    if item is not None:
        return [_revived(item, v) for v in value]
    if views and isinstance(value, dict):  # a view, or an optional one
        return views[0].from_json(value)
    return value


def _parse_times(cls, data: dict) -> dict:
    hints = {f.name: f.type for f in dataclasses.fields(cls)}
    out = dict(data)
    for name, kind in hints.items():
        if "datetime" in str(kind) and isinstance(out.get(name), str):
            out[name] = parse_utc(out[name])
    return out


@dataclasses.dataclass(frozen=True)
class WorkflowView(View):
    team: str
    name: str
    version: int
    description: str | None
    tasks: int
    schedule: str | None
    updated_at: dt.datetime
    paused: str | None = None  # paused: what triggers meanwhile do (queue | refuse); None when not paused
    # The schedule's next tick, not yet dealt with (UTC); in the past, no scheduler has made its run yet.
    # None: no schedule, or paused (its resume applies the catchup policy to the ticks it missed).
    next_run: dt.datetime | None = None
    schedule_ended: bool = False  # its schedule's `end` has passed: it makes no more runs
    last_run: int | None = None  # its latest run (by id), of any version; None: none yet
    last_run_status: str | None = None
    last_run_at: dt.datetime | None = None  # when that run was triggered

    def paused_text(self) -> str | None:
        """`paused, triggers queued` (or refused); None when it is not paused."""
        return None if self.paused is None else f"paused, triggers {'queued' if self.paused == 'queue' else 'refused'}"


@dataclasses.dataclass(frozen=True)
class InputLink(View):
    """Lineage: the upstream attempt whose output an attempt received for one parameter."""

    param: str
    task: str  # the upstream task
    instance: int
    attempt: int | None  # None: the upstream was skipped and passed null
    undone: bool = False  # that upstream attempt was later superseded by an undo

    def text(self) -> str:
        """'attempt 3 of extract (undone)', or 'null (extract skipped)'; the parameter added when it is
        not the task's name."""
        source = (f"attempt {self.attempt} of {self.task}" + (" (undone)" if self.undone else "")
                  if self.attempt is not None else f"null ({self.task} skipped)")
        return source if self.param == self.task else f"{source} as {self.param}"


@dataclasses.dataclass(frozen=True)
class OutputUse(View):
    """Lineage seen from upstream: a downstream attempt that received this attempt's output."""

    task: str
    instance: int
    attempt: int
    param: str
    archived: bool  # that attempt was superseded by an undo since

    def text(self) -> str:
        return f"attempt {self.attempt} of {self.task}" + (" (undone)" if self.archived else "")


@dataclasses.dataclass(frozen=True)
class AttemptView(View):
    number: int
    status: str
    worker: str | None
    claimed_at: dt.datetime
    finished_at: dt.datetime | None
    output: Any
    error: str | None
    archived: bool
    comment: str | None = None  # a human submit's comment
    lineage: list[InputLink] = dataclasses.field(default_factory=list)  # what it was built on
    used_by: list[OutputUse] = dataclasses.field(default_factory=list)  # downstream attempts built on it
    log_url: str | None = None  # where its log is, as its worker said
    log_tail: str | None = None  # or the log's last lines
    checkpoint: Any = None  # where it got to, as its worker last said (flow45.checkpoints)


@dataclasses.dataclass(frozen=True)
class InstanceView(View):
    id: int
    run: int
    team: str
    task: str
    function: str
    state: str
    attempt: int
    human: bool
    priority: int
    worker: str | None
    progress_pct: float | None
    progress_message: str | None
    lease_expires_at: dt.datetime | None
    not_before: dt.datetime | None
    upstream: list[str]
    updated_at: dt.datetime
    attempts: list[AttemptView] = dataclasses.field(default_factory=list)
    offered_at: dt.datetime | None = None  # the current attempt's offer
    started_at: dt.datetime | None = None  # its claim
    finished_at: dt.datetime | None = None  # its end
    error: str | None = None  # its error, if it failed
    parked: bool = False  # running, parked under a callback key (lease_expires_at: its deadline)
    timeout_at: dt.datetime | None = None  # running: when its task's timeout ends the attempt
    taken_by: str | None = None  # an available human task: who has taken it
    due_at: dt.datetime | None = None  # an available human task: when it is due
    overdue_at: dt.datetime | None = None  # an available human task: when the sweep applied its overdue outcome
    log_url: str | None = None  # its current attempt's log link
    log_tail: str | None = None  # its current attempt's log tail
    attempts_more: bool = False  # read through the bridge: more attempts follow (ask with attempts_from)
    notes: list[NoteView] = dataclasses.field(default_factory=list)  # operators' notes on it, oldest first
    skip_reason: str | None = None  # skipped: why, as its ledger says (a worker, an operator, its task's `when`)
    queued_for: str | None = None  # queued: what it waits for (a slot of its task's max_running)


@dataclasses.dataclass(frozen=True)
class NoteView(View):
    """An operator's note on a run, or on one of its tasks: what someone noticed or decided, kept in its ledger."""

    at: dt.datetime
    actor: str
    text: str
    event: int
    task: str | None = None  # a note on this task's instance; None: on the run

    def said(self, with_task: bool = True) -> str:
        """`note on extract by ann 2026-03-01 12:00:00: TEXT`; the task left out beside its own instance."""
        on = f" on {self.task}" if with_task and self.task else ""
        return f"note{on} by {self.actor} {self.at:%Y-%m-%d %H:%M:%S}: {self.text}"


@dataclasses.dataclass(frozen=True)
class Triggered(View):
    """What a trigger did: the run it made, or with a key already taken, the run that key names."""

    run: int
    status: str
    existing: bool = False  # triggered before with the same key: that run, unchanged

    def again(self, key: str | None) -> str:
        """` (triggered before with key K; nothing new started)` when the key named this run already."""
        return f" (triggered before with key {key}; nothing new started)" if self.existing else ""


@dataclasses.dataclass(frozen=True)
class RunView(View):
    id: int
    team: str
    workflow: str
    version: int
    status: str
    trigger: str
    triggered_by: str
    params: Any
    logical_time: dt.datetime | None
    created_at: dt.datetime
    started_at: dt.datetime | None
    finished_at: dt.datetime | None
    counts: dict[str, int]
    waiting_for: str | None = None
    instances: list[InstanceView] = dataclasses.field(default_factory=list)
    as_of: int | None = None  # rebuilt from the ledger up to this event (`flow45 show --as-of`); None: as it is now
    as_of_at: dt.datetime | None = None  # the time it was rebuilt at
    attempts_made: int = 0  # attempts offered over all its instances
    instances_more: bool = False  # read through the bridge: more instances follow (ask with instances_from)
    cancelled_by: str | None = None  # a cancelled run: who cancelled it (the scheduler, for its timeout)
    cancel_reason: str | None = None  # and the reason given
    notes: list[NoteView] = dataclasses.field(default_factory=list)  # operators' notes, oldest first
    current_version: int | None = None  # read alone: the workflow's version now, which later runs follow
    key: str | None = None  # the caller's name for it (trigger --key), one run per key of the workflow

    def newer_version(self) -> str:
        """` (current v4)` when the workflow has been deployed again since this run started; else empty."""
        newer = self.current_version is not None and self.current_version != self.version
        return f" (current v{self.current_version})" if newer else ""


@dataclasses.dataclass(frozen=True)
class InstanceBrief(View):
    """An instance as a bulk plan needs it, and no more."""

    id: int
    task: str
    state: str


@dataclasses.dataclass(frozen=True)
class RunInstances(View):
    """A run's id and status with those of its instances a read chose (of a task, in a state), in the
    run's order: what a bulk plan reads, a page of runs at a time, where each run whole was read."""

    id: int
    status: str
    instances: list[InstanceBrief]
    instances_more: bool = False  # read through the bridge: the run's chosen instances did not fit one answer

    @classmethod
    def of(cls, run: RunView, task: str | None = None, state: str | None = None) -> RunInstances:
        """From the run read whole: its instances of `task` in `state` (any, for None)."""
        return cls(run.id, run.status, [InstanceBrief(i.id, i.task, i.state) for i in run.instances
                                        if task in (None, i.task) and state in (None, i.state)])


@dataclasses.dataclass(frozen=True)
class TaskStats(View):
    """One task over a workflow's recent runs: attempts that ended (succeeded, failed or expired),
    the failed ones among them, and how long the succeeded ones took (seconds, nearest rank)."""

    task: str
    attempts: int
    failed: int
    failure_rate: float | None
    p50: float | None
    p95: float | None


@dataclasses.dataclass(frozen=True)
class WorkflowStats(View):
    """A workflow's newest `runs` runs: how many finished or failed, how long the succeeded ones
    took from start to finish, and each task's figures."""

    team: str
    workflow: str
    runs: int
    finished: int
    failed: int
    run_p50: float | None
    run_p95: float | None
    since: dt.datetime | None  # the oldest of these runs' trigger time
    tasks: list[TaskStats]


@dataclasses.dataclass(frozen=True)
class VersionView(View):
    """One deployed version of a workflow: when, by whom, how many runs follow it, what it changed."""

    version: int
    deployed_at: dt.datetime
    deployed_by: str
    content_hash: str
    runs: int
    changes: list[str]  # from the version before it (flow45.store.spec_diff); empty for the first


@dataclasses.dataclass(frozen=True)
class WorkflowVersions(View):
    """A workflow's versions, newest first (`flow45 versions`)."""

    team: str
    workflow: str
    current: int
    retired: bool
    total: int  # versions deployed, shown or not
    versions: list[VersionView]
    since: int | None = None  # asked: the version compared with the current one
    changed_since: list[str] | None = None  # what changed from `since` to the current version, all at once


@dataclasses.dataclass(frozen=True)
class InboxItem(View):
    """A human task waiting for a decision, with what a person needs to decide it."""

    instance: InstanceView
    run: RunView | None
    inputs: dict[str, Any]  # parameter -> the upstream output it receives (null: skipped)
    who: str  # who may decide: "ann, @finance (ann, bob)", or "any operator of the team"
    overdue: bool
    # The store's time when the inbox was read: `overdue`, and "due in"/"overdue by" wherever the item is
    # shown, are measured from this one clock (through the broker, the bridge's, not the reader's).
    checked_at: dt.datetime | None = None


@dataclasses.dataclass(frozen=True)
class EventView(View):
    id: int
    at: dt.datetime
    team: str
    run: int | None
    instance: int | None
    kind: str
    from_state: str | None
    to_state: str | None
    actor: str
    detail: Any
    task: str | None = None  # the instance's task, when the event is about one (and its row is kept)


@dataclasses.dataclass(frozen=True)
class EventPage(View):
    """Ledger events of one team, oldest first: one message of the team's event stream."""

    events: list[EventView]


@dataclasses.dataclass(frozen=True)
class WorkerReply(View):
    """The answer to a worker's claim, progress, submit, fail or skip."""

    instance: int
    state: str
    attempt: int
    token: str | None = None
    lease_expires_at: dt.datetime | None = None
    inputs: dict | None = None
    params: Any = None
    duplicate: bool = False
    callback_key: str | None = None  # the answer to `park` alone
    next: dict | None = None  # a submit's: the downstream attempt claimed for its worker (Submit.next)
    timeout_at: dt.datetime | None = None  # a claim's: when its task's timeout ends the attempt, if it has one
    checkpoint: Any = None  # a claim's: where the instance's earlier attempts got to (flow45.checkpoints)

    @classmethod
    def from_json(cls, data: dict) -> WorkerReply:
        return cls(**_parse_times(cls, data))


@dataclasses.dataclass(frozen=True)
class AffectedInstance(View):
    instance: int
    task: str
    state: str
    becomes: str
    notify: bool  # an undo notice will be published for its archived output


@dataclasses.dataclass(frozen=True)
class ConnectedRun(View):
    """A run started by the undone run reaching a state (a connected workflow)."""

    run: int
    team: str
    workflow: str
    status: str
    cancel: bool  # unfinished and the operator's team's: `undo --cancel-connected` cancels it

    def fate(self, cancelling: bool) -> str:
        """What the undo does to it, `cancelling` the connected runs or not."""
        if self.cancel:
            return "cancelled" if cancelling else "goes on"
        return "stays" if self.status in S.FINISHED_RUN else f"goes on (team {self.team}'s)"


@dataclasses.dataclass(frozen=True)
class UndoPlan(View):
    instance: int
    run: int
    reason: str | None
    hold: bool
    dry_run: bool
    affected: list[AffectedInstance]
    event: int | None = None
    connected: list[ConnectedRun] = dataclasses.field(default_factory=list)
    cancel_connected: bool = False
    run_waits: str | None = None  # a finished run waits queued for a slot rather than running again: why


@dataclasses.dataclass(frozen=True)
class DeployedWorkflow(View):
    team: str
    workflow: str
    version: int
    # created | updated | unchanged | restored (it was retired) | missing (deployed, not in this config:
    # deploy --prune retires it) | retired (by this deploy's --prune)
    change: str
    changes: list[str] = dataclasses.field(default_factory=list)  # updated: what changed (flow45.store.spec_diff)
    started_runs: int = 0  # updated: its queued runs the deploy started (a raised max_active_runs made room)
    offered_instances: int = 0  # its queued instances the deploy offered (a raised max_running made room)


@dataclasses.dataclass(frozen=True)
class DeployReport(View):
    workflows: list[DeployedWorkflow]
    dry_run: bool = False  # what the deploy would do; nothing was kept

    @property
    def changed(self) -> list[DeployedWorkflow]:
        return [w for w in self.workflows if w.change not in ("unchanged", "missing")]

    @property
    def missing(self) -> list[DeployedWorkflow]:
        return [w for w in self.workflows if w.change == "missing"]


@dataclasses.dataclass(frozen=True)
class BackfillItem(View):
    logical_time: dt.datetime
    run: int | None  # the run made (or already there); None in a dry run for a tick without one
    status: str  # running | queued: made now; would_create: dry run; exists: a run had this tick already


@dataclasses.dataclass(frozen=True)
class BackfillPlan(View):
    team: str
    workflow: str
    start: dt.datetime
    end: dt.datetime
    dry_run: bool
    items: list[BackfillItem]
