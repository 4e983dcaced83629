"""A workflow's versions on the command line: what each deploy changed, by whom and when."""

from __future__ import annotations

from flow45.cli.base import UsageError, _client, _team_workflow, command, suggesting
from flow45.cli.output import print_json, when
from flow45.views import DeployReport


def print_deploy_changes(report: DeployReport) -> None:
    """Under a deploy's table: what each updated workflow's new version changed."""
    for deployed in report.workflows:
        if deployed.changes:
            print(f"{deployed.team}/{deployed.workflow} v{deployed.version} changes:")
            for line in deployed.changes:
                print(f"  {line}")


@command("versions")
def cmd_versions(args) -> int:
    team, workflow = _team_workflow(args.workflow)
    if args.limit > 500:
        raise UsageError(f"--limit is at most 500, got {args.limit}")
    client = _client(args)
    with suggesting(client, team, workflow):
        found = client.versions(team, workflow, args.limit, since=args.since)
    if args.json:
        print_json(found.to_json())
        return 0
    shown = f", the newest {len(found.versions)} shown" if len(found.versions) < found.total else ""
    print(f"{team}/{workflow}: {found.total} version(s){shown}, current v{found.current}"
          + (", retired" if found.retired else ""))
    if found.changed_since is not None:
        print(f"from v{found.since} to v{found.current}:" + ("" if found.changed_since else " no change"))
        for line in found.changed_since:
            print(f"  {line}")
    for v in found.versions:
        print(f"v{v.version}  deployed {when(v.deployed_at)} by {v.deployed_by}  hash {v.content_hash[:12]}  "
              f"runs {v.runs}")
        for line in v.changes or (["the first version"] if v.version == 1 else []):
            print(f"  {line}")
    return 0
