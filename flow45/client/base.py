"""One interface for every operator read and action, whatever is behind it.

The command line and the dashboard are written once against `Client`. `LocalClient`
(`flow45.client.local`) works on the database and can see every team; a remote client works through
the bridge as one team's broker user. What crosses this interface is the store's views
(`flow45.views`) and specs, never rows, so either side can be swapped for the other.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
from pathlib import Path
from typing import Any, Callable, Sequence

from flow45.store.specs import VersionSpec
from flow45.views import (
    BackfillPlan,
    DeployReport, EventView, InboxItem, InstanceView, RunInstances, RunView, Triggered, UndoPlan, WorkflowStats,
    WorkflowVersions, WorkflowView,
)

RUNS_PAGE = 50  # runs per page unless asked otherwise


@dataclasses.dataclass(frozen=True)
class RunFilter:
    """Which runs to list. Immutable, so a background reader can hold it while the UI changes it."""

    team: str | None = None
    workflow: str | None = None
    status: str | None = None
    text: str = ""  # matched against workflow, team, who triggered, status, trigger, params; "#12" is a run id
    params: tuple[tuple[str, Any], ...] = ()  # (key, value): runs whose params have each key with that value
    since: dt.datetime | None = None  # triggered at or after (naive UTC)
    until: dt.datetime | None = None  # triggered before
    version: int | None = None  # of the workflow (named too): runs following that version of it
    key: str | None = None  # runs triggered with this key (one per workflow)

    def describe(self) -> str:
        parts = [f"{name} {value}" for name, value in
                 (("team", self.team), ("workflow", self.workflow), ("version", self.version), ("status", self.status),
                  ("key", self.key))
                 if value]
        parts += [f"params.{key} = {value!r}" for key, value in self.params]
        parts += [f"{name} {value:%Y-%m-%d %H:%M:%S}" for name, value in (("since", self.since), ("until", self.until)) if value]
        if self.text.strip():
            parts.append(f"text “{self.text.strip()}”")
        return ", ".join(parts) or "all runs"


@dataclasses.dataclass(frozen=True)
class ValidatedTeam:
    team: str
    workflows: list[str]
    types: list[str]
    functions: int


class Client(abc.ABC):
    """What an operator can read and do. `team` is the one team this client sees, or None for all
    (a local administrator without a filter). An id of a team the client does not see is answered
    NotFound, in the words a missing id gets."""

    team: str | None = None
    actor: str = ""

    # ---- reads -------------------------------------------------------------------------------

    @abc.abstractmethod
    def workflows(self, team: str | None = None) -> list[WorkflowView]:
        """The deployed workflows (current versions), by team then name."""

    @abc.abstractmethod
    def runs(self, where: RunFilter = RunFilter(), *, before: int | None = None, limit: int = RUNS_PAGE,
             ids: Sequence[int] | None = None) -> list[RunView]:
        """Newest first, at most `limit`, with ids below `before`: keyset pages whatever the table's size.
        Each run has its counts, not its instances. With `ids`, only those runs (that match): what a
        live list reads again when events touch its rows, in one read."""

    @abc.abstractmethod
    def run(self, run_id: int, *, attempts: bool = False) -> RunView:
        """A run with its instances (and their attempts if asked)."""

    def run_instances(self, where: RunFilter = RunFilter(), *, task: str | None = None, state: str | None = None,
                      before: int | None = None, limit: int = RUNS_PAGE,
                      ids: Sequence[int] | None = None) -> list[RunInstances]:
        """The runs `runs` would list, each with its id, status and its instances of `task` in `state`
        (any, for None): what a bulk plan needs of a page of runs. This way reads each run whole; the
        clients read a page in one go (a remote one falls back on this for a bridge without that read)."""
        return [RunInstances.of(self.run(r.id), task, state)
                for r in self.runs(where, before=before, limit=limit, ids=ids)]

    @abc.abstractmethod
    def run_as_of(self, run_id: int, *, event: int | None = None, at: dt.datetime | None = None) -> RunView:
        """The run as it was after ledger event `event`, or at time `at` (naive UTC), rebuilt from the
        ledger: run status, and each instance's state, attempt, worker and progress (where the
        ledger records it). One of the two is given."""

    @abc.abstractmethod
    def stats(self, team: str, workflow: str, runs: int = 50) -> WorkflowStats:
        """Per-task p50/p95 duration and failure rate over the workflow's newest `runs` runs (at most 500)."""

    @abc.abstractmethod
    def versions(self, team: str, workflow: str, limit: int = 20, since: int | None = None) -> WorkflowVersions:
        """The workflow's newest `limit` versions (at most 500), newest first: who deployed each, when, its
        runs, and what it changed; `since`: also what changed from that version to the current one."""

    @abc.abstractmethod
    def run_row(self, run_id: int) -> RunView | None:
        """A run as a list shows it (counts, no instances), or None: cheap even for a big run."""

    @abc.abstractmethod
    def status_counts(self, where: RunFilter = RunFilter()) -> dict[str, int]:
        """Runs per status under the filter's team, workflow and text (all statuses counted)."""

    @abc.abstractmethod
    def instance(self, instance_id: int) -> InstanceView:
        """A task instance with its attempts."""

    @abc.abstractmethod
    def instance_ids(self, run_id: int, tasks: list[str]) -> dict[str, int]:
        """Task name -> instance id, for these tasks of a run."""

    @abc.abstractmethod
    def events(self, after: int = 0, *, team: str | None = None, run: int | None = None,
               instance: int | None = None, limit: int = 200, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> list[EventView]:
        """Ledger events with an id above `after`, oldest first, at most `limit` (`since`, `until`: at or
        after, and before, these times, naive UTC)."""

    @abc.abstractmethod
    def tail_events(self, *, team: str | None = None, run: int | None = None, instance: int | None = None,
                    n: int = 200, before: int | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[EventView]:
        """The newest `n` events (of a team, a run or an instance; `before`: with a smaller id; `since`,
        `until`: as `events` takes them), oldest first."""

    @abc.abstractmethod
    def latest_event_id(self) -> int:
        """The newest ledger id this client sees (0 if none): where a live feed starts."""

    @abc.abstractmethod
    def human_inbox(self, team: str | None = None, limit: int = 500, *, show: str = "all") -> list[InboxItem]:
        """Available human tasks with what deciding them needs (params, inputs, who may, when due),
        overdue first. `show`: all, mine (taken by or naming this client's user), groups (naming a
        group the user is in), overdue."""

    @abc.abstractmethod
    def run_spec(self, run_id: int) -> VersionSpec:
        """The workflow version a run follows."""

    @abc.abstractmethod
    def workflow_spec(self, team: str, workflow: str) -> VersionSpec:
        """The current version of a workflow."""

    @abc.abstractmethod
    def schema(self, team: str | None = None) -> dict:
        """The JSON Schema of messages and of the functions' inputs and outputs (`flow45 schema`)."""

    def graph(self, team: str, workflow: str) -> str:
        """The current version of a workflow as a Mermaid flowchart."""
        from flow45.graph import mermaid

        spec = self.workflow_spec(team, workflow)
        return mermaid(f"{team}/{workflow} v{spec.number}", spec.workflow)

    # ---- actions, as `actor` -----------------------------------------------------------------

    @abc.abstractmethod
    def trigger(self, team: str, workflow: str, params: Any = None, logical_time: dt.datetime | None = None,
                priority: int | None = None, key: str | None = None) -> Triggered:
        """Start a run (with the logical time it works for, if given; `priority`: each of its tasks' at least
        this). With a `key` the workflow has a run for already: that run (flow45.run_keys)."""

    @abc.abstractmethod
    def pause(self, team: str, workflow: str, triggers: str = "queue", reason: str | None = None) -> None:
        """Pause a workflow's schedule; triggers meanwhile `queue` or `refuse`."""

    @abc.abstractmethod
    def resume(self, team: str, workflow: str) -> None:
        """Resume a paused workflow."""

    @abc.abstractmethod
    def backfill(self, team: str, workflow: str, start: dt.datetime, end: dt.datetime, *,
                 dry_run: bool = False) -> BackfillPlan:
        """A run per schedule tick from `start` to `end` (UTC, both included); a dry run only lists them."""

    @abc.abstractmethod
    def undo(self, instance_id: int, reason: str, *, hold: bool = False, dry_run: bool = False,
             cancel_connected: bool = False) -> UndoPlan:
        """Undo an instance and what followed from it; with `dry_run`, only what would change. The plan
        lists the runs the instance's run started (connected workflows); `cancel_connected` cancels the
        unfinished ones in the same transaction."""

    @abc.abstractmethod
    def skip(self, instance_id: int, reason: str) -> None: ...

    @abc.abstractmethod
    def retry(self, instance_id: int) -> None: ...

    @abc.abstractmethod
    def hold(self, instance_id: int, reason: str | None = None) -> None: ...

    @abc.abstractmethod
    def release(self, instance_id: int) -> str:
        """Let a held instance go; the state it is in now."""

    @abc.abstractmethod
    def cancel(self, run_id: int, reason: str | None = None) -> None: ...

    @abc.abstractmethod
    def submit(self, instance_id: int, output: Any, comment: str | None = None) -> str:
        """The output of a human task, with the decider's comment; the instance's state after it.
        Refused (NotAllowed) for someone who may not decide it, or while someone else has it."""

    @abc.abstractmethod
    def take(self, instance_id: int, reason: str | None = None, for_user: str | None = None) -> str | None:
        """Take a human task, or give it to `for_user`, so others see who has it; taking it from someone
        else needs a reason. Returns who had it before (None: nobody)."""

    @abc.abstractmethod
    def note(self, run_id: int, text: str, task: str | None = None) -> None:
        """A note on a run, or on its instance of `task`, kept in its ledger and shown with it."""

    @abc.abstractmethod
    def hand_back(self, instance_id: int) -> None:
        """Let go of a human task one has taken."""

    @abc.abstractmethod
    def set_output(self, instance_id: int, output: Any, reason: str) -> str:
        """Set a worker task's output by hand, with a reason; the instance's state after it."""

    @abc.abstractmethod
    def callback_complete(self, key: str, output: Any) -> tuple[int, str]:
        """Complete the attempt parked under `key`; (instance, its state after it)."""

    @abc.abstractmethod
    def callback_fail(self, key: str, error: str, retryable: bool = True) -> tuple[int, str]:
        """Fail the attempt parked under `key`; (instance, its state after it)."""

    @abc.abstractmethod
    def deploy(self, path: Path, prune: bool = False, dry_run: bool = False) -> DeployReport:
        """Deploy a config file or folder; `prune` retires the team's workflows that it leaves out; a dry run
        says what it would do and keeps nothing."""

    @abc.abstractmethod
    def validate(self, path: Path) -> list[ValidatedTeam]:
        """Check a config file or folder; raises ConfigError naming every problem."""

    def subscribe(self, wake: Callable[[], None], deliver: Callable[[EventView], None],
                  settle: Callable[[int], None] | None = None) -> Callable[[], None] | None:
        """Hand each ledger event this client is pushed to `deliver` (from a thread of its own), and
        call `wake` when the push may have skipped some (after each (re)connection, or when its
        publisher changed), so a follower re-reads by id what it missed. `settle(through)`: every id
        up to `through` not yet delivered never will be (the stream's mark; ids skipped need no wait).
        Returns how to stop; None when this client has no such push, and followers poll `events`."""
        return None

    def ledger_writers(self):
        """What tells a follower of the ledger whether an id it skipped over may still commit: the
        database's dialect (`flow45.client.follower.Holes`), or None where this client cannot ask."""
        return None

    def close(self) -> None:
        """Let go of what the calling thread holds (a database connection, a broker connection)."""
