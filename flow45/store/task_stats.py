"""Per-task statistics of a workflow over its recent runs (`flow45 stats TEAM/WF`): how long attempts
took (p50, p95) and how often they failed. Bounded work: the newest `runs` runs (at most MAX_RUNS)
by the workflow's index, then the attempts of their instances only; never a whole table."""

from __future__ import annotations

import math

from flow45 import states as S
from flow45.errors import Flow45Error
from flow45.models import Attempt, Run, TaskInstance, WorkflowVersion
from flow45.store.deploy import find_workflow
from flow45.store.specs import version_spec
from flow45.views import TaskStats, WorkflowStats

MAX_RUNS = 500
ENDED = ("succeeded", "failed", "expired")  # attempts that ran to an outcome (not revoked or skipped)


def percentile(values: list[float], p: float) -> float | None:
    """Nearest rank: the smallest value with at least p% of the values at or below it."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(p / 100 * len(ordered)) - 1)]


def workflow_stats(team: str, workflow: str, runs: int = 50) -> WorkflowStats:
    if not 1 <= runs <= MAX_RUNS:
        raise Flow45Error(f"stats read 1 to {MAX_RUNS} runs, not {runs}")
    row = find_workflow(team, workflow)
    recent = list(Run.select(Run.id, Run.status, Run.started_at, Run.finished_at, Run.created_at)
                  .where(Run.workflow == row.id).order_by(Run.id.desc()).limit(runs))
    ids = [r.id for r in recent]
    ended: dict[str, int] = {}
    failed: dict[str, int] = {}
    took: dict[str, list[float]] = {}
    if ids:
        query = (
            Attempt.select(TaskInstance.task, Attempt.status, Attempt.claimed_at, Attempt.finished_at)
            .join(TaskInstance, on=(Attempt.instance == TaskInstance.id))
            .where(TaskInstance.run.in_(ids) & Attempt.status.in_(ENDED) & Attempt.finished_at.is_null(False))
            .tuples()
        )
        for task, status, claimed, end in query:
            ended[task] = ended.get(task, 0) + 1
            if status == "succeeded":
                took.setdefault(task, []).append((end - claimed).total_seconds())
            else:
                failed[task] = failed.get(task, 0) + 1
    order = _current_order(row)
    tasks = [
        TaskStats(task=name, attempts=ended.get(name, 0), failed=failed.get(name, 0),
                  failure_rate=failed.get(name, 0) / ended[name] if ended.get(name) else None,
                  p50=percentile(took.get(name, []), 50), p95=percentile(took.get(name, []), 95))
        for name in order + sorted(set(ended) - set(order))  # tasks only older versions have: last
    ]
    finished = [r for r in recent if r.status in S.FINISHED_RUN and r.started_at and r.finished_at]
    run_took = [(r.finished_at - r.started_at).total_seconds() for r in finished if r.status == S.SUCCEEDED]
    return WorkflowStats(
        team=team, workflow=workflow, runs=len(recent), finished=len(finished),
        failed=sum(r.status == S.FAILED for r in recent), run_p50=percentile(run_took, 50),
        run_p95=percentile(run_took, 95),
        since=min((r.created_at for r in recent), default=None), tasks=tasks,
    )


def _current_order(workflow) -> list[str]:
    version = WorkflowVersion.get((WorkflowVersion.workflow == workflow.id)
                                  & (WorkflowVersion.version == workflow.current_version))
    return list(version_spec(version.id).order)
