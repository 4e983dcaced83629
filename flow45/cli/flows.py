"""`flow45 callback` (complete or fail a parked attempt by its key) and `flow45 wait` (block until a
run finishes; the exit code says how, for scripts and CI)."""

from __future__ import annotations

import sys
import threading
import time

from flow45 import states as S
from flow45.cli.base import _client, _json_arg, _positive_int, _positive_seconds, command

# `wait`'s exit codes. 1 (refused: no such run, no database) and 2 (usage) keep their meaning for
# every command, so a script can tell "the run failed" from "the question was wrong".
WAIT_CODES = {S.SUCCEEDED: 0, S.FAILED: 3, S.CANCELLED: 4}
TIMED_OUT = 5
FIRST_POLL, POLL_CAP = 0.2, 5.0  # seconds between looks at the run: growing by half each time, capped


def _pause(seconds: float) -> None:
    threading.Event().wait(seconds)


def add_parsers(add) -> None:
    p = add("callback", "complete or fail a task attempt a worker parked under a callback key")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    p.commands = actions.choices
    done = actions.add_parser("complete", help="complete it with its output")
    done.add_argument("key")
    done.add_argument("--output", required=True, help="the output as a JSON object, checked against the task's type")
    failed = actions.add_parser("fail", help="fail it (retried while the task has retries left)")
    failed.add_argument("key")
    failed.add_argument("--error", required=True)
    failed.add_argument("--no-retry", action="store_true", help="fail it for good, whatever retries are left")
    p = add("wait", "wait until a run finishes; exit 0 succeeded, 3 failed, 4 cancelled, 5 timed out")
    p.add_argument("run", type=_positive_int)
    p.add_argument("--timeout", type=_positive_seconds, metavar="SECONDS", help="give up after this long")


@command("callback")
def cmd_callback(args) -> int:
    client = _client(args)
    if args.action == "complete":
        instance, state = client.callback_complete(args.key, _json_arg(args.output, "--output"))
    else:
        instance, state = client.callback_fail(args.key, args.error, retryable=not args.no_retry)
    print(f"instance {instance} {state}")
    return 0


@command("wait")
def cmd_wait(args) -> int:
    code, view = wait_for_run(_client(args), args.run, args.timeout)
    if view.status in S.FINISHED_RUN:
        print(f"run {view.id} {view.status}")
    return code


def wait_for_run(client, run_id: int, timeout: float | None):
    """Look at the run (one row, no instances) until it is finished, further apart each time: `wait`'s
    exit code and the run as last seen. A timeout is said on stderr."""
    started = time.monotonic()
    delay = FIRST_POLL
    while True:
        view = client.run(run_id) if (row := client.run_row(run_id)) is None else row  # raises NotFound
        if view.status in S.FINISHED_RUN:
            return WAIT_CODES[view.status], view
        left = None if timeout is None else timeout - (time.monotonic() - started)
        if left is not None and left <= 0:
            print(f"flow45: run {view.id} is still {view.status} after {timeout:g}s", file=sys.stderr)
            return TIMED_OUT, view
        _pause(delay if left is None else min(delay, left))
        delay = min(delay * 1.5, POLL_CAP)
