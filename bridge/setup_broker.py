"""`flow45 bridge setup-broker`: the vhost, users, permission regexes and policies that isolate teams.

A team's worker and operator users may write only `flow45.in.TEAM` and read only `flow45.tasks.TEAM.*`;
its operators may also write `flow45.read.TEAM` and the shared `flow45.read` (reads, answered for
their own team), read `flow45.dead.TEAM`, and follow their team's event stream: a server-named queue
of their own bound to `flow45.events` with their team's key alone (a topic permission). Direct
reply-to needs no permission; the bridge's own user (from amqp_url) may do everything.

The policies cap what one team can leave waiting on the broker: its inbox, its reads, its dead
letters and its operators' queues on the event stream, so that no team fills the broker for all.
"""

from __future__ import annotations

import json
import re
import secrets
import shlex
from urllib.parse import unquote, urlsplit

from flow45 import names
from flow45.settings import Settings


OWN_QUEUES = r"amq\.gen-.+"  # server-named queues: an operator's own, to follow its team's event stream
READS_WAITING_MAX = 1_000  # a team's reads waiting for the bridge; past it the broker refuses the team's reads
FOLLOWER_MAX_PAGES = 10_000  # pages of the event stream an operator's own queue holds; older ones are dropped


def team_permissions(team: str, role: str = "worker") -> tuple[str, str, str]:
    """(configure, write, read) regexes for a team's users; operators also send reads, read the
    team's dead letters and bind a queue of their own to the event stream (which key: see
    `topic_permissions`)."""
    tasks = re.escape(names.offer_queue(team, "")) + ".+"  # every offer and undo queue of the team
    if role != "operator":
        return "^$", f"^{re.escape(names.inbound_exchange(team))}$", f"^{tasks}$"
    configure = f"^{OWN_QUEUES}$"
    reads = f"{re.escape(names.READ_EXCHANGE)}|{re.escape(names.read_exchange(team))}"
    write = f"^({re.escape(names.inbound_exchange(team))}|{reads}|{OWN_QUEUES})$"
    read = f"^({tasks}|{re.escape(names.dead_queue(team))}|{re.escape(names.EVENTS_EXCHANGE)}|{OWN_QUEUES})$"
    return configure, write, read


def topic_permissions(team: str) -> tuple[str, str, str]:
    """(exchange, write, read) of an operator's topic permission: on the event stream it may bind
    its team's key alone, and publish nothing."""
    return names.EVENTS_EXCHANGE, "^$", f"^{re.escape(team)}$"


def bridge_user(settings: Settings) -> tuple[str, str]:
    parts = urlsplit(settings.amqp_url or "")
    return unquote(parts.username or "guest"), unquote(parts.password or "")


def vhost_of(settings: Settings) -> str:
    path = urlsplit(settings.amqp_url or "").path
    return unquote(path[1:]) if len(path) > 1 else "/"


class PasswordOf(str):
    """Stands for a user's password in printed commands: the shell takes it from a variable."""

    @property
    def variable(self) -> str:
        return "PASSWORD_" + re.sub(r"[^A-Za-z0-9]", "_", self).upper()


def plan(
    settings: Settings, passwords: dict[str, str] | None = None, placeholders: bool = False,
) -> tuple[list[list[str]], dict[str, str]]:
    """rabbitmqctl argument lists, and the password of each team user (generated unless given).
    With `placeholders`, every password in the commands is a PasswordOf(user) and none is made."""
    vhost = vhost_of(settings)
    passwords = dict(passwords or {})
    commands: list[list[str]] = [["add_vhost", vhost]] if vhost != "/" else []
    user, password = bridge_user(settings)
    if user != "guest":
        commands.append(["add_user", user, PasswordOf(user) if placeholders else password])
    commands.append(["set_permissions", "-p", vhost, user, ".*", ".*", ".*"])
    for team, team_settings in sorted(settings.teams.items()):
        for name, role in sorted(team_settings.users.items()):
            configure, write, read = team_permissions(team, role)
            if placeholders:
                commands.append(["add_user", name, PasswordOf(name)])
            else:
                passwords.setdefault(name, secrets.token_hex(16))  # never starts with '-', which rabbitmqctl reads as an option
                commands.append(["add_user", name, passwords[name]])
            commands.append(["set_permissions", "-p", vhost, name, configure, write, read])
            if role == "operator":
                commands.append(["set_topic_permissions", "-p", vhost, name, *topic_permissions(team)])
    commands += [["set_policy", "-p", vhost, "--apply-to", "queues", name, pattern, json.dumps(definition)]
                 for name, pattern, definition in _policies(settings)]
    return commands, passwords


def _policies(settings: Settings) -> list[tuple[str, str, dict]]:
    """(name, queue pattern, definition) of each policy: what one team may leave waiting on the broker."""
    return [
        # A team sending faster than the bridge applies fills its own inbox, not the broker's memory or
        # disk: past the cap its publishes are refused (a nack, to a publisher that asks for confirms).
        ("flow45-inbox", rf"^{re.escape(names.inbox_queue(''))}.+$",
         {"max-length": settings.inbox_max_messages, "max-length-bytes": settings.inbox_max_bytes,
          "overflow": "reject-publish"}),
        # Offers (and undo notices) for a function nobody takes wait in the outbox past the cap, not on the
        # broker: a team triggering faster than its workers take fills its own queue, not the broker for all.
        # A full queue refuses a publish; the relay holds that queue's rows back and tries again later.
        ("flow45-offers", rf"^{re.escape(names.TASKS_EXCHANGE)}\..+$",  # flow45.tasks.TEAM.FUNCTION[.undo]
         {"max-length": settings.offer_queue_max_messages, "max-length-bytes": settings.offer_queue_max_bytes,
          "overflow": "reject-publish"}),
        # The shared queue too: it carries every client's first `whoami`, and one team flooding it must
        # fill neither the broker's memory nor its 30 s of waiting with more than this many reads.
        ("flow45-reads", rf"^{re.escape(names.READS_QUEUE)}(\..+)?$",
         {"max-length": READS_WAITING_MAX, "overflow": "reject-publish"}),
        # An operator's own queue on the event stream: one never read holds its team's newest pages, not
        # every page since, which would fill the broker for all (the follower sees a page number skipped).
        ("flow45-followers", f"^{OWN_QUEUES}$",
         {"max-length": FOLLOWER_MAX_PAGES, "max-length-bytes": 64 * 1024 * 1024, "overflow": "drop-head"}),
        ("flow45-dead", rf"^{re.escape(names.DEAD_QUEUE)}(\..+)?$",
         {"max-length": 1_000_000, "max-length-bytes": 1024 * 1024 * 1024, "overflow": "drop-head"}),
    ]


def as_shell(commands: list[list[str]], ctl: str = "rabbitmqctl") -> str:
    """A shell script; a PasswordOf stands as `"${PASSWORD_USER:?}"`, so that the script stops
    rather than create a user with an empty password."""

    def word(arg: str) -> str:
        return f'"${{{arg.variable}:?}}"' if isinstance(arg, PasswordOf) else shlex.quote(arg)

    return "\n".join(f"{ctl} {' '.join(word(a) for a in args)}" for args in commands) + "\n"
