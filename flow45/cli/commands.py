"""The commands about the store: configuration, runs, instances, the ledger and the database."""

from __future__ import annotations

import datetime as dt
import difflib
import sys
import time
from pathlib import Path

from flow45 import states as S
from flow45 import wire
from flow45.cli.base import (UsageError, _client, _json_arg, _params, _team_workflow, command, remote_mode,
                             one_more, say_cut, say_if_no_team, suggesting, workflow_read)
from flow45.cli.output import counts_text, print_json, print_table, progress_bar
from flow45.clock import shown
from flow45.cli.versions import print_deploy_changes
from flow45.clock import utcnow
from flow45.timing import instance_time, instance_wait, last_run_text, next_run_text, run_time, run_wait, short_span


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

    load_config(args.path)  # a config with problems is refused before the store is touched
    report = _client(args, create=not args.dry_run).deploy(Path(args.path), prune=args.prune, dry_run=args.dry_run)
    if not report.dry_run:
        _declare_queues(sorted({w.team for w in report.workflows}))
    if args.json:
        print_json(report.to_json())
    else:
        if report.dry_run:
            print(f"dry run: what deploying {args.path} would do; nothing was deployed")
        print_table(["team", "workflow", "version", "change"], [(w.team, w.workflow, w.version, w.change) for w in report.workflows])
        print_deploy_changes(report)
        if report.missing:
            names = ", ".join(f"{w.team}/{w.workflow}" for w in report.missing)
            print(f"deployed but not in {args.path}: {names}; deploy --prune retires them (their history stays)")
    return 0


def _declare_queues(teams: list[str]) -> None:
    """With the database and the installation's broker both configured, the deployed functions' queues,
    declared now: a worker started after the deploy can consume them before the bridge's first offer."""
    from flow45.settings import current_settings

    settings = current_settings()
    if remote_mode(settings) or not settings.amqp_url:
        return  # through the broker, the bridge declares them before it answers the deploy
    from bridge.failures import describe_amqp_error
    from bridge.topology import declare_new_functions

    for team in teams:
        try:
            declare_new_functions(settings.amqp_url, team, frozenset())
        except Exception as exc:  # noqa: BLE001 - deployed all the same; the bridge declares them at its first offer
            why = describe_amqp_error(exc, settings.amqp_url) or f"{type(exc).__name__}: {exc}"
            print(f"flow45: deployed; {team}'s queues are not declared yet ({why}): the bridge declares each when "
                  "it first has an offer for it", file=sys.stderr)


@command("workflows")
def cmd_workflows(args) -> int:
    client = _client(args)
    views = client.workflows(args.team)
    if not views and args.team:
        say_if_no_team(client, args.team)
    if args.json:
        print_json([v.to_json() for v in views])
    else:
        now = utcnow()
        print_table(
            ["team", "workflow", "version", "tasks", "schedule", "next run", "last run", "description"],
            [(v.team, v.name, v.version, v.tasks, _schedule_text(v), _next_run_text(v, now), last_run_text(v, now),
              v.description) for v in views],
        )
    return 0


def _next_run_text(view, now: dt.datetime) -> str | None:
    from flow45.scheduler import on_time

    return next_run_text(view, now, on_time())[0]


def _schedule_text(view) -> str | None:
    if view.paused is None:
        return view.schedule
    return f"{view.schedule or 'none'} ({view.paused_text()})"


@command("graph")
def cmd_graph(args) -> int:
    team, name = _team_workflow(args.workflow)
    client = _client(args)
    with suggesting(client, team, name):
        sys.stdout.write(client.graph(team, name))
    return 0


