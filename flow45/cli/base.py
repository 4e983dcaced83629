"""What every `flow45` command is built with: the registry, usage errors and argument checks."""

from __future__ import annotations

import argparse
import datetime as dt
import difflib
import os
import re
import sys
from contextlib import contextmanager
from typing import Any, Callable
from urllib.parse import unquote, urlsplit

from flow45 import strictjson
from flow45.clock import no_such_moment, parse_utc, utcnow
from flow45.durations import parse_duration
from flow45.wire import INT64_MAX

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


def _add_run_params(p: argparse.ArgumentParser) -> None:
    """The params of a run to make: `--params JSON` and each `--param KEY=VALUE` (read by `_params`)."""
    p.add_argument("--params", help="run parameters as a JSON object")
    p.add_argument("--param", type=_param_pair, action="append", default=[], metavar="KEY=VALUE",
                   help="a run parameter (repeatable; the value as JSON when it reads as a number, boolean or "
                        "null, else as written: month=2026-03)")


def _params(args, filtering: bool = False) -> dict[str, Any] | None:
    """`--params JSON` (an object) with each `--param KEY=VALUE` added; None when neither is given.
    `filtering`: they choose runs (`runs`), rather than make one."""
    if not args.params and not args.param:
        return None
    params = _json_arg(args.params, "--params") if args.params else {}
    if not isinstance(params, dict):
        raise UsageError(f"--params must be a JSON object such as '{{\"month\": \"2026-03\"}}', got {args.params}")
    for key, value in args.param:
        if key in params and params[key] != value:
            raise UsageError(f"params.{key} " + ("asked for" if filtering else "given") + f" twice, as {params[key]!r} "
                             f"and {value!r}" + (": no run has both" if filtering else ""))
        params[key] = value
    return params


def _team_workflow(text: str) -> tuple[str, str]:
    team, sep, workflow = text.partition("/")
    if not sep or not team or not workflow:
        raise UsageError(f"expected TEAM/WORKFLOW, got {text!r}")
    return team, workflow


@contextmanager
def suggesting(client, team: str, workflow: str):
    """A workflow that is not deployed is refused with the names this client sees that come close."""
    from flow45.errors import NotFound

    try:
        yield
    except NotFound as exc:
        if not exc.message.startswith(f"workflow {team}/{workflow} "):
            raise
        raise NotFound(exc.message + did_you_mean(client, team, workflow)) from None


def did_you_mean(client, team: str, workflow: str) -> str:
    seen = client.workflows()
    names = sorted(f"{w.team}/{w.name}" for w in seen)
    teams = sorted({w.team for w in seen})
    close = difflib.get_close_matches(f"{team}/{workflow}", names, n=3, cutoff=0.6)
    if not close and team in teams:
        close = [f"{team}/{name}" for name in difflib.get_close_matches(
            workflow, [w.name for w in seen if w.team == team], n=3, cutoff=0.5)]
    if close:
        return "; did you mean " + " or ".join(close) + "?"
    if team not in teams:
        return f"; there is no team {team}" + (f" (teams: {', '.join(teams)})" if teams else "")
    return f"; team {team} has " + ", ".join(w.name for w in seen if w.team == team)


def say_if_no_team(client, team: str) -> None:
    """After an empty listing for `team`: if no workflow of it is deployed (that this client may see),
    say so on stderr, with the closest team names: a typo, most likely."""
    teams = sorted({w.team for w in client.workflows()})
    if team in teams:
        return
    close = difflib.get_close_matches(team, teams, n=3, cutoff=0.5)
    print(f"flow45: team {team} has no workflows deployed (that you may see)"
          + (f"; did you mean {', '.join(close)}?" if close else ""), file=sys.stderr)


def one_more(limit: int) -> int:
    """What a listing of `limit` reads: one more, to tell whether more match (within the store's range)."""
    return min(limit + 1, MAX_ID)


def say_cut(what: str, limit: int, how: str) -> None:
    """After a listing cut at its limit: say on stderr that more matched, so that the page is not taken
    for everything (stdout, the table or the JSON, stays as it was)."""
    print(f"flow45: more {what} than the {limit} shown{how}", file=sys.stderr)


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


def read_settings():
    """The installation's settings. flow45.settings (pydantic models, YAML) is imported by the commands
    that read them, not by every `flow45` process as it starts: a usage error or --help needs neither."""
    from flow45.settings import current_settings

    return current_settings()


def told_team(settings) -> str | None:
    """The team of the broker URL's user as the operator says it (FLOW45_TEAM), else as an
    administrator's settings list the user; None if neither does."""
    if team := os.environ.get("FLOW45_TEAM"):
        return team
    from bridge.inbound import team_of_user  # the bridge's own lookup; the command line puts the parts together

    found = team_of_user(settings, unquote(urlsplit(settings.amqp_url or "").username or ""))
    return found[0] if found else None


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

        return RemoteClient(settings.amqp_url, team=told_team(settings))
    from flow45.client import LocalClient

    _open_store(create=create)
    return LocalClient(args.actor)


