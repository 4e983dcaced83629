"""The operator's everyday tools on the command line: set an output by hand."""

from __future__ import annotations

from flow45.cli.base import _client, _json_arg, _positive_int, command
from flow45.cli.output import print_json


def add_parsers(add) -> None:
    p = add("set-output", "set the output of a worker task by hand (validated, kept as your attempt)", True)
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--output", required=True, help="the output as a JSON object, checked against the task's type")
    p.add_argument("--reason", required=True, help="why, kept with the attempt and in the ledger")


@command("set-output")
def cmd_set_output(args) -> int:
    output = _json_arg(args.output, "--output")
    state = _client(args).set_output(args.instance, output, args.reason)
    if args.json:
        print_json({"instance": args.instance, "state": state})
    else:
        print(f"instance {args.instance} {state}: output set by hand")
    return 0