@command("schema")
def cmd_schema(args) -> int:
    document = _client(args).schema(args.team)
    print_json(document)
    if args.team and not any(name.startswith(f"{args.team}.") for name in document["$defs"]):
        print(f"flow45: team {args.team} has no functions deployed (that you may see): only the messages' "
              "schemas are printed", file=sys.stderr)
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
    from flow45.cli.flows import wait_for_run

    if args.timeout is not None and not args.wait:
        raise UsageError("--timeout is for --wait: how long to wait for the run to finish")
    team, workflow = _team_workflow(args.workflow)
    params = _params(args)
    client = _client(args)
    with suggesting(client, team, workflow):
        triggered = client.trigger(team, workflow, params, args.logical_time, args.priority, args.key)
    run_id = triggered.run
    view = client.run_row(run_id) or client.run(run_id)
    if not args.json:
        print(f"run {run_id} of {team}/{workflow} v{view.version}: {view.status}{triggered.again(args.key)}",
              flush=True)
    code = 0
    if args.wait:
        code, view = wait_for_run(client, run_id, args.timeout)
        if not args.json and view.status in S.FINISHED_RUN:
            print(f"run {run_id} {view.status}")
    if args.json:
        print_json({"run": run_id, "status": view.status, "existing": triggered.existing, "key": args.key})
    return code


def _say_if_not_deployed(client, team: str | None, workflow: str) -> None:
    """An empty listing for a workflow name nothing is deployed as: a typo, most likely (on stderr)."""
    deployed = [w for w in client.workflows() if team is None or w.team == team]
    if any(w.name == workflow for w in deployed):
        return
    close = difflib.get_close_matches(workflow, sorted({w.name for w in deployed}), n=3, cutoff=0.5)
    hint = (f"; did you mean {', '.join(close)}?" if close
            else " (--workflow takes a name; give the team with --team)" if "/" in workflow else "")
    print(f"flow45: no workflow named {workflow} is deployed" + (f" in team {team}" if team else "") + hint,
          file=sys.stderr)


def _window(args) -> tuple[dt.datetime | None, dt.datetime | None]:
    """`--since` and `--until` as naive UTC times; `--until` a date: all of that day."""
    since = args.since[0] if args.since else None
    until, only_a_date = args.until or (None, False)
    if only_a_date:  # after the calendar's last day, nothing
        until = until + dt.timedelta(days=1) if until.date() < dt.date.max else None
    if since is not None and until is not None and since >= until:
        raise UsageError(f"--since {since:%Y-%m-%d %H:%M:%S} is not before --until {until:%Y-%m-%d %H:%M:%S}"
                         + (" (the end of the day it names)" if only_a_date else "") + ": no time is in both")
    return since, until


@command("runs")
def cmd_runs(args) -> int:
    from flow45.client import RunFilter
    from flow45.store.rules_human import relative_due

    params = _params(args, filtering=True) or {}
    since, until = _window(args)
    if args.version is not None and not args.workflow:
        raise UsageError("--version needs --workflow: each workflow numbers its own versions")
    where = RunFilter(args.team, args.workflow, args.status, params=tuple(sorted(params.items())), since=since,
                      until=until, version=args.version, key=args.key)
    client = _client(args)
    views = client.runs(where, limit=one_more(args.limit))  # one more than shown: whether more match
    cut, views = len(views) > args.limit, views[:args.limit]
    if not views and args.workflow:
        _say_if_not_deployed(client, args.team, args.workflow)
    elif not views and args.team:
        say_if_no_team(client, args.team)
    if cut:
        say_cut("runs match", args.limit, " (the newest); --limit N shows more")
    if args.json:
        print_json([v.to_json() for v in views])
        return 0
    now = utcnow()
    print_table(
        ["run", "team", "workflow", "v", "status", "logical time", "started", "finished", "queued", "ran", "attempts",
         "progress", "waiting for"],
        [
            (
                v.id, v.team, v.workflow, v.version, v.status, shown(v.logical_time), shown(v.started_at),
                shown(v.finished_at), short_span(run_wait(v, now)), short_span(run_time(v, now)), v.attempts_made,
                progress_bar(v.counts.get("succeeded", 0) + v.counts.get("skipped", 0), sum(v.counts.values())),
                relative_due(v.waiting_for, now),
            )
            for v in views
        ],
    )
    return 0


