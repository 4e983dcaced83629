"""The operator's everyday tools on the command line: set an output by hand, backfill, pause and resume."""

from __future__ import annotations

import contextlib

from flow45.cli.base import (UsageError, _client, _json_arg, _positive_int, _team_workflow, _utc_time, _utc_time_to,
                             command, suggesting)
from flow45.cli.output import print_json, print_table
from flow45.clock import shown

DONE_TO = {"retry": "retried", "skip": "skipped", "undo": "undone", "cancel": "cancelled"}


def add_parsers(add) -> None:
    p = add("set-output", "set the output of a worker task by hand (validated, kept as your attempt)", True)
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--output", required=True, help="the output as a JSON object, checked against the task's type")
    p.add_argument("--reason", required=True, help="why, kept with the attempt and in the ledger")
    p = add("pause", "pause a workflow: its schedule makes no runs; runs already going go on", True)
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    p.add_argument("--triggers", choices=("queue", "refuse"), default="queue",
                   help="what a trigger does while paused: its run waits as queued (default), or it is refused")
    p.add_argument("--reason")
    p = add("resume", "resume a paused workflow: queued runs start; the schedule catches up by its policy", True)
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    p = add("bulk", "undo, retry, skip or cancel many at once: the whole plan first (what the action can act "
                    "on: failed instances to retry, unfinished or failed ones to skip, finished ones to undo, "
                    "unfinished or failed runs to cancel), then each in its own transaction, reported", True)
    p.add_argument("action", choices=("retry", "skip", "undo", "cancel"))
    p.add_argument("--run", type=_positive_int, action="append", default=[], metavar="RUN",
                   help="a run to act in (repeat it for several)")
    p.add_argument("--workflow", metavar="TEAM/WORKFLOW", help="every run of this workflow (read a page at a time)")
    p.add_argument("--status", help="with --workflow: only runs in this status")
    p.add_argument("--task", help="only instances of this task")
    p.add_argument("--state", help="only instances (for cancel: runs) in this state")
    p.add_argument("--reason", help="for skip, undo and cancel")
    p.add_argument("--dry-run", action="store_true", help="show the plan, change nothing")
    p = add("backfill", "create one run per schedule tick in a range (extra runs queue for max_active_runs)", True)
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    p.add_argument("--from", dest="start", type=_utc_time, required=True, metavar="TIME",
                   help="the first logical time to cover (ISO 8601, UTC without an offset)")
    p.add_argument("--to", dest="end", type=_utc_time_to, required=True, metavar="TIME",
                   help="the last logical time to cover (included; a date: that whole day)")
    p.add_argument("--dry-run", action="store_true", help="list the ticks and the runs already there, make nothing")


@command("set-output")
def cmd_set_output(args) -> int:
    output = _json_arg(args.output, "--output")
    state = _client(args).set_output(args.instance, output, args.reason)
    if args.json:
        print_json({"instance": args.instance, "state": state})
    else:
        print(f"instance {args.instance} {state}: output set by hand")
    return 0


@command("backfill")
def cmd_backfill(args) -> int:
    team, workflow = _team_workflow(args.workflow)
    client = _client(args)
    with suggesting(client, team, workflow):
        plan = client.backfill(team, workflow, args.start, args.end, dry_run=args.dry_run)
    if args.json:
        print_json(plan.to_json())
        return 0
    made = [i for i in plan.items if i.status in ("running", "queued")]
    if not plan.items:
        print(f"no schedule tick of {team}/{workflow} from {shown(plan.start)} to {shown(plan.end)}")
        return 0
    print_table(["logical time (UTC)", "run", "status"],
                [(shown(i.logical_time), i.run, i.status.replace("_", " ")) for i in plan.items])
    if plan.dry_run:
        new = sum(i.status == "would_create" for i in plan.items)
        print(f"dry run: would create {new} run(s); {len(plan.items) - new} tick(s) have a run already")
    else:
        queued = sum(i.status == "queued" for i in made)
        print(f"created {len(made)} run(s) ({queued} queued for a slot); {len(plan.items) - len(made)} tick(s) "
              "had a run already")
    return 0


@command("pause")
def cmd_pause(args) -> int:
    team, workflow = _team_workflow(args.workflow)
    client = _client(args)
    with suggesting(client, team, workflow):
        client.pause(team, workflow, args.triggers, args.reason)
    if args.json:
        print_json({"workflow": f"{team}/{workflow}", "paused": args.triggers})
    else:
        print(f"{team}/{workflow} paused: its schedule makes no runs; triggers are "
              + ("queued until it resumes" if args.triggers == "queue" else "refused"))
    return 0


@command("resume")
def cmd_resume(args) -> int:
    team, workflow = _team_workflow(args.workflow)
    client = _client(args)
    with suggesting(client, team, workflow):
        client.resume(team, workflow)
    if args.json:
        print_json({"workflow": f"{team}/{workflow}", "paused": None})
    else:
        print(f"{team}/{workflow} resumed: queued runs take the free slots; the schedule catches up by its policy")
    return 0


@command("bulk")
def cmd_bulk(args) -> int:
    from flow45 import bulk
    from flow45.client import RunFilter

    where = None
    if args.status and not args.workflow:
        raise UsageError("--status chooses among the runs of --workflow: give --workflow TEAM/WORKFLOW too")
    if args.workflow:
        team, workflow = _team_workflow(args.workflow)
        where = RunFilter(team=team, workflow=workflow, status=args.status)
    client = _client(args)
    with suggesting(client, where.team, where.workflow) if where else contextlib.nullcontext():
        chosen = bulk.select(client, args.action, runs=args.run, where=where, task=args.task, state=args.state)
    items, left_out = chosen.items, chosen.describe_left_out(args.action)
    if not args.dry_run:
        bulk.apply(client, args.action, items, args.reason)
    if args.json:
        print_json({"action": args.action, "dry_run": args.dry_run, "runs": chosen.runs,
                    "items": [i.to_json() for i in items], "left_out": chosen.left_out})
    elif not items:
        print(f"nothing to {args.action} in the {chosen.runs} chosen run(s)" + (f" ({left_out})" if left_out else ""))
    else:
        print_table(["run", "instance", "task", "state", "outcome", "detail"],
                    [(i.run, i.instance, i.task, i.state, "would " + args.action if args.dry_run else i.outcome,
                      i.detail) for i in items])
        done = sum(i.outcome == "done" for i in items)
        print((f"dry run: {len(items)} item(s) would be {DONE_TO[args.action]}" if args.dry_run
               else f"{args.action}: {done} of {len(items)} done, {len(items) - done} refused")
              + f", in {chosen.runs} chosen run(s)")
        if left_out:
            print(left_out)
    return 1 if any(i.outcome == "refused" for i in items) else 0
