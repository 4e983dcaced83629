"""A workflow's versions on the command line: what each deploy changed, by whom and when."""

from __future__ import annotations

from typing import TYPE_CHECKING

from flow45.cli.base import command, workflow_read
from flow45.cli.output import print_json
from flow45.clock import shown

if TYPE_CHECKING:
    from flow45.views import DeployedWorkflow, DeployReport


def print_deploy_changes(report: DeployReport) -> None:
    """Under a deploy's table: what each updated workflow's new version changed, the queued runs that a
    raised max_active_runs let start and the queued instances a raised max_running let go (the current
    version's limits hold for every run)."""
    for deployed in report.workflows:
        if deployed.changes:
            print(f"{deployed.team}/{deployed.workflow} v{deployed.version} changes:")
            for line in deployed.changes:
                print(f"  {line}")
        for line in let_go(deployed, report.dry_run):
            print(line)


def let_go(deployed: DeployedWorkflow, dry_run: bool) -> list[str]:
    """What a deploy's raised limits let go of the workflow's queued runs and task instances."""
    name = f"{deployed.team}/{deployed.workflow}"
    lines = []
    if deployed.started_runs:
        verb = "would start" if dry_run else "started"
        lines.append(f"{name}: {verb} {deployed.started_runs} queued run(s), the oldest first")
    if deployed.offered_instances:
        verb = "would offer" if dry_run else "offered"
        lines.append(f"{name}: {verb} {deployed.offered_instances} queued task instance(s) a raised max_running "
                     "made room for")
    return lines


@command("versions")
def cmd_versions(args) -> int:
    team, workflow, found = workflow_read(args, "limit",
                                          lambda client, t, w, n: client.versions(t, w, n, since=args.since))
    if args.json:
        print_json(found.to_json())
        return 0
    newest = f", the newest {len(found.versions)} shown" if len(found.versions) < found.total else ""
    print(f"{team}/{workflow}: {found.total} version(s){newest}, current v{found.current}"
          + (", retired" if found.retired else ""))
    if found.changed_since is not None:
        print(f"from v{found.since} to v{found.current}:" + ("" if found.changed_since else " no change"))
        for line in found.changed_since:
            print(f"  {line}")
    for v in found.versions:
        print(f"v{v.version}  deployed {shown(v.deployed_at)} by {v.deployed_by}  hash {v.content_hash[:12]}  "
              f"runs {v.runs}")
        for line in v.changes or (["the first version"] if v.version == 1 else []):
            print(f"  {line}")
    return 0
