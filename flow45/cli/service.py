"""The long-running commands and the ones that go through RabbitMQ. pika is imported only here,
inside the commands, so `import flow45` never loads it."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from flow45 import systemd
from flow45.cli.base import (UsageError, _add_run_params, _params, _positive_int, _positive_seconds, _run_key,
                             _team_workflow, command, read_settings, told_team)
from flow45.cli.output import print_json
from flow45.errors import Flow45Error
from flow45.outage import on_stop_signals


def _logging() -> None:
    level = logging.DEBUG if os.environ.get("FLOW45_DEBUG") else logging.INFO
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    from bridge.logs import quiet_pika  # no pika import: `scheduler` needs no broker

    quiet_pika()


def _amqp_url() -> str:
    url = read_settings().amqp_url
    if not url:
        raise Flow45Error("no broker configured: set FLOW45_AMQP_URL (or amqp_url in the settings file)")
    return url


def _metrics(args, settings) -> None:
    """Serve Prometheus metrics when --metrics-port or metrics_port says where."""
    port = args.metrics_port or settings.metrics_port
    if port:
        from flow45.metrics import serve_metrics

        serve_metrics(port, settings.metrics_address, settings.database_url)


def _port(text: str) -> int:
    port = _positive_int(text)
    if port > 65535:
        raise argparse.ArgumentTypeError(f"{text} is not a port (1-65535)")
    return port


def _add_metrics_port(parser) -> None:
    parser.add_argument("--metrics-port", type=_port, metavar="PORT",
                        help="serve Prometheus metrics on this port (default: metrics_port of the settings; none: off)")


@command("bridge")
def cmd_bridge(args) -> int:
    return BRIDGE_ACTIONS[args.action](args)


def bridge_run(args) -> int:
    from bridge.service import Bridge
    from flow45.heartbeat import Heartbeat

    _amqp_url()  # none set: said plainly, before anything starts
    _logging()
    settings = read_settings()
    _metrics(args, settings)
    beats = Heartbeat(settings.heartbeat_file)
    bridge = Bridge(settings, batch_size=args.batch, heartbeat=beats, connections=args.connections,
                    side_processes=True)
    return _run_parts({"bridge": bridge.run}, bridge.stop, beats)


def bridge_setup(args) -> int:
    from bridge.setup_broker import Rabbitmqctl, as_shell, plan, regrants, revocations, revoking_note, vhost_of

    settings = read_settings()
    if args.print:  # what a run would do, without passwords: it generates them when it runs
        commands, _ = plan(settings, placeholders=True)
        sys.stdout.write(
            "# `flow45 bridge setup-broker` runs these, with a new random password for each team user,\n"
            "# printed once. To run them yourself, set each PASSWORD_USER variable first (the bridge\n"
            "# user's is the password in amqp_url).\n" + as_shell(commands, args.rabbitmqctl)
            + revoking_note(settings, args.rabbitmqctl)
        )
        return 0
    ctl = Rabbitmqctl(args.rabbitmqctl)
    held = ctl.held(settings)  # before the grants below replace what the users held
    commands, passwords = plan(settings)
    existing = {argv[1] for argv in commands if argv[0] == "add_user" and held.holds(argv)}  # passwords stay
    ctl.define([argv for argv in commands if not held.holds(argv)
                and not (argv[0] == "set_user_tags" and argv[1] in existing)])  # an administrator's user keeps its tags
    vhost = vhost_of(settings)
    for user, argvs in regrants(settings, held).items():
        for argv in argvs:
            if not held.holds(argv):
                ctl.run(argv)
        print(f"{user}: permissions on vhost {vhost!r} changed to its team's in the settings; connections closed")
    for user, argvs in revocations(settings, held).items():
        for argv in argvs:
            if not held.holds(argv):
                ctl.run(argv)
        print(f"{user}: not in the settings any more; permissions on vhost {vhost!r} revoked, connections closed "
              "(the user is kept: `rabbitmqctl delete_user` removes it)")
    print("# passwords of the team users (store them now; they are not kept):", file=sys.stderr)
    for name, password in sorted(passwords.items()):
        shown = "(already existed: password unchanged)" if name in existing else password
        print(f"#   {name}: {shown}", file=sys.stderr)
    return 0


def _operator_team(args) -> str:
    """The team whose exchange (`flow45.in.TEAM`) a command about an instance goes to: --team, else
    FLOW45_TEAM, else the team an administrator's settings list the URL's user under. The broker
    lets a user write only to its own team's exchange, and the bridge takes the team from the user."""
    team = args.team or told_team(read_settings())
    if team:
        return team
    raise UsageError("say which team the instance belongs to: --team TEAM (or FLOW45_TEAM)")


