"""The `flow45` command: argument parsing and printing only; the core does the work.

Exit codes: 0 done, 1 refused (with a message naming why), 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import json
import os
import sys
import time
from typing import Any, Callable

from flow45 import store, strictjson, wire
from flow45.cli_output import counts_text, print_json, print_table, progress_bar, when
from flow45.errors import Flow45Error

COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {}


class UsageError(Exception):
    """Bad arguments: exit code 2."""


def command(name: str):
    def register(fn: Callable[[argparse.Namespace], int]):
        COMMANDS[name] = fn
        return fn

    return register


def _json_arg(text: str, what: str) -> Any:
    try:
        return strictjson.loads(text)
    except strictjson.JSONRefused as exc:  # the same limits as a message from the broker
        raise UsageError(f"{what} is not valid JSON: {exc.message}") from exc


def _team_workflow(text: str) -> tuple[str, str]:
    team, sep, workflow = text.partition("/")
    if not sep or not team or not workflow:
        raise UsageError(f"expected TEAM/WORKFLOW, got {text!r}")
    return team, workflow


def _open_store(create: bool = False) -> None:
    """Bind the configured database. Only `create` (deploy) makes a missing store; every other
    command refuses it, naming the URL and `flow45 db upgrade`."""
    from flow45.db import connect
    from flow45.migrate import ensure_schema, require_schema
    from flow45.settings import current_settings

    connect(current_settings().database_url, create=create)
    if create:
        ensure_schema()
    else:
        require_schema()


# ---- configuration -----------------------------------------------------------------------

@command("validate")
def cmd_validate(args) -> int:
    from flow45.config import load_config

    teams = load_config(args.path)
    for team in teams:
        functions = len(team.signatures())
        print(f"ok: team {team.team}: {len(team.workflows)} workflows, {len(team.types)} types, {functions} functions")
    return 0


@command("deploy")
def cmd_deploy(args) -> int:
    from flow45.config import load_config

    teams = load_config(args.path)
    _open_store(create=True)
    report = store.deploy(teams, actor=args.actor)
    if args.json:
        print_json(report.to_json())
    else:
        print_table(["team", "workflow", "version", "change"], [(w.team, w.workflow, w.version, w.change) for w in report.workflows])
    return 0


@command("workflows")
def cmd_workflows(args) -> int:
    _open_store()
    views = store.list_workflows(args.team)
    if args.json:
        print_json([v.to_json() for v in views])
    else:
        print_table(
            ["team", "workflow", "version", "tasks", "schedule", "description"],
            [(v.team, v.name, v.version, v.tasks, v.schedule, v.description) for v in views],
        )
    return 0


@command("graph")
def cmd_graph(args) -> int:
    from flow45.graph import mermaid
    from flow45.models import WorkflowVersion
    from flow45.store.specs import version_spec

    team, name = _team_workflow(args.workflow)
    _open_store()
    workflow = store.find_workflow(team, name)
    row = WorkflowVersion.get((WorkflowVersion.workflow == workflow) & (WorkflowVersion.version == workflow.current_version))
    sys.stdout.write(mermaid(f"{team}/{name} v{row.version}", version_spec(row.id).workflow))
    return 0


@command("schema")
def cmd_schema(args) -> int:
    from flow45.schema import full_schema

    _open_store()
    print_json(full_schema(args.team))
    return 0


@command("db")
def cmd_db(args) -> int:
    from flow45.db import connect
    from flow45.migrate import upgrade
    from flow45.settings import current_settings

    connect(current_settings().database_url, create=True)
    before, after = upgrade()
    print(f"schema at version {after}" + (f" (was {before})" if before != after else ", nothing to do"))
    return 0


# ---- runs --------------------------------------------------------------------------------

@command("trigger")
def cmd_trigger(args) -> int:
    team, workflow = _team_workflow(args.workflow)
    params = _json_arg(args.params, "--params") if args.params else None
    _open_store()
    run_id = store.trigger(team, workflow, params, actor=args.actor)
    view = store.get_run(run_id)
    if args.json:
        print_json({"run": run_id, "status": view.status})
    else:
        print(f"run {run_id} of {team}/{workflow} v{view.version}: {view.status}")
    return 0


@command("runs")
def cmd_runs(args) -> int:
    _open_store()
    views = store.list_runs(args.team, args.workflow, args.status, args.limit)
    if args.json:
        print_json([v.to_json() for v in views])
        return 0
    print_table(
        ["run", "team", "workflow", "v", "status", "logical time", "started", "finished", "progress", "waiting for"],
        [
            (
                v.id, v.team, v.workflow, v.version, v.status, when(v.logical_time), when(v.started_at),
                when(v.finished_at),
                progress_bar(v.counts.get("succeeded", 0) + v.counts.get("skipped", 0), sum(v.counts.values())),
                v.waiting_for,
            )
            for v in views
        ],
    )
    return 0


@command("show")
def cmd_show(args) -> int:
    _open_store()
    view = store.get_run(args.run, with_attempts=args.json)
    if args.json:
        print_json(view.to_json())
        return 0
    print(f"run {view.id}  {view.team}/{view.workflow} v{view.version}  {view.status}")
    print(f"  triggered {when(view.created_at)} by {view.triggered_by} ({view.trigger})"
          + (f", logical time {when(view.logical_time)}" if view.logical_time else ""))
    print(f"  started {when(view.started_at)}  finished {when(view.finished_at)}  {counts_text(view.counts)}")
    if view.waiting_for:
        print(f"  waiting for {view.waiting_for}")
    if view.params:
        print(f"  params {wire.dumps(view.params)}")
    print()
    print_table(
        ["instance", "task", "state", "attempt", "worker", "progress", "after"],
        [
            (
                i.id, i.task + (" (human)" if i.human else ""), i.state, i.attempt or None, i.worker,
                (f"{i.progress_pct:.0f}% " if i.progress_pct is not None else "") + (i.progress_message or ""),
                ", ".join(i.upstream),
            )
            for i in view.instances
        ],
    )
    return 0


@command("instance")
def cmd_instance(args) -> int:
    _open_store()
    view = store.get_instance(args.instance)
    if args.json:
        print_json(view.to_json())
        return 0
    print(f"instance {view.id}  {view.task} of run {view.run}  {view.state}  attempt {view.attempt}  function {view.function}")
    for a in view.attempts:
        mark = " (archived)" if a.archived else ""
        print(f"  attempt {a.number}: {a.status}{mark} by {a.worker} {when(a.claimed_at)} -> {when(a.finished_at)}")
        if a.output is not None:
            print(f"    output {wire.dumps(a.output)}")
        if a.error:
            print(f"    error {a.error}")
    return 0


@command("cancel")
def cmd_cancel(args) -> int:
    _open_store()
    store.cancel_run(args.run, actor=args.actor, reason=args.reason)
    print(f"run {args.run} cancelled")
    return 0


# ---- instances ---------------------------------------------------------------------------

@command("undo")
def cmd_undo(args) -> int:
    _open_store()
    plan = store.undo(args.instance, args.reason, actor=args.actor, hold=args.hold, dry_run=args.dry_run)
    if args.json:
        print_json(plan.to_json())
        return 0
    verb = "would change" if plan.dry_run else "changed"
    print(f"undo of instance {plan.instance} (run {plan.run}) {verb} {len(plan.affected)} instance(s):")
    print_table(
        ["instance", "task", "state", "becomes", "undo notice"],
        [(a.instance, a.task, a.state, a.becomes, "yes" if a.notify else "") for a in plan.affected],
    )
    return 0


@command("skip")
def cmd_skip(args) -> int:
    _open_store()
    store.skip_instance(args.instance, args.reason, actor=args.actor)
    print(f"instance {args.instance} skipped")
    return 0


@command("retry")
def cmd_retry(args) -> int:
    _open_store()
    store.retry_instance(args.instance, actor=args.actor)
    print(f"instance {args.instance} offered again")
    return 0


@command("hold")
def cmd_hold(args) -> int:
    _open_store()
    store.hold(args.instance, actor=args.actor, reason=args.reason)
    print(f"instance {args.instance} held")
    return 0


@command("release")
def cmd_release(args) -> int:
    _open_store()
    store.release(args.instance, actor=args.actor)
    print(f"instance {args.instance} released: {store.get_instance(args.instance).state}")
    return 0


@command("submit")
def cmd_submit(args) -> int:
    output = _json_arg(args.output, "--output")
    _open_store()
    reply = store.submit_human(args.instance, output, actor=args.actor)
    print(f"instance {reply.instance} {reply.state}")
    return 0


@command("events")
def cmd_events(args) -> int:
    _open_store()
    after = args.after
    while True:
        events = store.list_events(after, team=args.team, run=args.run, instance=args.instance, limit=args.limit)
        for e in events:
            if args.json:
                print(wire.dumps(e.to_json()), flush=True)
            else:
                move = f"{e.from_state or ''} -> {e.to_state}" if e.to_state else ""
                where = f"run {e.run}" if e.run else e.team
                where += f" instance {e.instance}" if e.instance else ""
                detail = f" {wire.dumps(e.detail)}" if e.detail else ""
                print(f"{e.id:>6} {when(e.at)} {e.kind:<8} {where} {move} by {e.actor}{detail}", flush=True)
            after = e.id
        if not args.follow:
            return 0
        if len(events) < args.limit:
            time.sleep(0.5)


@command("demo")
def cmd_demo(args) -> int:
    from pathlib import Path

    from flow45.demo import Options, run_demo

    return run_demo(Options(
        database=Path(args.database), output=Path(args.output), headless=args.headless, actor=args.actor,
        timeout=args.timeout, pace=args.pace,
    ))


# ---- parsing -----------------------------------------------------------------------------

def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="flow45", description="A store of truth about workflow task instances.")
    parser.add_argument("--as", dest="actor", default=os.environ.get("FLOW45_ACTOR") or getpass.getuser(),
                        help="who acts, as written to the ledger (default: $FLOW45_ACTOR or your login)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, listing: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        if listing:
            p.add_argument("--json", action="store_true", help="print JSON")
        return p

    add("validate", "check a config file or folder").add_argument("path")
    add("deploy", "deploy a config file or folder", True).add_argument("path")
    p = add("workflows", "list deployed workflows", True)
    p.add_argument("--team")
    p = add("trigger", "start a run of TEAM/WORKFLOW", True)
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    p.add_argument("--params", help="run parameters as a JSON object")
    p = add("runs", "list runs, newest first", True)
    p.add_argument("--team")
    p.add_argument("--workflow")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=_positive_int, default=50)
    add("show", "show a run and its task instances", True).add_argument("run", type=_positive_int)
    add("instance", "show a task instance and its attempts", True).add_argument("instance", type=_positive_int)
    p = add("undo", "undo a task instance and what followed from it", True)
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--reason", required=True)
    p.add_argument("--dry-run", action="store_true", help="show the affected set, change nothing")
    p.add_argument("--hold", action="store_true", help="hold the instance instead of offering it again")
    p = add("skip", "skip a task instance; downstream tasks get null for it")
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--reason", required=True)
    add("retry", "offer a failed task instance again").add_argument("instance", type=_positive_int)
    p = add("hold", "pause a task instance that has not started")
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--reason")
    add("release", "let a held task instance go").add_argument("instance", type=_positive_int)
    p = add("cancel", "cancel a run")
    p.add_argument("run", type=_positive_int)
    p.add_argument("--reason")
    p = add("submit", "submit the output of a human task")
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--output", required=True, help="the output as a JSON object")
    p = add("events", "print the ledger", True)
    p.add_argument("--team")
    p.add_argument("--run", type=_positive_int)
    p.add_argument("--instance", type=_positive_int)
    p.add_argument("--after", type=int, default=0, help="only events with a larger id")
    p.add_argument("--limit", type=_positive_int, default=500)
    p.add_argument("--follow", action="store_true", help="keep printing new events")
    add("graph", "print a workflow as a Mermaid flowchart").add_argument("workflow", metavar="TEAM/WORKFLOW")
    add("schema", "print the JSON Schema of messages and functions").add_argument("--team")
    p = add("demo", "run the example workflows end to end and watch them in the dashboard")
    p.add_argument("--headless", action="store_true",
                   help="no dashboard: a scripted operator approves and undoes; print the ledger; exit 0 if all finished")
    p.add_argument("--database", default="flow45-demo.db",
                   help="the SQLite file to (re)create, unless FLOW45_DATABASE_URL names a PostgreSQL database")
    p.add_argument("--output", default="flow45-demo-output", help="folder for the workers' files and the log")
    p.add_argument("--timeout", type=_positive_int, default=60, help="headless: seconds before giving up")
    p.add_argument("--pace", type=float, default=0.6, help="seconds per work step of the example workers")
    p = add("db", "database maintenance")
    p.add_argument("action", choices=["upgrade"])
    cli_service.add_parsers(add)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:
        parser.error(str(exc))
    except Flow45Error as exc:
        print(f"flow45: {exc.message}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `flow45 events | head`: the reader left
        sys.stderr.close()
        return 0
    except Exception as exc:  # a server that cannot be reached is the operator's to fix, not a traceback
        message = _describe_failure(exc)
        if message is None:
            raise
        print(f"flow45: {message}", file=sys.stderr)
        return 1
    return 0


def _describe_failure(exc: Exception) -> str | None:
    """One line for a database or broker failure that reached the top, or None."""
    from flow45.db import describe_db_error

    message = describe_db_error(exc)
    if message is None and "pika" in sys.modules:  # only a command that loaded the broker client fails on it
        import pika.exceptions

        from bridge.failures import describe_amqp_error
        from flow45.settings import current_settings

        if isinstance(exc, pika.exceptions.AMQPError):
            message = describe_amqp_error(exc, current_settings().amqp_url or "")
    return message


from flow45 import cli_service  # noqa: E402  (registers the service commands)

if __name__ == "__main__":
    sys.exit(main())
