"""Bulk actions: undo, retry, skip or cancel many at once, through any `Client` (so the same on the
database and through the broker). The plan (every item) comes first; each item is then applied in a
transaction of its own and reported, a refusal failing only that item."""

from __future__ import annotations

import dataclasses
from typing import Any

from flow45.client.base import Client, RunFilter
from flow45.errors import Flow45Error

ACTIONS = ("retry", "skip", "undo", "cancel")
MAX_RUNS = 500


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


def select(client: Client, action: str, *, runs: list[int] = (), where: RunFilter | None = None,
           task: str | None = None, state: str | None = None) -> list[BulkItem]:
    """The items the action would touch: instances of the chosen runs (by id, or by a run filter)
    with that task name and state; for cancel, the runs themselves."""
    if action not in ACTIONS:
        raise Flow45Error(f"bulk: unknown action {action!r}; expected one of {', '.join(ACTIONS)}")
    run_ids = list(dict.fromkeys(runs))
    if where is not None:
        run_ids += [r.id for r in client.runs(where, limit=MAX_RUNS) if r.id not in run_ids]
    if not run_ids:
        raise Flow45Error("bulk: no runs chosen; give --run IDs or a filter (--workflow, --status)")
    items = []
    for run_id in sorted(run_ids):
        view = client.run(run_id)
        if action == "cancel":
            if state is None or view.status == state:
                items.append(BulkItem(run_id, None, None, view.status))
            continue
        for instance in view.instances:
            if (task is None or instance.task == task) and (state is None or instance.state == state):
                items.append(BulkItem(run_id, instance.id, instance.task, instance.state))
    return items


def apply(client: Client, action: str, items: list[BulkItem], reason: str | None) -> list[BulkItem]:
    """Each item in its own transaction (one client call); a refusal is kept with the item."""
    if action in ("skip", "undo") and not (reason or "").strip():
        raise Flow45Error(f"bulk {action} needs a reason (--reason TEXT)")
    for item in items:
        try:
            if action == "retry":
                client.retry(item.instance)
            elif action == "skip":
                client.skip(item.instance, reason)
            elif action == "undo":
                client.undo(item.instance, reason)
            else:
                client.cancel(item.run, reason)
        except Flow45Error as exc:
            item.outcome, item.detail = "refused", exc.message
        else:
            item.outcome = "done"
    return items