@command("show")
def cmd_show(args) -> int:
    from flow45.store.rules_human import relative_due

    client = _client(args)
    if args.as_of is None:
        view = client.run(args.run, attempts=args.json)
    elif isinstance(args.as_of, int):
        view = client.run_as_of(args.run, event=args.as_of)
    else:
        view = client.run_as_of(args.run, at=args.as_of)
    if args.json:
        print_json(view.to_json())
        return 0
    print(f"run {view.id}  {view.team}/{view.workflow} v{view.version}{view.newer_version()}  {view.status}"
          + (f"  (as of ledger event {view.as_of}, {shown(view.as_of_at)})" if view.as_of_at else ""))
    print(f"  triggered {shown(view.created_at)} by {view.triggered_by} ({view.trigger})"
          + (f", logical time {shown(view.logical_time)}" if view.logical_time else "")
          + (f", key {view.key}" if view.key else ""))
    print(f"  started {shown(view.started_at)}  finished {shown(view.finished_at)}  {counts_text(view.counts)}")
    if view.cancelled_by:
        print(f"  cancelled by {view.cancelled_by}" + (f": {view.cancel_reason}" if view.cancel_reason else ""))
    for note in view.notes:
        print(f"  {note.said()}")
    now = view.as_of_at or utcnow()  # the run as it was is measured up to that moment
    print(f"  queued {short_span(run_wait(view, now))}  ran {short_span(run_time(view, now))}  "
          f"attempts {view.attempts_made}")
    if view.waiting_for:
        print(f"  waiting for {relative_due(view.waiting_for, now)}")
    if view.params:
        print(f"  params {wire.dumps(view.params)}")
    print()
    print_table(
        ["instance", "task", "state", "attempt", "wait", "ran", "worker", "progress", "after"],
        [
            (
                i.id, i.task + (" (human)" if i.human else " (timer)" if not i.function else ""), i.state,
                i.attempt or None, short_span(instance_wait(i, now)), short_span(instance_time(i, now)),
                i.worker or (f"(taken by {i.taken_by})" if i.taken_by else None),
                (f"{i.progress_pct:.0f}% " if i.progress_pct is not None else "") + (i.progress_message or "")
                + (f"due {shown(i.not_before)}" if i.state == "waiting" else ""),
                ", ".join(i.upstream),
            )
            for i in view.instances
        ],
    )
    failed = [i for i in view.instances if i.state == "failed"]
    skipped = [i for i in view.instances if i.state == "skipped" and i.skip_reason]
    queued = [i for i in view.instances if i.queued_for]
    if failed or skipped or queued:
        print()
    for i in failed:
        print(f"  {i.task} (instance {i.id}) failed, attempt {i.attempt}: {i.error or '(no error recorded)'}")
        _print_log(i.log_url, i.log_tail, "    ", lines=5)
    for i in skipped:
        print(f"  {i.task} (instance {i.id}) skipped: {i.skip_reason}")
    for i in queued:
        print(f"  {i.task} (instance {i.id}) queued, waiting for {i.queued_for}")
    return 0


@command("stats")
def cmd_stats(args) -> int:
    team, workflow, stats = workflow_read(args, "runs", lambda client, t, w, n: client.stats(t, w, n))
    if args.json:
        print_json(stats.to_json())
        return 0
    print(f"{team}/{workflow}: the newest {stats.runs} run(s)"
          + (f" since {shown(stats.since)}" if stats.since else "")
          + f", {stats.finished} finished, {stats.failed} failed; a succeeded run took "
          f"p50 {short_span(stats.run_p50)}, p95 {short_span(stats.run_p95)}")
    print_table(
        ["task", "attempts", "failed", "failure rate", "p50", "p95"],
        [(t.task, t.attempts, t.failed, f"{t.failure_rate:.0%}" if t.failure_rate is not None else None,
          short_span(t.p50), short_span(t.p95)) for t in stats.tasks],
    )
    return 0


