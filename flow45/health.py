"""`flow45 health`: does the database answer, and are the parts of the running service alive?
(The broker is checked by the command line, which may import pika.) Each check returns None when
fine, else one line naming what failed."""

from __future__ import annotations

import time

from flow45 import heartbeat
from flow45.db import describe_db_error
from flow45.dialect import for_url
from flow45.errors import NoDatabase
from flow45.urls import hide_password


def check_database(url: str, timeout: float = 5.0) -> str | None:
    """One query, which also finds the schema; never creates a SQLite file."""
    try:
        has_schema = for_url(url).has_schema(timeout)
    except NoDatabase as exc:
        return str(exc)
    except Exception as exc:  # noqa: BLE001 - whatever failed, health says so in one line
        return describe_db_error(exc, url) or (
            f"database {hide_password(url)}: {' '.join(str(exc).split()) or type(exc).__name__}"
        )
    if not has_schema:
        return f"no Flow45 schema in {hide_password(url)}: run `flow45 db upgrade` to create it"
    return None


def check_heartbeat(path: str, max_age: float, now: float | None = None) -> list[str]:
    """The service writing `path` is running and each of its parts looped within `max_age` seconds."""
    try:
        data = heartbeat.read(path)
    except FileNotFoundError:
        return [f"heartbeat file {path}: missing (is `flow45 serve`, `bridge run` or `scheduler` running?)"]
    except (OSError, ValueError) as exc:
        return [f"heartbeat file {path}: unreadable ({exc})"]
    return heartbeat.problems(data, time.time() if now is None else now, max_age)
