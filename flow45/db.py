"""The database: one peewee proxy, bound by `connect(url)` to SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee

from flow45.errors import NoDatabase, SettingsError
from flow45.urls import hide_password

database = peewee.DatabaseProxy()
_generation = 0  # bumped by connect(), so caches keyed by row id never mix two databases


def generation() -> int:
    return _generation


def forget_cached_rows() -> None:
    """After the tables were emptied and ids restarted (tests), nothing cached by id holds."""
    global _generation
    _generation += 1


def sqlite_path(url: str) -> str | None:
    """The file of a `sqlite:///PATH` URL (`sqlite:////ABS` for an absolute one), `:memory:`, or
    None for any other kind of URL."""
    parts = urlsplit(url)
    if parts.scheme != "sqlite":
        return None
    path = unquote(url.split("://", 1)[1].lstrip("/") if parts.netloc == "" else parts.netloc + parts.path)
    return ":memory:" if path in ("", ":memory:") else ("/" + path if url.startswith("sqlite:////") else path)


def open_database(url: str) -> peewee.Database:
    """A peewee database for `sqlite:///PATH` or `postgresql://USER:PASS@HOST:PORT/NAME`.
    Nothing is opened yet; SQLite creates a missing file on the first query."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = sqlite_path(url)
        return peewee.SqliteDatabase(
            path,
            timeout=30,
            pragmas={"journal_mode": "wal", "foreign_keys": 1, "busy_timeout": 30000, "synchronous": "normal"},
        )
    if parts.scheme in ("postgres", "postgresql"):
        options = dict(parse_qsl(parts.query))
        return peewee.PostgresqlDatabase(
            unquote(parts.path.lstrip("/")),
            user=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            host=parts.hostname or "127.0.0.1",
            port=parts.port or 5432,
            **options,
        )
    raise SettingsError(f"database URL {url!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/NAME")


def connect(url: str, create: bool = False) -> peewee.Database:
    """Bind the proxy to the database at `url` (closing any previous one) and return it.

    A SQLite file that does not exist is refused (NoDatabase) unless `create`, which makes its
    folder too: only the commands that create a store pass it. Threads share the bound database
    (peewee keeps one connection per thread), so calling this again with the same URL changes
    nothing: rebinding would pull it from under other threads."""
    previous = database.obj
    if previous is not None and getattr(previous, "flow45_url", None) == url:
        return previous
    path = sqlite_path(url)
    if path is not None and path != ":memory:" and not Path(path).exists():
        if not create:
            raise NoDatabase(f"no Flow45 database at {hide_password(url)}: run `flow45 db upgrade` to create it")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if previous is not None and not previous.is_closed():
        previous.close()
    global _generation
    db = open_database(url)
    db.flow45_url = url
    database.initialize(db)
    _generation += 1
    return db


def is_sqlite() -> bool:
    return isinstance(database.obj, peewee.SqliteDatabase)


def atomic():
    """One write transaction. On SQLite it takes the write lock at once, so two writers
    serialize instead of failing on lock upgrade."""
    if is_sqlite():
        return database.obj.atomic(lock_type="IMMEDIATE")
    return database.obj.atomic()


# What a lost or refused connection raises (also what an unreachable server gives at connect).
CONNECTION_ERRORS = (peewee.OperationalError, peewee.InterfaceError)


def drop_connection() -> None:
    """Forget this thread's connection after a failure, so the next query opens a new one.

    peewee never reconnects by itself: a connection the server closed answers every later query
    with `connection already closed`. Safe to call whatever state the connection is in."""
    db = database.obj
    if db is None:
        return
    try:
        db.close()
    except Exception:  # noqa: BLE001 - closing a dead connection may fail; forgetting it may not
        db._state.reset()


# libpq's wording when the connection itself fails, and the part of it worth showing
_CONNECT_FAILED = re.compile(
    r"^(?:connection to server (?:at|on socket) .*? failed: (?:FATAL:\s+)?(?P<reason>.*)"
    r"|(?P<whole>could not (?:translate host name|connect to server).*|timeout expired))$"
)


def describe_db_error(exc: BaseException, url: str | None = None) -> str | None:
    """One line naming the database (password hidden) and what failed, or None if `exc` is not a
    database failure. `url` defaults to the bound database's."""
    if not isinstance(exc, peewee.PeeweeException):
        return None
    url = url or getattr(database.obj, "flow45_url", None)
    shown = hide_password(url) if url else "the database"
    text = str(exc).strip()
    first_line = text.splitlines()[0].strip() if text else type(exc).__name__
    failed = _CONNECT_FAILED.match(first_line)
    if failed is None:
        return f"database {shown}: {first_line}"
    reason = (failed.group("reason") or failed.group("whole")).strip()
    if reason.startswith("password authentication failed"):
        reason = f"access refused: wrong user name or password ({reason})"
    elif reason == "Connection refused":
        reason = "connection refused (is PostgreSQL running there?)"
    elif re.fullmatch(r'database ".*" does not exist', reason):
        reason += " (create it, then run `flow45 db upgrade`)"
    return f"cannot connect to {shown}: {reason}"
