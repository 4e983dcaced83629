"""Bulk actions: undo, retry, skip or cancel many at once, through any `Client` (so the same on the
database and through the broker). The plan (every item) comes first; each item is then applied in a
transaction of its own and reported, a refusal failing only that item. A run filter chooses every run
it matches, read a page at a time: an operator cancelling a workflow's queued runs means all of them.

The plan holds only what the action can act on: a dry run that listed a cancelled run as "would
cancel" promised what the real one then refused. What is left out is counted, and said."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any, Callable

from flow45 import states as S
from flow45.client.base import Client, RunFilter
from flow45.errors import Flow45Error
from flow45.views import RunInstances

ACTIONS = ("retry", "skip", "undo", "cancel")
RUNS_PAGE = 500  # runs of a filter read at a time (a read through the broker holds at most this many)
UNFINISHED = frozenset(S.INSTANCE_STATES) - S.FINISHED_INSTANCE
# The states each action takes its items from (instances; for cancel, runs), as the store's rules allow
# them, and what they become. Nothing in a cancelled run can change.
ACTS_ON = {"retry": frozenset({S.FAILED}), "skip": UNFINISHED | {S.FAILED},
           "undo": frozenset({S.SUCCEEDED, S.FAILED, S.SKIPPED}),
           "cancel": frozenset(s for s in S.RUN_STATES if S.CANCELLED in S.RUN_MOVES[s])}
BECOMES = {"retry": S.AVAILABLE, "skip": S.SKIPPED, "undo": S.AVAILABLE, "cancel": S.CANCELLED}


@dataclasses.dataclass
class BulkItem:
    run: int
    instance: int | None  # None for cancel (a run)
    task: str | None
    state: str
    outcome: str = "planned"  # planned | done | refused
    detail: str | None = None

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


@dataclasses.dataclass
class Selection:
    items: list[BulkItem]  # what the action can act on
    runs: int = 0  # runs chosen (named and matched), every one looked through
    left_out: int = 0  # instances (runs, for cancel) of the chosen task and state that it cannot

    def describe_left_out(self, action: str) -> str | None:
        if not self.left_out:
            return None
        what = "run(s)" if action == "cancel" else "instance(s)"
        return f"{self.left_out} {what} left out: {acts_on(action)}"


def acts_on(action: str) -> str:
    """What the action takes, in words: "retry acts on instances that are failed, in runs not cancelled"."""
    order = S.RUN_STATES if action == "cancel" else S.INSTANCE_STATES
    states = [state for state in order if state in ACTS_ON[action]]
    either = states[0] if len(states) == 1 else f"{', '.join(states[:-1])} or {states[-1]}"
    return (f"{action} acts on runs that are {either}" if action == "cancel"
            else f"{action} acts on instances that are {either}, in runs not cancelled")


def select(client: Client, action: str, *, runs: list[int] = (), where: RunFilter | None = None,
           task: str | None = None, state: str | None = None) -> Selection:
    """The items the action would act on: instances of the chosen runs (by id, or by a run filter)
    with that task name and state; for cancel, the runs themselves in that state. Those it cannot act on (a
    succeeded instance to retry, a cancelled run) are counted, not planned."""
    if action not in ACTIONS:
        raise Flow45Error(f"bulk: unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    if state is not None and state not in ACTS_ON[action]:
        raise Flow45Error(f"bulk {action}: --state {state}: {acts_on(action)}")
    if where is not None and where.status is not None and where.status not in S.RUN_STATES:
        raise Flow45Error(f"bulk {action}: --status {where.status} is not a run status; "
                          f"one of {', '.join(S.RUN_STATES)}")
    if action == "cancel":
        return _runs_to_cancel(client, runs, where, state)
    found = runs_with_instances(client, runs, where, task, state)
    if not found:
        raise _nothing_chosen(client, where)
    chosen = Selection([], runs=len(found))
    for run_id in sorted(found):
        run = found[run_id]
        for i in run.instances:
            if i.state in ACTS_ON[action] and run.status != S.CANCELLED:
                chosen.items.append(BulkItem(run_id, i.id, i.task, i.state))
            else:
                chosen.left_out += 1
    return chosen


def _runs_to_cancel(client: Client, runs: list[int], where: RunFilter | None, state: str | None) -> Selection:
    """The runs themselves: a run's row will do, its instances are not needed."""
    listed = _chosen_runs(client.runs, client.run, runs, where)
    if not listed:
        raise _nothing_chosen(client, where)
    chosen = Selection([], runs=len(listed))
    for run_id in sorted(listed):
        status = listed[run_id].status
        if state not in (None, status):
            continue
        if status in ACTS_ON["cancel"]:
            chosen.items.append(BulkItem(run_id, None, None, status))
        else:
            chosen.left_out += 1
    return chosen