@command("instance")
def cmd_instance(args) -> int:
    view = _client(args).instance(args.instance)
    if args.json:
        print_json(view.to_json())
        return 0
    print(f"instance {view.id}  {view.task} of run {view.run}  {view.state}  attempt {view.attempt}  "
          + (f"function {view.function}" if view.function else "timer")
          + (f", due {shown(view.not_before)}" if view.state == "waiting" else "")
          + (f", times out {shown(view.timeout_at)}" if view.timeout_at else "")
          + (f", to be claimed by {shown(view.lease_expires_at)}" if view.state == "available" and view.lease_expires_at
             else "")
          + (f": {view.skip_reason}" if view.skip_reason else "")
          + (f", waiting for {view.queued_for}" if view.queued_for else ""))
    for note in view.notes:
        print(f"  {note.said(with_task=False)}")
    for a in view.attempts:
        mark = " (archived)" if a.archived else ""
        print(f"  attempt {a.number}: {a.status}{mark} by {a.worker} {shown(a.claimed_at)} -> {shown(a.finished_at)}")
        if a.comment:
            print(f"    comment {a.comment}")
        if a.lineage:
            print("    built on " + ", ".join(link.text() for link in a.lineage))
        if a.used_by:
            print("    output went to " + ", ".join(use.text() for use in a.used_by))
        if a.output is not None:
            print(f"    output {wire.dumps(a.output)}")
        if a.error:
            print(f"    error {a.error}")
        if a.checkpoint is not None:
            print(f"    checkpoint {wire.dumps(a.checkpoint)}")
        _print_log(a.log_url, a.log_tail, "    ")
    return 0


def _print_log(url: str | None, tail: str | None, indent: str, lines: int | None = None) -> None:
    """An attempt's log link, and its log tail (the last `lines` of it, if given) indented under it."""
    if url:
        print(f"{indent}log {url}")
    if tail:
        shown = tail.rstrip("\n").splitlines()[-lines:] if lines else tail.rstrip("\n").splitlines()
        print(f"{indent}log tail:")
        for line in shown:
            print(f"{indent}  | {line}")


@command("note")
def cmd_note(args) -> int:
    _client(args).note(args.run, args.text, task=args.task)
    print(f"note added to run {args.run}" + (f", task {args.task}" if args.task else ""))
    return 0


@command("cancel")
def cmd_cancel(args) -> int:
    _client(args).cancel(args.run, args.reason)
    print(f"run {args.run} cancelled")
    return 0


# ---- instances ---------------------------------------------------------------------------

@command("undo")
def cmd_undo(args) -> int:
    plan = _client(args).undo(args.instance, args.reason, hold=args.hold, dry_run=args.dry_run,
                              cancel_connected=args.cancel_connected)
    if args.json:
        print_json(plan.to_json())
        return 0
    verb = "would change" if plan.dry_run else "changed"
    print(f"undo of instance {plan.instance} (run {plan.run}) {verb} {len(plan.affected)} instance(s):")
    print_table(
        ["instance", "task", "state", "becomes", "undo notice"],
        [(a.instance, a.task, a.state, a.becomes, "yes" if a.notify else "") for a in plan.affected],
    )
    if plan.run_waits:
        print(f"run {plan.run} {'would wait' if plan.dry_run else 'waits'} queued for a slot ({plan.run_waits}); "
              "it starts when one frees")
    if plan.connected:
        cancels = [c for c in plan.connected if c.cancel]
        if plan.cancel_connected:
            said = f"{'would cancel' if plan.dry_run else 'cancelled'} {len(cancels)} unfinished"
        else:
            said = f"left as they are ({len(cancels)} unfinished: --cancel-connected cancels them)"
        print(f"runs it started (connected workflows), {said}:")
        print_table(["run", "workflow", "status", "with the undo"],
                    [(c.run, f"{c.team}/{c.workflow}", c.status, c.fate(plan.cancel_connected))
                     for c in plan.connected])
    return 0


@command("skip")
def cmd_skip(args) -> int:
    _client(args).skip(args.instance, args.reason)
    print(f"instance {args.instance} skipped")
    return 0


@command("retry")
def cmd_retry(args) -> int:
    client = _client(args)
    client.retry(args.instance)
    view = client.instance(args.instance)
    if view.state == "pending":  # its finished run was given work again while its workflow's slots are taken
        print(f"instance {args.instance} retried: run {view.run} waits queued for a slot of its workflow's "
              "max_active_runs, and offers it when it starts")
    else:
        print(f"instance {args.instance} offered again")
    return 0


@command("hold")
def cmd_hold(args) -> int:
    _client(args).hold(args.instance, args.reason)
    print(f"instance {args.instance} held")
    return 0


@command("release")
def cmd_release(args) -> int:
    state = _client(args).release(args.instance)
    print(f"instance {args.instance} released: {state}")
    return 0


