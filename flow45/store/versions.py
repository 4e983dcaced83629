"""A workflow's version history (`flow45 versions`): who deployed each version and when, how many
runs follow it, and what it changed from the one before."""

from __future__ import annotations

from peewee import fn

from flow45.errors import NotFound
from flow45.models import Run, WorkflowVersion
from flow45.store.deploy import find_workflow
from flow45.store.spec_diff import spec_changes
from flow45.views import VersionView, WorkflowVersions


def workflow_versions(team: str, workflow: str, limit: int = 20, since: int | None = None) -> WorkflowVersions:
    """The newest `limit` versions, newest first; the one before the oldest shown is read only to
    say what that one changed. `since`: also what changed from that version to the current one, all
    at once (what a run of that version does differently from a run triggered now)."""
    row = find_workflow(team, workflow)
    changed_since = None
    if since is not None:
        of_it = WorkflowVersion.workflow == row.id
        old = WorkflowVersion.get_or_none(of_it & (WorkflowVersion.version == since))
        if old is None:
            raise NotFound(f"{team}/{workflow} has no version {since} (it has 1 to {row.current_version})")
        now = WorkflowVersion.get(of_it & (WorkflowVersion.version == row.current_version))
        changed_since = spec_changes(old.spec, now.spec)
    rows = list(WorkflowVersion.select().where(WorkflowVersion.workflow == row.id)
                .order_by(WorkflowVersion.version.desc()).limit(limit + 1))
    shown = rows[:limit]
    runs = dict(Run.select(Run.version, fn.COUNT(Run.id)).where(Run.version.in_([v.id for v in shown]))
                .group_by(Run.version).tuples())
    versions = [VersionView(v.version, v.created_at, v.deployed_by, v.content_hash, runs.get(v.id, 0),
                            spec_changes(rows[n + 1].spec, v.spec) if n + 1 < len(rows) else [])
                for n, v in enumerate(shown)]
    return WorkflowVersions(team, workflow, row.current_version, row.retired_at is not None,
                            rows[0].version if rows else 0, versions, since, changed_since)