def bridge_deploy(args) -> int:
    from bridge.rpc import call
    from flow45.config import config_texts

    texts = config_texts(Path(args.path))
    team = yaml_team(next(iter(texts)))
    from flow45.cli.versions import let_go
    from flow45.views import DeployReport

    report = DeployReport.from_json(call(_amqp_url(), team, {"type": "deploy",
                                                            "files": {f.name: t for f, t in texts.items()}}))
    for deployed in report.workflows:
        print(f"{deployed.team}/{deployed.workflow} v{deployed.version}: {deployed.change}")
        for line in [f"  {change}" for change in deployed.changes] + let_go(deployed, report.dry_run):
            print(line)
    return 0


def yaml_team(file: Path) -> str:
    from flow45.yamlload import YamlProblem, read_yaml

    try:
        data = read_yaml(file)
    except YamlProblem as exc:
        raise UsageError(str(exc)) from None
    if not isinstance(data, dict) or not isinstance(data.get("team"), str):
        raise UsageError(f"{file}: no `team:` at the top")
    return data["team"]


def bridge_trigger(args) -> int:
    from bridge.rpc import call
    from flow45.views import Triggered

    team, workflow = _team_workflow(args.workflow)
    message = {"type": "trigger", "workflow": workflow, "params": _params(args)}
    if args.key is not None:
        message["key"] = args.key
    triggered = Triggered.from_json(call(_amqp_url(), team, message))
    print(f"run {triggered.run} of {team}/{workflow}: {triggered.status}{triggered.again(args.key)}")
    return 0


def bridge_undo(args) -> int:
    from bridge.rpc import call

    message = {"type": "undo", "instance": args.instance, "reason": args.reason, "hold": args.hold, "dry_run": args.dry_run}
    print_json(call(_amqp_url(), _operator_team(args), message))
    return 0


@command("tui")
def cmd_tui(args) -> int:
    from flow45.cli.base import _client, remote_mode
    from tui.app import run_dashboard

    if remote_mode(read_settings()):  # through the bridge, as the broker user: one team
        return run_dashboard(args.actor, client=_client(args))
    return run_dashboard(args.actor)


@command("scheduler")
def cmd_scheduler(args) -> int:
    import threading

    from flow45.heartbeat import Heartbeat
    from flow45.scheduler import run_scheduler

    _logging()
    _metrics(args, read_settings())
    stop = threading.Event()
    beats = Heartbeat(read_settings().heartbeat_file)
    return _run_parts({"scheduler": lambda: run_scheduler(stop, beats)}, stop.set, beats)


@command("serve")
def cmd_serve(args) -> int:
    """The scheduler and, with a broker configured, the bridge, in one process."""
    import threading

    from flow45.heartbeat import Heartbeat
    from flow45.scheduler import run_scheduler

    _logging()
    stop = threading.Event()
    settings = read_settings()
    _metrics(args, settings)
    beats = Heartbeat(settings.heartbeat_file)
    parts = {"scheduler": lambda: run_scheduler(stop, beats)}
    if not settings.amqp_url:
        logging.getLogger("flow45").info("serve: no amqp_url set, running the scheduler only")
        return _run_parts(parts, stop.set, beats)
    from bridge.service import Bridge

    bridge = Bridge(settings, heartbeat=beats, side_processes=True)

    def stop_all() -> None:
        stop.set()
        bridge.stop()

    return _run_parts({**parts, "bridge": bridge.run}, stop_all, beats)


STOP_GRACE = 1.5  # seconds the parts get to finish after a stop, within the 2 s a supervisor is promised


def _run_parts(parts: dict, stop, beats) -> NoReturn:
    """Run each part (a blocking callable) on a thread of its own until SIGTERM/SIGINT (exit 0), or
    until a part ends by itself (exit 1): a process missing a part cannot do its job, so it stops
    whole and its supervisor restarts it. Either way the process is gone within STOP_GRACE, and exits
    here: it never returns."""
    import queue
    import threading
    import time

    log = logging.getLogger("flow45")
    ended: queue.Queue = queue.Queue()
    asked: list[float] = []  # when SIGTERM/SIGINT came

    def body(name: str, target) -> None:
        error = None
        try:
            target()
        except Flow45Error as exc:
            error = exc.message
        except BaseException as exc:  # noqa: BLE001 - reported below, then the process exits 1
            log.exception("%s: stopped by an unexpected error", name)
            error = f"{name}: unexpected error: {type(exc).__name__}: {exc}"
        ended.put((name, error))

    def on_signal(_signum: int) -> None:
        asked.append(time.monotonic())
        stop()

    watchdog = systemd.Watchdog(beats)
    with on_stop_signals(on_signal):
        threads = [threading.Thread(target=body, args=(n, t), name=n, daemon=True) for n, t in parts.items()]
        for thread in threads:
            thread.start()
        systemd.notify("READY=1")
        code = 0
        try:
            while True:
                try:
                    name, error = ended.get(timeout=0.1)
                    break
                except queue.Empty:
                    if asked and time.monotonic() > asked[0] + STOP_GRACE:
                        name, error = None, None
                        break
                    if not asked:
                        watchdog.tick()
            systemd.notify("STOPPING=1")
            if not asked:
                code = 1
                message = error or f"{name}: stopped"
                log.error("%s; stopping the process so that its supervisor restarts it", message)
                print(f"flow45: {message}", file=sys.stderr)
                stop()
            deadline = (asked[0] if asked else time.monotonic()) + STOP_GRACE
            for thread in threads:
                thread.join(max(0.0, deadline - time.monotonic()))
            late = [t.name for t in threads if t.is_alive()]
        finally:
            beats.remove()
    if late:
        log.warning("%s did not stop within %.1fs; exiting anyway", ", ".join(late), STOP_GRACE)
    # Exit at once, the logs flushed: the daemon threads may hold locks a normal exit would wait for, and
    # tearing the interpreter down costs CPU (a third of a second, several on a loaded machine) past the
    # promised 2 s, with nothing left to do: the parts have stopped.
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        if stream is not None:
            stream.flush()
    os._exit(code)


