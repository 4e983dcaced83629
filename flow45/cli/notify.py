"""`flow45 notify`: posts each team's chosen ledger events to webhooks (flow45.notify)."""

from __future__ import annotations

import logging
import sys
import threading
from pathlib import Path

from flow45.cli.base import _client, _whole_number, command, read_settings, remote_mode
from flow45.cli.service import _add_metrics_port
from flow45.errors import Flow45Error
from flow45.outage import on_stop_signals


@command("notify")
def cmd_notify(args) -> int:
    from flow45.notify.follow import Notifier, team_state

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", stream=sys.stderr)
    settings = read_settings()
    if not settings.notify:
        raise Flow45Error("nothing to notify: the settings have no `notify:` (team -> [{url, events: [...]}])")
    client = _client(args)
    hooks = settings.notify
    if remote_mode(settings):  # through the broker, the events of the broker user's team alone
        others = sorted(set(hooks) - {client.team})
        if client.team not in hooks:
            raise Flow45Error(f"through the broker notify follows team {client.team}, and `notify:` names "
                              f"only {', '.join(sorted(hooks))}")
        if others:
            logging.getLogger("flow45.notify").warning(
                "through the broker only team %s is followed; %s need a notify of their own", client.team,
                ", ".join(others))
        hooks = {client.team: hooks[client.team]}
    port = args.metrics_port or settings.metrics_port
    if port:  # its own figures; the store's too when it reads the database
        from flow45.metrics import serve_metrics

        serve_metrics(port, settings.metrics_address, None if remote_mode(settings) else settings.database_url)
    state = Path(args.state)
    notifiers = [Notifier(client, team, team_hooks, team_state(state, team), start=args.after, inherit=state,
                          retry_delay=settings.notify_retry_delay, retry_max=settings.notify_retry_max,
                          poll=settings.sweep_interval)
                 for team, team_hooks in sorted(hooks.items())]
    with on_stop_signals(lambda _signum: [n.stop_now() for n in notifiers]):
        _run_side_by_side(notifiers, args.once)
    for notifier in notifiers:
        print(f"notify: team {notifier.team}: {notifier.posted} post(s); position {notifier.position.after} saved "
              f"in {notifier.state}", file=sys.stderr)
    return 0


def _run_side_by_side(notifiers, once: bool) -> None:
    """Each team's notifier on a thread of its own (one alone on this thread); one that fails stops
    the others, and its error is raised here."""
    if len(notifiers) == 1:
        notifiers[0].run(once=once)
        return
    failed: list[Exception] = []

    def run(notifier) -> None:
        try:
            notifier.run(once=once)
        except Exception as exc:  # noqa: BLE001 - the others stop too, and the process says why
            failed.append(exc)
            for other in notifiers:
                other.stop_now()

    threads = [threading.Thread(target=run, args=(n,), name=f"notify-{n.team}", daemon=True) for n in notifiers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failed:
        raise failed[0]


def add_parsers(add) -> None:
    p = add("notify", "post each team's chosen events to webhooks (settings: notify)")
    p.add_argument("--state", default="flow45-notify.json",
                   help="file keeping the position between restarts (written after each successful post)")
    p.add_argument("--after", type=_whole_number, default=None, metavar="ID",
                   help="first start only (no state file): begin after this ledger event id (0: the whole "
                        "ledger; default: its current end, so only what happens from now on is posted)")
    p.add_argument("--once", action="store_true", help="post what is there, then exit")
    _add_metrics_port(p)
