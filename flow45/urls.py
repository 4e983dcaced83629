"""Server URLs as they may be printed or logged: the password hidden."""

from __future__ import annotations

from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

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