def runs_with_instances(client: Client, runs: list[int], where: RunFilter | None, task: str | None,
                        state: str | None) -> dict[int, RunInstances]:
    """The named runs and those the filter matches, by id, each with its instances of `task` in `state`
    (a run of thousands of instances is not read whole to find its one `load`)."""
    return _chosen_runs(functools.partial(client.run_instances, task=task, state=state),
                        lambda run_id: RunInstances.of(client.run(run_id), task, state), runs, where)


def _chosen_runs(read: Callable[..., list], read_one: Callable[[int], Any], runs: list[int],
                 where: RunFilter | None) -> dict[int, Any]:
    """The named runs and those the filter matches, by id, as `read` (a client's `runs` or `run_instances`)
    gives them, a page of runs a read. A named run that is missing (or another team's) is refused as
    reading it alone (`read_one`) refuses it. The filter's pages hold the runs below the last one's id, so
    runs triggered meanwhile neither shift the pages nor join them; a short page is the last."""
    found: dict[int, Any] = {}
    named = sorted(set(runs))
    for start in range(0, len(named), RUNS_PAGE):
        page = named[start:start + RUNS_PAGE]
        found.update((r.id, r) for r in read(RunFilter(), ids=page, limit=len(page)))
    for run_id in named:
        if run_id not in found:
            found[run_id] = read_one(run_id)  # raises NotFound in its own words
    if where is not None:
        before = None
        while page := read(where, before=before, limit=RUNS_PAGE):
            found.update((r.id, r) for r in page)
            if len(page) < RUNS_PAGE:
                break
            before = page[-1].id
    return found


def _nothing_chosen(client: Client, where: RunFilter | None) -> Flow45Error:
    """Why no run was chosen: none named, a workflow not deployed (a typo, most likely) or no run of it
    (in that status)."""
    if where is None or where.workflow is None:
        return Flow45Error("bulk: no runs chosen; give --run RUN (repeated for several) or --workflow TEAM/WORKFLOW")
    client.workflow_spec(where.team, where.workflow)  # raises NotFound for one not deployed
    return Flow45Error(f"bulk: {where.team}/{where.workflow} has no runs"
                       + (f" that are {where.status}" if where.status else ""))


def apply(client: Client, action: str, items: list[BulkItem], reason: str | None) -> list[BulkItem]:
    """Each item in its own transaction (one client call); a refusal is kept with the item."""
    if action in ("skip", "undo") and not (reason or "").strip():
        raise Flow45Error(f"bulk {action} needs a reason (--reason TEXT)")
    undone_with: dict[int, BulkItem] = {}  # an instance an earlier undo took back with it -> that undo's item
    for item in items:
        if (earlier := undone_with.get(item.instance)) is not None:  # its own undo would be refused as pending
            item.outcome, item.detail = "done", f"undone with instance {earlier.instance} ({earlier.task})"
            continue
        try:
            if action == "retry":
                client.retry(item.instance)
            elif action == "skip":
                client.skip(item.instance, reason)
            elif action == "undo":
                plan = client.undo(item.instance, reason)
                undone_with.update((affected.instance, item) for affected in plan.affected
                                   if affected.instance != item.instance)
            else:
                client.cancel(item.run, reason)
        except Flow45Error as exc:
            item.outcome, item.detail = "refused", exc.message
        else:
            item.outcome = "done"
    return items
