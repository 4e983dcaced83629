"""A workflow's version history (`flow45 versions`): who deployed each version and when, how many
runs follow it, and what it changed from the one before."""

from __future__ import annotations

from peewee import fn

from flow45.models import Run, WorkflowVersion
from flow45.store.deploy import find_workflow
from flow45.store.spec_diff import spec_changes
from flow45.views import VersionView, WorkflowVersions


def workflow_versions(team: str, workflow: str, limit: int = 20) -> WorkflowVersions:
    """The newest `limit` versions, newest first; the one before the oldest shown is read only to
    say what that one changed."""
    row = find_workflow(team, workflow)
    rows = list(WorkflowVersion.select().where(WorkflowVersion.workflow == row.id)
                .order_by(WorkflowVersion.version.desc()).limit(limit + 1))
    shown = rows[:limit]
    runs = dict(Run.select(Run.version, fn.COUNT(Run.id)).where(Run.version.in_([v.id for v in shown]))
                .group_by(Run.version).tuples())
    versions = [VersionView(v.version, v.created_at, v.deployed_by, v.content_hash, runs.get(v.id, 0),
                            spec_changes(rows[n + 1].spec, v.spec) if n + 1 < len(rows) else [])
                for n, v in enumerate(shown)]
    return WorkflowVersions(team, workflow, row.current_version, row.retired_at is not None,
                            rows[0].version if rows else 0, versions)
