"""The `flow45` command: argument parsing and printing only; the core does the work. This package is
the one place that puts Flow45 together: only its commands import the broker client (`bridge`) or the
dashboard (`tui`), and only when they run.

Exit codes: 0 done, 1 refused (with a message naming why), 2 usage.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys

from flow45.cli import (commands, flows, human, notify, optools, prune, service,  # noqa: F401 (registers commands)
                        versions)
from flow45.cli.base import (COMMANDS, UsageError, _add_run_params, _as_of, _moment, _param_pair, _positive_int,
                             _positive_seconds, _run_key, _utc_time, _whole_number, command)
from flow45.cli.output import visible_output
from flow45.errors import Flow45Error


@command("demo")
def cmd_demo(args) -> int:
    from pathlib import Path

    from flow45.cli.demo import OPERATOR, Options, run_demo

    # The demo's approval is assigned to its operator: in the dashboard you act as them unless --as says otherwise.
    return run_demo(Options(
        database=Path(args.database), output=Path(args.output), headless=args.headless,
        actor=args.actor if args.actor_given else OPERATOR,
        timeout=args.timeout, pace=args.pace,
    ))


# ---- parsing -----------------------------------------------------------------------------

class _Parser(argparse.ArgumentParser):
    """Options only as written in full: `deploy DIR --pr` retiring workflows as `--prune` would is
    too easy, and a script's abbreviation would change meaning when an option sharing its start is
    added. Each subcommand's parser is one of these too (argparse makes them of the parent's class)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, allow_abbrev=False, **kwargs)
        self.commands: dict[str, argparse.ArgumentParser] = {}  # its subcommands' parsers, by name

    def of(self, args) -> argparse.ArgumentParser:
        """The parser of the (sub)command `args` are for: it reports their errors, with its own usage."""
        found = self.commands.get(getattr(args, "command", None)) or self.commands.get(getattr(args, "action", None))
        return found.of(args) if isinstance(found, _Parser) else self


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="flow45", description="A store of truth about workflow task instances.")
    parser.add_argument("--as", dest="actor", default=None,
                        help="who acts, as written to the ledger (default: $FLOW45_ACTOR or your login); "
                             "on the database only: through the broker it is your broker user")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, help_text: str, listing: bool = False) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        # `flow45 undo 7 --as ann` as well as `flow45 --as ann undo 7`; unset here, the one before stands.
        p.add_argument("--as", dest="actor", default=argparse.SUPPRESS, metavar="NAME",
                       help="who acts, as written to the ledger (on the database only)")
        if listing:
            p.add_argument("--json", action="store_true", help="print JSON")
        return p

    add("validate", "check a config file or folder").add_argument("path")
    p = add("deploy", "deploy a config file or folder", True)
    p.add_argument("path")
    p.add_argument("--prune", action="store_true",
                   help="retire the team's deployed workflows that the config leaves out (their history stays)")
    p.add_argument("--dry-run", action="store_true",
                   help="say what the deploy would do (new versions, what they change, what --prune retires), "
                        "keep nothing")
    p = add("workflows", "list deployed workflows", True)
    p.add_argument("--team")
    p = add("trigger", "start a run of TEAM/WORKFLOW", True)
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    _add_run_params(p)
    p.add_argument("--logical-time", type=_utc_time, metavar="TIME",
                   help="the time the run works for (ISO 8601, UTC without an offset), e.g. 2026-03-01T06:00:00Z")
    p.add_argument("--priority", type=int, choices=range(10), metavar="0-9",
                   help="an urgent run: each of its tasks' priority raised to at least this, so that its offers go "
                        "ahead of other runs' in their queues")
    p.add_argument("--key", type=_run_key, metavar="KEY",
                   help="your name for the run (an order number): the workflow has one run per key, and a trigger "
                        "with a key it has a run for answers that run (the same params and logical time), so a "
                        "trigger sent again does not run twice")
    p.add_argument("--wait", action="store_true",
                   help="then wait until the run finishes; exit as `wait` does: 0 succeeded, 3 failed, 4 cancelled, "
                        "5 timed out")
    p.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS", help="with --wait: give up after this long")
    p = add("runs", "list runs, newest first", True)
    p.add_argument("--team")
    p.add_argument("--workflow")
    p.add_argument("--status", choices=["queued", "running", "succeeded", "failed", "cancelled"])
    p.add_argument("--limit", type=_positive_int, default=50)
    p.add_argument("--version", type=_positive_int, help="with --workflow: only runs following this version of it")
    p.add_argument("--key", type=_run_key, metavar="KEY", help="only the runs triggered with this key")
    p.add_argument("--param", type=_param_pair, action="append", default=[], metavar="KEY=VALUE",
                   help="only runs whose params have KEY with this value (compared without case; repeatable)")
    p.add_argument("--params", help="only runs whose params have these keys with these values (a JSON object)")
    p.add_argument("--since", type=_moment, metavar="DATE|TIME|AGO",
                   help="only runs triggered at or after this time (UTC), or this long ago (2d, 90m)")
    p.add_argument("--until", type=_moment, metavar="DATE|TIME|AGO",
                   help="only runs triggered before this time, up to the end of this day (UTC), or this long ago")
    p = add("show", "show a run and its task instances", True)
    p.add_argument("run", type=_positive_int)
    p.add_argument("--as-of", type=_as_of, metavar="EVENT_ID|TIME",
                   help="the run as it was after this ledger event, or at this UTC time (2026-03-01T06:00:00Z), "
                        "rebuilt from the ledger")
    p = add("stats", "per-task p50/p95 duration and failure rate over a workflow's recent runs", True)
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    p.add_argument("--runs", type=_positive_int, default=50, help="how many of the newest runs (at most 500)")
    p = add("versions", "a workflow's deployed versions, newest first: who deployed each and when, its runs, "
                        "and what it changed from the one before", True)
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    p.add_argument("--limit", type=_positive_int, default=20, help="how many of the newest versions (at most 500)")
    p.add_argument("--since", type=_positive_int, metavar="VERSION",
                   help="also what changed from this version to the current one, all at once (a run's version: "
                        "what it does differently from a run triggered now)")
    add("instance", "show a task instance and its attempts", True).add_argument("instance", type=_positive_int)
    p = add("undo", "undo a task instance and what followed from it", True)
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--reason", required=True)
    p.add_argument("--dry-run", action="store_true", help="show the affected set, change nothing")
    p.add_argument("--hold", action="store_true", help="hold the instance instead of offering it again")
    p.add_argument("--cancel-connected", action="store_true",
                   help="also cancel the unfinished runs that the run started (connected workflows)")
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
    p = add("note", "add a note to a run, or to one of its tasks: kept in its ledger, shown by show and the dashboard")
    p.add_argument("run", type=_positive_int)
    p.add_argument("text", help="what you noticed or decided, up to 2,000 characters")
    p.add_argument("--task", help="a note on this task's instance of the run (shown by instance too)")
    p = add("submit", "submit the output of a human task")
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--output", required=True, help="the output as a JSON object")
    p.add_argument("--comment", help="why you decided so; kept with the decision")
    p = add("events", "print the ledger", True)
    p.add_argument("--team")
    p.add_argument("--run", type=_positive_int)
    p.add_argument("--instance", type=_positive_int)
    p.add_argument("--after", type=_whole_number, metavar="EVENT_ID",
                   help="the events after this id, oldest first (0: from the ledger's start); "
                        "without it, the newest --limit events")
    p.add_argument("--limit", type=_positive_int, default=500, help="print at most this many (default 500)")
    p.add_argument("--since", type=_moment, metavar="DATE|TIME|AGO",
                   help="only events at or after this time (UTC), or this long ago (2d, 90m)")
    p.add_argument("--until", type=_moment, metavar="DATE|TIME|AGO",
                   help="only events before this time, up to the end of this day (UTC), or this long ago")
    p.add_argument("--follow", action="store_true", help="then keep printing new events as they come")
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
    flows.add_parsers(add)
    prune.add_parsers(add)
    optools.add_parsers(add)
    notify.add_parsers(add)
    human.add_parsers(add)
    service.add_parsers(add)
    parser.commands = sub.choices  # name -> its parser, which reports a UsageError with its own usage
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args, unknown = parser.parse_known_args(argv)
    if unknown:  # said by the command they were given to, as argparse says its own refusals
        parser.of(args).error(f"unrecognized arguments: {' '.join(unknown)}")
    args.actor_given = args.actor is not None
    if args.actor is None:
        args.actor = os.environ.get("FLOW45_ACTOR") or getpass.getuser()
    # The dashboards draw on the terminal themselves (and show such text as text).
    with visible_output(enabled=args.command not in ("tui", "demo")):
        return _run(parser, args)


def _run(parser: _Parser, args) -> int:
    try:
        return COMMANDS[args.command](args)
    except UsageError as exc:  # said as argparse says it, with the command's own usage
        parser.of(args).error(str(exc))
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
    """One line for a database, broker or file failure that reached the top, or None."""
    from flow45.db import describe_db_error

    if isinstance(exc, OSError) and exc.filename is not None:  # a folder that is read-only, a full disk…
        return f"{exc.filename}: {exc.strerror or exc}"
    message = describe_db_error(exc)
    if message is None and "pika" in sys.modules:  # only a command that loaded the broker client fails on it
        import pika.exceptions

        from bridge.failures import describe_amqp_error
        from flow45.settings import current_settings

        if isinstance(exc, pika.exceptions.AMQPError):
            message = describe_amqp_error(exc, current_settings().amqp_url or "")
    return message

