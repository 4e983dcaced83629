"""Log links: where an attempt's log is (`log_url`), or its last lines (`log_tail`), sent by a worker
with progress, fail and submit and kept with the attempt. Every operator of the team sees them, in a
terminal: so no credentials, no control characters (a tail could otherwise rewrite the screen), and
small (a tail is a hint for a human, not the log itself)."""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from flow45.config import SECRET_NAME
from flow45.errors import InvalidLog
from flow45.outputs import find_secret

LOG_URL_MAX = 2048  # characters
LOG_TAIL_MAX = 4096  # bytes of UTF-8, and never over the output cap
_URL_CHARS = re.compile(r"[\x00-\x20\x7f-\x9f]")
_TAIL_CHARS = re.compile(r"[\x00-\x08\x0b-\x0c\x0e-\x1f\x7f-\x9f]")  # tab, newline and carriage return pass


def url_problem(url: Any) -> str | None:
    """Why `url` is not an acceptable log link; None if it is."""
    if not isinstance(url, str):
        return "must be a string"
    if len(url) > LOG_URL_MAX:
        return f"is {len(url)} characters, over {LOG_URL_MAX}"
    if bad := _URL_CHARS.search(url):
        return f"has a space or control character ({bad.group()!r}) at {bad.start()}"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises on a malformed port
    except ValueError as exc:
        return f"is not a URL ({exc})"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    if parts.username is not None or parts.password is not None:
        return "carries a user name or password; log links are shown to every operator of the team"
    for name, _ in parse_qsl(parts.query, keep_blank_values=True):
        if SECRET_NAME.search(name):
            return f"has a query parameter {name!r} that looks like a secret; log links are shown to every operator of the team"
    if secret := find_secret(url, "log_url"):
        return _said(secret) + "; log links are shown to every operator of the team"
    return None


def tail_problem(tail: Any, output_cap: int | None = None) -> str | None:
    """Why `tail` is not an acceptable log tail; None if it is."""
    if not isinstance(tail, str):
        return "must be a string"
    cap = LOG_TAIL_MAX if output_cap is None else min(LOG_TAIL_MAX, output_cap)
    size = len(tail.encode("utf-8", errors="replace"))
    if size > cap:
        return f"is {size} bytes, over {cap}: send the last lines, or a log_url"
    if bad := _TAIL_CHARS.search(tail):
        return f"has a control character ({bad.group()!r}) at {bad.start()}; only tabs and line breaks may appear"
    if secret := find_secret(tail, "log_tail"):
        return _said(secret) + "; log tails are shown to every operator of the team"
    return None


def _said(secret: str) -> str:
    """find_secret's "PATH: the value looks like X" as "looks like X"."""
    return secret.split(": ", 1)[1].replace("the value looks like", "looks like")


def check_logs(url: str | None, tail: str | None, what: str, output_cap: int | None = None) -> None:
    """Raise InvalidLog naming the problem, if either is given and unacceptable."""
    if url is not None and (problem := url_problem(url)):
        raise InvalidLog(f"{what}: log_url {problem}")
    if tail is not None and (problem := tail_problem(tail, output_cap)):
        raise InvalidLog(f"{what}: log_tail {problem}")
