"""`flow45 bridge setup-broker`: the vhost, users, permission regexes and policies that isolate teams.

A team's worker and operator users may write only `flow45.in.TEAM` and read only `flow45.tasks.TEAM.*`;
its operators may also write `flow45.read.TEAM` and the shared `flow45.read` (reads, answered for
their own team), read `flow45.dead.TEAM`, and follow their team's event stream: a server-named queue
of their own bound to `flow45.events` with their team's key alone (a topic permission). Direct
reply-to needs no permission; the bridge's own user (from amqp_url) may do everything.

The policies cap what one team can leave waiting on the broker: its inbox, its reads, its dead
letters and its operators' queues on the event stream, so that no team fills the broker for all.

A run also takes back what it granted: the team users it creates carry the tag `flow45`, and one
the settings no longer name loses its permissions on the vhost, and its connections. Users it did
not make, and the bridge's own, are never touched: the vhost may be shared with other applications.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import re
import secrets
import shlex
import subprocess
import tempfile
from dataclasses import dataclass, field
from urllib.parse import unquote, urlsplit

from flow45 import names
from flow45.errors import Flow45Error
from flow45.settings import Settings


OWN_QUEUES = r"amq\.gen-.+"  # server-named queues: an operator's own, to follow its team's event stream
READS_WAITING_MAX = 1_000  # a team's reads waiting for the bridge; past it the broker refuses the team's reads
FOLLOWER_MAX_PAGES = 10_000  # pages of the event stream an operator's own queue holds; older ones are dropped
FLOW45_TAG = "flow45"  # the tag of the team users setup-broker made: the only users it ever takes back
REVOKED = "no longer a Flow45 user on this vhost"  # why their connections close, as their clients see it
REGRANTED = "Flow45 permissions changed: reconnect"


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
            # Run only when add_user made the user: an administrator's own user keeps its tags, and is never revoked.
            commands.append(["set_user_tags", name, FLOW45_TAG])
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
    rather than create a user with an empty password. A user is tagged only if add_user made it."""

    def word(arg: str) -> str:
        return f'"${{{arg.variable}:?}}"' if isinstance(arg, PasswordOf) else shlex.quote(arg)

    lines: list[str] = []
    for args in commands:
        line = f"{ctl} {' '.join(word(a) for a in args)}"
        if args[0] == "set_user_tags" and lines:
            lines[-1] += f" && {line}"
        else:
            lines.append(line)
    return "\n".join(lines) + "\n"


def revoking_note(settings: Settings, ctl: str = "rabbitmqctl") -> str:
    """How a run takes back what it granted, as shell comments: which users, and the commands."""
    vhost = shlex.quote(vhost_of(settings))
    named = sorted(user for team in settings.teams.values() for user in team.users)
    return (
        f"# Taking back: a run (without --print) also finds the users it made, tagged {FLOW45_TAG}, that hold\n"
        f"# permissions on vhost {vhost} but that these settings no longer name (they name: {', '.join(named) or 'none'}),\n"
        "# and takes away their access to their old team's offers, dead letters and event stream. By hand, find\n"
        f"# them with `{ctl} list_users` and `{ctl} list_permissions -p {vhost}`, and for each USER run:\n"
        f"#   {ctl} clear_permissions -p {vhost} USER\n"
        f"#   {ctl} clear_topic_permissions -p {vhost} USER\n"
        f"#   {ctl} close_all_user_connections USER {shlex.quote(REVOKED)}\n"
        "# (a channel keeps what it was allowed when it opened: closing makes it count). The user is kept, not\n"
        "# deleted, as it may have permissions on another vhost: `rabbitmqctl delete_user USER` removes it. Users\n"
        "# it did not make, and the bridge's own, are never touched. A user moved to another team or role holds\n"
        "# exactly the new one's permissions: its other topic permissions are cleared and its connections closed.\n"
    )