@command("health")
def cmd_health(args) -> int:
    """Exit 0 when the database and the broker answer and the service's parts are alive."""
    from flow45.health import check_database, check_heartbeat

    settings = read_settings()
    problems = [p for p in [check_database(settings.database_url, args.timeout)] if p]
    if settings.amqp_url:
        problems += [p for p in [_check_broker(settings.amqp_url, args.timeout)] if p]
    if settings.heartbeat_file:
        problems += check_heartbeat(settings.heartbeat_file, args.max_age)
    if problems:
        print(f"flow45 health: {'; '.join(problems)}", file=sys.stderr)
        return 1
    print("ok")
    return 0


def _check_broker(url: str, timeout: float) -> str | None:
    from bridge.failures import BrokerUnavailable, open_blocking

    try:
        open_blocking(url, timeout=timeout).close()
    except BrokerUnavailable as exc:
        return exc.message
    return None


BRIDGE_ACTIONS = {
    "run": bridge_run, "setup-broker": bridge_setup, "deploy": bridge_deploy,
    "trigger": bridge_trigger, "undo": bridge_undo,
}


def add_parsers(add) -> None:
    add("tui", "open the operator dashboard")
    _add_metrics_port(add("scheduler", "run the scheduler: cron runs, lease expiry, retries, lost offers"))
    _add_metrics_port(add("serve", "run the scheduler and the bridge (when amqp_url is set) in one process"))
    p = add("health", "exit 0 when the database and broker answer and the service's parts are alive")
    p.add_argument("--max-age", type=_positive_seconds, default=30.0, metavar="SECONDS",
                   help="oldest heartbeat of a part still counted alive (with heartbeat_file)")
    p.add_argument("--timeout", type=_positive_seconds, default=5.0, metavar="SECONDS",
                   help="wait at most this per server")
    bridge = add("bridge", "the RabbitMQ bridge, and operator commands through it")
    actions = bridge.add_subparsers(dest="action", required=True, metavar="ACTION")
    bridge.commands = actions.choices
    p = actions.add_parser("run", help="relay the outbox and consume the inbox until stopped")
    p.add_argument("--batch", type=_positive_int, default=200, help="most messages applied in one transaction")
    p.add_argument("--connections", type=_positive_int, default=4,
                   help="batches applied at once, each on a database connection of its own (PostgreSQL)")
    _add_metrics_port(p)
    p = actions.add_parser("setup-broker", help="create the vhost, team users, permissions and policies")
    p.add_argument("--print", action="store_true", help="print the rabbitmqctl commands instead of running them")
    p.add_argument("--rabbitmqctl", default="rabbitmqctl", help="the command to run (e.g. 'rabbitmqctl -n NODE')")
    actions.add_parser("deploy", help="deploy a config through the bridge").add_argument("path")
    p = actions.add_parser("trigger", help="start a run through the bridge")
    p.add_argument("workflow", metavar="TEAM/WORKFLOW")
    _add_run_params(p)
    p.add_argument("--key", type=_run_key, metavar="KEY", help="your name for the run: one run per key (as trigger's)")
    p = actions.add_parser("undo", help="undo through the bridge")
    p.add_argument("instance", type=_positive_int)
    p.add_argument("--team", help="the instance's team, the one FLOW45_AMQP_URL's user is an operator of "
                                  "(default: $FLOW45_TEAM)")
    p.add_argument("--reason", required=True)
    p.add_argument("--dry-run", action="store_true")
    p.add_argument("--hold", action="store_true")
