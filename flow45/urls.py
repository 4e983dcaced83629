"""Server URLs as they may be printed or logged: the password hidden."""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

HIDDEN = "***"
_SECRET_OPTIONS = {"password", "passwd", "sslpassword"}


def hide_password(url: str) -> str:
    """`url` with its password (and any password option in the query) shown as ***."""
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:  # not a URL we can take apart: show its scheme only
        return url.split("://", 1)[0] + "://" + HIDDEN if "://" in url else HIDDEN
    netloc = parts.netloc
    if password is not None:
        userinfo, host = netloc.rsplit("@", 1)
        netloc = f"{userinfo.split(':', 1)[0]}:{HIDDEN}@{host}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(key.lower() in _SECRET_OPTIONS for key, _ in pairs):
            query = urlencode([(k, HIDDEN if k.lower() in _SECRET_OPTIONS else v) for k, v in pairs], safe="*")
    if netloc == parts.netloc and query == parts.query:
        return url  # as written (urlunsplit would turn sqlite:///x into sqlite:/x)
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def amqp_parameters(url: str) -> Any:
    """pika's connection parameters for `url`, or ValueError naming what is wrong with it (its
    password hidden): pika itself fails on some of these with a TypeError that names nothing."""
    import pika  # the broker's client: loaded only where a broker is used

    shown = hide_password(url)
    try:
        parts = urlsplit(url)
        _ = parts.port  # read for its ValueError
    except ValueError as exc:
        raise ValueError(f"{shown}: {exc}") from None
    if parts.scheme not in ("amqp", "amqps"):
        raise ValueError(f"{shown}: use amqp://USER:PASSWORD@HOST:PORT/VHOST (or amqps://)")
    if parts.username is not None and parts.password is None:
        raise ValueError(f"{shown}: give the password of {unquote(parts.username)!r} "
                         "(amqp://USER:PASSWORD@HOST:PORT/VHOST)")
    try:
        return pika.URLParameters(url)
    except (ValueError, TypeError) as exc:
        raise ValueError(f"{shown}: {exc}") from None