@dataclass(frozen=True)
class Held:
    """What the broker holds: each user's tags, and on the vhost (if there is one) each user's
    permissions (configure, write, read), topic permissions (exchange -> (write, read)) and each
    policy (pattern, apply-to, definition, priority)."""

    tags: dict[str, list[str]]
    permissions: dict[str, tuple[str, str, str]]
    topics: dict[str, dict[str, tuple[str, str]]]
    policies: dict[str, tuple[str, str, dict, int]] = field(default_factory=dict)
    vhost: bool = True

    @classmethod
    def from_definitions(cls, exported: dict, vhost: str) -> Held:
        """From `rabbitmqctl export_definitions`: the users, and what they hold on `vhost`."""
        users = [{"user": row["name"], "tags": row.get("tags")} for row in exported.get("users") or []]
        if not any(row.get("name") == vhost for row in exported.get("vhosts") or []):
            return cls.from_listings(users, None, None)
        on_vhost = [[row for row in exported.get(kind) or [] if row.get("vhost") == vhost]
                    for kind in ("permissions", "topic_permissions", "policies")]
        return cls.from_listings(users, *on_vhost)

    @classmethod
    def from_listings(cls, users: list[dict], permissions: list[dict] | None, topics: list[dict] | None,
                      policies: list[dict] | None = None) -> Held:
        """From rabbitmqctl's JSON of list_users, list_permissions, list_topic_permissions and
        list_policies; None for a vhost's listing when the vhost does not exist."""
        held_topics: dict[str, dict[str, tuple[str, str]]] = {}
        for row in topics or []:
            held_topics.setdefault(row["user"], {})[row["exchange"]] = (row["write"], row["read"])
        held_policies = {}
        for row in policies or []:
            definition = row["definition"]
            if isinstance(definition, str):  # rabbitmqctl gives it as JSON text
                definition = json.loads(definition)
            held_policies[row["name"]] = (row["pattern"], row["apply-to"], definition, int(row["priority"]))
        return cls(tags={row["user"]: _tags(row["tags"]) for row in users},
                   permissions={row["user"]: (row["configure"], row["write"], row["read"]) for row in permissions or []},
                   topics=held_topics, policies=held_policies, vhost=permissions is not None)

    def holds(self, argv: list[str]) -> bool:
        """True when running rabbitmqctl `argv` (a command of `plan`, `regrants` or `revocations`) would
        change nothing the broker holds: a re-run leaves it out of its import (or, a revocation's, does
        not call it). A user already there counts as held: its password and tags stay its own."""
        command, rest = argv[0], list(argv[1:])
        if rest[:1] == ["-p"]:
            rest = rest[2:]
        if command == "add_vhost":
            return self.vhost
        if command == "add_user":
            return rest[0] in self.tags
        if command == "set_permissions":
            return self.permissions.get(rest[0]) == tuple(rest[1:4])
        if command == "set_topic_permissions":
            return self.topics.get(rest[0], {}).get(rest[1]) == tuple(rest[2:4])
        if command == "clear_permissions":
            return rest[0] not in self.permissions
        if command == "clear_topic_permissions":
            topics = self.topics.get(rest[0], {})
            return not topics if len(rest) == 1 else rest[1] not in topics
        if command == "set_policy" and rest[:1] == ["--apply-to"]:
            apply_to, (name, pattern, definition) = rest[1], rest[2:5]
            return self.policies.get(name) == (pattern, apply_to, json.loads(definition), 0)
        return False


def _tags(tags: list[str] | str | None) -> list[str]:
    """A user's tags as a list (older brokers export them as comma-separated text)."""
    if isinstance(tags, str):
        return [tag for tag in tags.split(",") if tag]
    return list(tags or [])


HASHING = "rabbit_password_hashing_sha256"


