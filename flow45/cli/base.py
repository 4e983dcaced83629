"""What every `flow45` command is built with: the registry, usage errors and argument checks."""

from __future__ import annotations

import argparse
import datetime as dt
from typing import Any, Callable

from flow45 import strictjson
from flow45.clock import to_utc

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


def remote_mode(settings) -> bool:
    """An operator with only a broker URL: no database URL given, by the settings or the environment."""
    return bool(settings.amqp_url) and "database_url" not in settings.model_fields_set


def _client(args: argparse.Namespace, create: bool = False):
    """The operator's client: through the broker as the URL's user when only FLOW45_AMQP_URL is
    set (the bridge answers for that user's team); else on the configured database, as `--as`."""
    from flow45.settings import current_settings

    settings = current_settings()
    if remote_mode(settings):
        if getattr(args, "actor_given", False):
            raise UsageError("--as names the actor on the database only; through the broker the actor is "
                             "the broker user of FLOW45_AMQP_URL")
        from bridge.remote import RemoteClient  # the command line is the one place that puts the parts together

        return RemoteClient(settings.amqp_url)
    from flow45.client import LocalClient

    _open_store(create=create)
    return LocalClient(args.actor)


def _as_of(text: str) -> int | dt.datetime:
    """A ledger event id, or a time (ISO 8601; without an offset it is UTC) as naive UTC."""
    text = text.strip()
    if text.isdigit():
        return _positive_int(text)
    try:
        moment = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected a ledger event id or a time such as 2026-03-01T06:00:00Z, got {text!r}") from None
    return to_utc(moment)


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a positive number, got {value}")
    return value
