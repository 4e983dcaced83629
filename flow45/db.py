"""The database: one peewee proxy, bound by `connect(url)` to SQLite or PostgreSQL."""

from __future__ import annotations

import contextlib
import re
import threading
from pathlib import Path

import peewee

from flow45.dialect import Dialect, for_url
from flow45.errors import NoDatabase
from flow45.urls import hide_password

database = peewee.DatabaseProxy()
_generation = 0  # bumped by connect(), so caches keyed by row id never mix two databases


def generation() -> int:
    return _generation


def forget_cached_rows() -> None:
    """Nothing cached by row id holds: the tables were emptied and ids restarted (tests), or rows read
    by id were rolled back (`wrote_versions`)."""
    global _generation
    _generation += 1


_versions = threading.local()  # `written`: this thread's open transaction wrote workflow versions


def wrote_versions() -> None:
    """This thread's open transaction wrote workflow versions, which it may read by id and cache (their
    specs, the current version's id). If it rolls back, the ids and version numbers are free again and
    the next deploy's may take them: the caches forget everything (`atomic`)."""
    _versions.written = True


def versions_written_here() -> bool:
    """Whether this thread's open transaction wrote workflow versions (`wrote_versions`): the limits in
    force are then its own to read, not what other transactions recently read."""
    return getattr(_versions, "written", False)


def connect(url: str, create: bool = False) -> peewee.Database:
    """Bind the proxy to the database at `url` (closing any previous one) and return it.

    A SQLite file that does not exist is refused (NoDatabase) unless `create`, which makes its
    folder too: only the commands that create a store pass it. Threads share the bound database
    (peewee keeps one connection per thread), so calling this again with the same URL changes
    nothing: rebinding would pull it from under other threads."""
    previous = database.obj
    if previous is not None and getattr(previous, "flow45_url", None) == url:
        return previous
    chosen = for_url(url)
    path = chosen.store_file()
    if path is not None and path != ":memory:" and not Path(path).exists():
        if not create:
            raise NoDatabase(f"no Flow45 database at {hide_password(url)}: run `flow45 db upgrade` to create it")
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    if previous is not None and not previous.is_closed():
        previous.close()
    global _generation
    db = chosen.db
    db.flow45_url = url
    db.flow45_dialect = chosen
    database.initialize(db)
    _generation += 1
    return db


def dialect() -> Dialect:
    """The bound database's dialect (chosen by `connect`): how to lock, write in bulk, notify on it."""
    return database.obj.flow45_dialect


@contextlib.contextmanager
def atomic():
    """One write transaction (on SQLite it takes the write lock at once), or a savepoint in one."""
    try:
        with dialect().atomic():
            yield
    except BaseException:
        if versions_written_here():  # a dry run's deploy, or a COMMIT that failed
            forget_cached_rows()
        raise
    finally:
        if not database.in_transaction():
            _versions.written = False


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