_AGO = re.compile(r"(\d+(\.\d+)?(ms|s|m|h|d))+")


def _moment(text: str) -> tuple[dt.datetime, bool]:
    """(naive UTC, whether only a date was given) from `2026-03-01`, an ISO 8601 time (UTC without an
    offset), or a duration before now (`90m`, `2d`, `1h30m`)."""
    text = text.strip()
    try:
        if _AGO.fullmatch(text):
            return utcnow() - dt.timedelta(seconds=parse_duration(text)), False
        if len(text) == 10:
            return dt.datetime.combine(dt.date.fromisoformat(text), dt.time()), True
        return parse_utc(text), False
    except OverflowError:  # a duration, or an offset, that reaches before the year 1
        raise argparse.ArgumentTypeError(f"{text!r} is too long ago to be a date") from None
    except ValueError as exc:
        raise _refused(text, exc, "a date such as 2026-03-01, a time such as 2026-03-01T06:00:00Z or a duration "
                                  "before now such as 2d") from None


def _refused(text: str, error: Exception, expected: str) -> argparse.ArgumentTypeError:
    """A date or time that names none says which part is wrong; anything else, what was expected."""
    return argparse.ArgumentTypeError(no_such_moment(text, error) or f"expected {expected}, got {text!r}")


def _param_pair(text: str) -> tuple[str, Any]:
    """`KEY=VALUE` for `runs --param`: the value as a JSON number, boolean or null when it reads as one
    (`rows=3`, `final=true`), else as written (`month=2026-03`; `code='"3"'` for the string "3")."""
    key, equals, value = text.partition("=")
    if not equals or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE such as month=2026-03, got {text!r}")
    try:
        parsed = strictjson.loads(value)
    except strictjson.JSONRefused:
        parsed = value
    return key.strip(), parsed if parsed is None or isinstance(parsed, (bool, int, float, str)) else value


def _as_of(text: str) -> int | dt.datetime:
    """A ledger event id, or a time (ISO 8601; without an offset it is UTC) as naive UTC."""
    text = text.strip()
    if text.isdigit():
        return _positive_int(text)
    try:
        return parse_utc(text)
    except (ValueError, OverflowError) as exc:  # OverflowError: an offset that reaches before the year 1
        raise _refused(text, exc, "a ledger event id or a time such as 2026-03-01T06:00:00Z") from None


def _utc_time(text: str) -> dt.datetime:
    """A time (ISO 8601; without an offset it is UTC) as naive UTC."""
    try:
        return parse_utc(text)
    except (ValueError, OverflowError) as exc:  # OverflowError: an offset that reaches before the year 1
        raise _refused(text, exc, "a time such as 2026-03-01T06:00:00Z") from None


def _utc_time_to(text: str) -> dt.datetime:
    """As `_utc_time`, but a date is the whole of that day (UTC), as the dashboard reads it."""
    moment = _utc_time(text)
    return dt.datetime.combine(moment.date(), dt.time.max) if len(text.strip()) == 10 else moment


MAX_ID = INT64_MAX  # the store's ids and counts are 64-bit signed: a larger number is refused here, not by the driver


MOST_SECONDS = 10 * 365 * 86400  # ten years: within what a database driver's or a clock's timeout takes


def _positive_seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    if value > MOST_SECONDS:
        raise argparse.ArgumentTypeError(f"expected at most {MOST_SECONDS} seconds (ten years), got {text}")
    return value


def _run_key(text: str) -> str:
    from flow45.errors import InvalidParams
    from flow45.run_keys import check_key

    try:
        return check_key(text)
    except InvalidParams as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive_int(text: str) -> int:
    return _whole_number(text, least=1)


def _whole_number(text: str, least: int = 0) -> int:
    """A number from `least` (0 or 1) to MAX_ID."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if value < least:
        wanted = "a positive number" if least == 1 else "a number from 0"
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
    if value > MAX_ID:
        raise argparse.ArgumentTypeError(f"expected a number up to {MAX_ID}, got {value}")
    return value


def workflow_read(args: argparse.Namespace, count_option: str, read: Callable[[Any, str, str, int], Any]):
    """(team, workflow, what `read(client, team, workflow, count)` answers) for a command about one
    TEAM/WORKFLOW with a count of at most 500 (`--runs`, `--limit`); a workflow not deployed is
    refused with the nearest names."""
    team, workflow = _team_workflow(args.workflow)
    count = getattr(args, count_option)
    if count > 500:
        raise UsageError(f"--{count_option} is at most 500, got {count}")
    client = _client(args)
    with suggesting(client, team, workflow):
        return team, workflow, read(client, team, workflow, count)
