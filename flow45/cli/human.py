"""Human tasks on the command line: `flow45 inbox` (what waits for a person's decision, overdue
first), `flow45 take` and `flow45 hand-back`. `flow45 submit` (with `--comment`) is beside the other
operator actions."""

from __future__ import annotations

from flow45 import wire
from flow45.cli.base import _client, _positive_int, command, one_more, say_cut, say_if_no_team
from flow45.cli.output import print_json
from flow45.clock import utcnow

SHOWS = ("all", "mine", "groups", "overdue")


def add_parsers(add) -> None:
    p = add("inbox", "list the human tasks waiting for a decision, overdue first", True)
    p.add_argument("--show", choices=SHOWS, default="all",
                   help="mine: taken by you or naming you; groups: naming a group you are in; overdue: due passed")
    p.add_argument("--team")
    p.add_argument("--limit", type=_positive_int, default=100)
    p = add("take", "take a human task, or give it to someone with --for: others see who has it (from someone "
                    "else: give a --reason)")
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--for", dest="for_user", metavar="USER",
                   help="give it to this operator, who must be allowed to decide it (as you must)")
    p.add_argument("--reason", help="why you take it over from whoever has it")
    add("hand-back", "let go of a human task you have taken").add_argument("instance", type=_positive_int)


@command("inbox")
def cmd_inbox(args) -> int:
    from flow45.store.rules_human import due_text

    client = _client(args)
    items = client.human_inbox(args.team, limit=one_more(args.limit), show=args.show)  # one more: whether more wait
    if len(items) > args.limit:
        items = items[:args.limit]
        say_cut("human tasks wait", args.limit, "; --limit N shows more")
    if not items and args.team:
        say_if_no_team(client, args.team)
    if args.json:
        print_json([item.to_json() for item in items])
        return 0
    if not items:
        print(f"no human tasks waiting ({args.show})")
        return 0
    for item in items:
        i, run = item.instance, item.run
        where = f"{i.team}/{run.workflow} run {run.id}" if run else f"{i.team} run {i.run}"
        due = due_text(i.due_at, item.checked_at or utcnow())  # the store's clock, which decided `overdue`
        print(f"instance {i.id}  {where}  {i.task}" + (f"  {due.replace('overdue', 'OVERDUE')}" if due else ""))
        print(f"  {f'taken by {i.taken_by}' if i.taken_by else 'not taken'}; who may decide: {item.who}")
        if run and run.params:
            print(f"  params  {wire.dumps(run.params)}")
        for param, output in item.inputs.items():
            print(f"  input   {param} = {wire.dumps(output)}")
    return 0


@command("take")
def cmd_take(args) -> int:
    previous = _client(args).take(args.instance, args.reason, args.for_user)
    print(f"instance {args.instance} taken" + (f" for {args.for_user}" if args.for_user else "")
          + (f" over from {previous}" if previous else ""))
    return 0


@command("hand-back")
def cmd_hand_back(args) -> int:
    _client(args).hand_back(args.instance)
    print(f"instance {args.instance} handed back")
    return 0