def password_hash(password: str) -> str:
    """The broker's salted SHA-256 of `password` (as `add_user` would store it), for importing a user."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def definitions(commands: list[list[str]]) -> dict:
    """The definitions document doing what the rabbitmqctl `commands` of `plan` do (add_vhost, add_user,
    set_user_tags, set_permissions, set_topic_permissions, set_policy): one import instead of a call
    (an Erlang VM started, a second or more) per command. A user in it is made with that password, or
    given it if it was made meanwhile: the caller lists only users the broker did not hold."""
    document: dict[str, list] = {"vhosts": [], "users": [], "permissions": [], "topic_permissions": [], "policies": []}
    users: dict[str, dict] = {}
    for argv in commands:
        command, rest, vhost = argv[0], list(argv[1:]), None
        if rest[:1] == ["-p"]:
            vhost, rest = rest[1], rest[2:]
        if command == "add_vhost":
            document["vhosts"].append({"name": rest[0]})
        elif command == "add_user":
            users[rest[0]] = {"name": rest[0], "password_hash": password_hash(rest[1]), "hashing_algorithm": HASHING,
                              "tags": []}
        elif command == "set_user_tags" and rest[0] in users:
            users[rest[0]]["tags"] = rest[1:]
        elif command == "set_permissions":
            document["permissions"].append({"vhost": vhost, **dict(zip(("user", "configure", "write", "read"), rest))})
        elif command == "set_topic_permissions":
            document["topic_permissions"].append({"vhost": vhost, **dict(zip(("user", "exchange", "write", "read"), rest))})
        elif command == "set_policy" and rest[:1] == ["--apply-to"]:
            apply_to, name, pattern, definition = rest[1:5]
            document["policies"].append({"vhost": vhost, "name": name, "pattern": pattern, "apply-to": apply_to,
                                         "definition": json.loads(definition), "priority": 0})
        else:
            raise ValueError(f"{' '.join(argv[:2])}: not a command a definitions import does")
    document["users"] = list(users.values())
    return document


def revocations(settings: Settings, held: Held) -> dict[str, list[list[str]]]:
    """For each user setup-broker made that holds permissions on the vhost but that the settings no
    longer name: the commands taking them away, and its connections (whose channels keep what they
    were allowed). The user stays: users are the broker's, and may hold permissions on other vhosts."""
    vhost = vhost_of(settings)
    named = {user for team in settings.teams.values() for user in team.users}
    bridge, _ = bridge_user(settings)
    return {
        user: [["clear_permissions", "-p", vhost, user], ["clear_topic_permissions", "-p", vhost, user],
               ["close_all_user_connections", user, REVOKED]]
        for user in sorted(set(held.permissions) | set(held.topics))
        if user not in named and user != bridge and FLOW45_TAG in held.tags.get(user, [])
    }


def regrants(settings: Settings, held: Held) -> dict[str, list[list[str]]]:
    """For each user the settings name whose grants on the vhost were other ones (it moved to another
    team or role): the commands clearing the topic permissions its role has none of, and closing its
    connections, so that it holds exactly its team's permissions from now on."""
    vhost = vhost_of(settings)
    found: dict[str, list[list[str]]] = {}
    for team, team_settings in settings.teams.items():
        for user, role in team_settings.users.items():
            had, had_topics = held.permissions.get(user), held.topics.get(user, {})
            topics = {names.EVENTS_EXCHANGE: topic_permissions(team)[1:]} if role == "operator" else {}
            if (had is None and not had_topics) or (had == team_permissions(team, role) and had_topics == topics):
                continue  # new on the vhost, or unchanged
            found[user] = [["clear_topic_permissions", "-p", vhost, user, exchange]
                           for exchange in sorted(set(had_topics) - set(topics))]
            found[user].append(["close_all_user_connections", user, REGRANTED])
    return dict(sorted(found.items()))


class Rabbitmqctl:
    """Runs `command` (rabbitmqctl, or e.g. 'rabbitmqctl -n NODE'); a failure is a Flow45Error naming it."""

    def __init__(self, command: str) -> None:
        self.command = command

    def run(self, argv: list[str]) -> str:
        """Its output; a failure is a Flow45Error naming the command and what it said."""
        try:
            done = subprocess.run([*self.command.split(), *argv], capture_output=True, text=True)
        except OSError as exc:
            raise Flow45Error(f"cannot run {self.command!r}: {exc.strerror} (--rabbitmqctl names the command)") from None
        if done.returncode == 0:
            return done.stdout
        said = done.stderr.strip() or done.stdout.strip() or f"exit {done.returncode}"
        raise Flow45Error(f"rabbitmqctl {argv[0]} failed: {said}")

    def held(self, settings: Settings) -> Held:
        """What the broker holds for `settings`' vhost: one call (`export_definitions`)."""
        out = self.run(["export_definitions", "-", "--format", "json"])
        try:
            exported = json.loads(out[out.index("{"):]) if "{" in out else None  # past any banner line
        except ValueError:
            exported = None
        if not isinstance(exported, dict):
            raise Flow45Error(f"rabbitmqctl export_definitions answered no JSON object: {out.strip()[:200]!r}")
        return Held.from_definitions(exported, vhost_of(settings))

    def define(self, commands: list[list[str]]) -> None:
        """Do `commands` (see `definitions`) in one `import_definitions`; nothing when there are none."""
        if not commands:
            return
        with tempfile.TemporaryDirectory(prefix="flow45-setup-broker-") as folder:  # readable by this user alone
            path = os.path.join(folder, "definitions.json")
            with open(path, "w") as file:
                json.dump(definitions(commands), file)
            self.run(["import_definitions", path])