@command("submit")
def cmd_submit(args) -> int:
    output = _json_arg(args.output, "--output")
    state = _client(args).submit(args.instance, output, args.comment)
    print(f"instance {args.instance} {state}")
    return 0


@command("events")
def cmd_events(args) -> int:
    client = _client(args)
    since, until = _window(args)
    if args.follow and until is not None:
        raise UsageError("--follow prints events as they come: it takes no --until")
    chosen = {"team": args.team, "run": args.run, "instance": args.instance, "since": since, "until": until}
    # One more than shown: whether more match, which is said (a follow after --after reads them anyway).
    if args.after is None:  # the ledger's end, as `tail` shows a file's: a long ledger's start is old news
        events = client.tail_events(n=one_more(args.limit), **chosen)
        cut = len(events) > args.limit
        events = events[-args.limit:]
        how = " (the newest); --limit N shows more, --after 0 reads from the start"
    else:
        events = client.events(args.after, limit=one_more(args.limit), **chosen)
        cut = len(events) > args.limit and not args.follow
        events = events[:args.limit]
        how = f" (the oldest after {args.after}); --after {events[-1].id if events else 0} reads on"
    for e in events:
        _print_event(e, args.json)
    if cut:
        say_cut("events match", args.limit, how)
    if not events and args.team:
        say_if_no_team(client, args.team)
    if not events and args.run is not None:
        client.run(args.run)  # not found (or another team's): said as `show` says it
    if not events and args.instance is not None:
        client.instance(args.instance)
    if args.follow:
        floor = args.after if args.after is not None else (events[0].id - 1 if events else 0)
        return _follow_events(client, args, since, floor, events)
    return 0


def _follow_events(client, args, since: dt.datetime | None, floor: int, printed: list) -> int:
    """After the `printed` events (those after `floor`): through the broker, the team's event stream
    brings each event, and the ledger is read by id only when the stream may have skipped some (after
    connecting, or when another bridge took over publishing it). On the database, the ledger is read
    every half second. Either way the reads begin before the oldest id skipped over (by the first read
    too) that may still commit, so an event committed late (after larger ids) is printed too, when it
    comes, and each event once."""
    import queue

    from flow45.client.follower import Holes, Seen

    arrived: queue.Queue = queue.Queue()  # streamed events, and None: read the ledger by id
    pushed = client.subscribe(lambda: arrived.put(None), arrived.put) is not None
    holes = Holes(writers=client.ledger_writers())
    holes.read(floor, [e.id for e in printed])
    seen, last = Seen(), printed[-1].id if printed else floor
    for e in printed:
        seen.add(e.id)

    def show(e) -> None:
        nonlocal last
        if e.id > floor and (since is None or e.at >= since) and seen.add(e.id):
            _print_event(e, args.json)
            last = max(last, e.id)

    def read_through() -> None:
        after = holes.reread_after(last)
        while True:
            page = client.events(after, team=args.team, run=args.run, instance=args.instance, limit=args.limit)
            holes.read(after, [e.id for e in page])
            for e in page:
                show(e)
            if len(page) < args.limit:
                return
            after = page[-1].id

    read_through()
    while True:
        if not pushed:
            time.sleep(0.5)
            read_through()
            continue
        event = arrived.get()
        if event is None:
            read_through()
        elif _matches(event, args):
            show(event)


def _matches(event, args) -> bool:
    return ((args.team is None or event.team == args.team) and (args.run is None or event.run == args.run)
            and (args.instance is None or event.instance == args.instance))


def _print_event(e, as_json: bool) -> None:
    if as_json:
        print(wire.dumps(e.to_json()), flush=True)
        return
    move = f"{e.from_state or ''} -> {e.to_state}" if e.to_state else ""
    where = f"run {e.run}" if e.run else e.team
    where += f" instance {e.instance}" + (f" ({e.task})" if e.task else "") if e.instance else ""
    detail = f" {wire.dumps(e.detail)}" if e.detail else ""
    print(f"{e.id:>6} {shown(e.at)} {e.kind:<8} {where} {move} by {e.actor}{detail}", flush=True)
