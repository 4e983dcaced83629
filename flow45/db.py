"""The database: one peewee proxy, bound by `connect(url)` to SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlsplit

import peewee

from flow45.errors import SettingsError

database = peewee.DatabaseProxy()
_generation = 0  # bumped by connect(), so caches keyed by row id never mix two databases


def generation() -> int:
    return _generation


def forget_cached_rows() -> None:
    """After the tables were emptied and ids restarted (tests), nothing cached by id holds."""
    global _generation
    _generation += 1


def open_database(url: str) -> peewee.Database:
    """A peewee database for `sqlite:///PATH` or `postgresql://USER:PASS@HOST:PORT/NAME`."""
    parts = urlsplit(url)
    if parts.scheme == "sqlite":
        path = unquote(url.split("://", 1)[1].lstrip("/") if parts.netloc == "" else parts.netloc + parts.path)
        path = ":memory:" if path in ("", ":memory:") else ("/" + path if url.startswith("sqlite:////") else path)
        if path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
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


def connect(url: str) -> peewee.Database:
    """Bind the proxy to the database at `url` (closing any previous one) and return it.

    Threads share the bound database (peewee keeps one connection per thread), so calling this
    again with the same URL changes nothing: rebinding would pull it from under other threads."""
    previous = database.obj
    if previous is not None and getattr(previous, "flow45_url", None) == url:
        return previous
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


@contextlib.contextmanager
def read():
    """A consistent read: one transaction on both backends."""
    with database.obj.atomic():
        yield


def describe_db_error(exc: BaseException) -> str | None:
    """A one-line explanation of a database failure, or None if `exc` is not one."""
    if not isinstance(exc, peewee.PeeweeException):
        return None
    target = database.obj.database if database.obj is not None else "?"
    first_line = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return f"database {target}: {first_line} (check FLOW45_DATABASE_URL)"
