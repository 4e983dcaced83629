"""The one place that knows which database Flow45 runs on.

`for_url(url)` picks the dialect once, when `flow45.db.connect` binds the database; everything else
asks the bound dialect (`flow45.db.dialect()`) to do a thing, never which database it is. Each
subclass holds its own SQL: row locking, multi-row writes, notifications, advisory locks,
prepared statements."""

from __future__ import annotations

import contextlib
from typing import Any, Sequence
from urllib.parse import urlsplit

import peewee

from flow45.errors import SettingsError
from flow45.urls import hide_password


class Dialect:
    """What the store needs from a database. A dialect owns one peewee database, not yet opened."""

    schemes: tuple[str, ...] = ()
    concurrent_writers = False  # whether write transactions on several connections make progress at once

    def __init__(self, url: str) -> None:
        self.url = url
        self.db = self.open()

    # ---- opening ------------------------------------------------------------------------------

    def open(self) -> peewee.Database:
        raise NotImplementedError

    def store_file(self) -> str | None:
        """The file the store lives in (`:memory:` for none), or None for a database server."""
        return None

    def has_schema(self, timeout: float) -> bool:
        """Whether the schema exists, asked read-only (creates nothing). A missing store raises."""
        raise NotImplementedError

    def own_session(self, application_name: str):
        """A DB-API connection of its own, in autocommit (for session locks and listening)."""
        raise NotImplementedError

    # ---- schema changes (flow45.migrate) ------------------------------------------------------

    never_reused_id = ""  # what an id column's DDL adds so that no row gets a removed row's id

    def changing_schema(self):
        """Around the transaction of `flow45 db upgrade`."""
        return contextlib.nullcontext()

    def stop_reusing_ids(self, tables: Sequence[str]) -> None:
        """Make these tables' ids never come back once their rows are removed (a step of the upgrade)."""

    # ---- transactions and locks ---------------------------------------------------------------

    def atomic(self):
        """One write transaction."""
        return self.db.atomic()

    def for_update(self, query: peewee.Query) -> peewee.Query:
        """`query` locking the rows it reads until the transaction ends."""
        raise NotImplementedError

    def for_share(self, query: peewee.Query) -> peewee.Query:
        """`query` share-locking the rows it reads (others may share them, none may change them)."""
        raise NotImplementedError

    def time_limit(self, seconds: float):
        """Around a read: each of its statements is stopped after `seconds`, and TooSlow raised."""
        raise NotImplementedError

    def scheduler_lock(self, holder: str, lease: float):
        """The lock that lets one scheduler tick at a time (see flow45.scheduler)."""
        raise NotImplementedError

    def session_lock(self, key: int):
        """A lock on the shared connection, lost with it: `held`, `lose()`, `refresh()` (see
        bridge.relay_lock). Where one process serves the database, that process always holds it."""
        raise NotImplementedError

    def open_writers(self) -> int | None:
        """A mark above every write transaction open now (`oldest_open_writer` passes it once they all
        have ended); None where they commit in the order they write (one writer at a time), so that no
        id can be seen after a larger one."""
        return None

    def oldest_open_writer(self) -> int:
        """The mark of the oldest write transaction open now (`open_writers` if none is)."""
        raise NotImplementedError

    # ---- notifications ------------------------------------------------------------------------

    def notify(self, channel: str, deferred: Any = None) -> None:
        """Inside a transaction: wake listeners of `channel` when it commits."""

    def listen(self, channel: str):
        """A connection of its own listening on `channel` (psycopg2's: fileno, poll, notifies), or
        None where the database cannot notify (then callers poll)."""
        return None

    def backend_id(self) -> int | None:
        """This session's id as notifications name their sender, or None."""
        return None

    def commit_without_disk_wait(self) -> None:
        """Inside a transaction: let it commit before its record reaches the disk."""

    # ---- the hot path -------------------------------------------------------------------------

    def deferred(self):
        """Somewhere to hold writes that travel together in one round trip, or None: write at once."""
        return None

    def insert_rows(self, model, rows: list[dict], returning: str | None = None, skip_conflicts: bool = False,
                    deferred: Any = None) -> list:
        raise NotImplementedError

    def update_rows(self, table: str, key: Sequence[str], columns: Sequence[str], rows: list[tuple],
                    casts: dict[str, str], where: str = "", deferred: Any = None) -> None:
        raise NotImplementedError

    def select_in(self, sql: str, values: list, cast: str) -> Any:
        """Rows of `sql`, whose `{}` is a membership test against `values` (of PostgreSQL type `cast`)."""
        raise NotImplementedError

    def pending_outbox(self, limit: int, exclude: list[int], skip_keys: list[str]) -> list[tuple]:
        """Unsent outbox rows as (id, team, kind, routing_key, priority, body as JSON text), but those in
        `exclude` and those routed by `skip_keys`: up to `limit` of each team (or of all, where the
        database serves one machine's teams), each team's most urgent first (priority, then age)."""
        raise NotImplementedError

    def most_urgent_outbox(self, routing_keys: list[str], limit: int) -> list[tuple]:
        """Inside a write transaction: up to `limit` unsent outbox rows of each of `routing_keys`, each
        key's most urgent (priority, then age), as `pending_outbox` gives them; no other transaction
        gets them before this one ends. Read from the head of each key's part of
        `outbox_pending_by_key` whatever the statistics say, so a take costs the same however many
        offers wait."""
        raise NotImplementedError

    def aged_messages(self, before: Any, limit: int) -> list[str]:
        """The keys of up to `limit` records of messages about no instance processed before `before`,
        oldest first, read through `processed_message_unowned_by_age` whatever the statistics say
        (the index of records by instance, where they are all under NULL, would read every one)."""
        raise NotImplementedError

    def lock_and_read(self, select: str, wanted_are: str, wanted: list[int], keys: list[str],
                      wide_versions: Sequence[int] = (),
                      teams: Sequence[str | None] | None = None) -> tuple[list[tuple], dict[str, Any]]:
        """Lock the runs (in id order) of the `wanted` ids, which are run ids or, with `wanted_are`
        "instance" or "instance_alone", task instance ids. Then read `select` ({runs}: the condition on
        those runs, `r`, and their instances, `i`: every one of them; "instance_alone", the wanted ones
        alone; "instance", the wanted ones alone in runs of the `wide_versions`, every one in the
        others; {extra}: a last column this may add) and the stored replies to the message `keys`.
        `teams`, beside each wanted id (which may come more than once): the team it must be of (None:
        any); an id of another team is as missing, its run neither locked nor read, so a message naming
        another team's ids never waits for, nor holds, that team's locks.
        Returns the rows and the replies by key."""
        raise NotImplementedError

    # ---- runs kept between transactions (flow45.store.run_cache) -------------------------------
    keeps_runs = False  # whether rows can be checked against the versions read back after a commit

    def create_row_check(self) -> None:
        """The schema's part of the check (a step of `flow45 db upgrade`)."""

    def check_kept(self, run_ids: list[int], versions: list[str], keys: list[str]) -> None:
        """Lock these runs (in id order) and check, after the locks, that their rows are still the
        `versions` ("id:version" of the runs, then of their instances, each in id order) and that none
        of the message `keys` is stored; sent ahead of the transaction's next statement. A failed
        check rolls the transaction back (`is_stale_rows`)."""
        raise NotImplementedError

    def is_stale_rows(self, exc: BaseException) -> bool:
        """Whether `exc` is a failed `check_kept`."""
        return False

    def read_kept(self, select: str, run_ids: list[int]) -> list[tuple]:
        """The runs of `select` ({runs} as for `lock_and_read`, {extra}: the versions), each row with
        its run's version and its own last; read outside any transaction, locking nothing."""
        raise NotImplementedError

    def read_run_tasks(self, select: str, wanted: list[tuple[int, str]]) -> list[tuple]:
        """The rows of `select` ({runs} as above, no {extra}) of the instances of these (run, task)
        pairs; the caller holds the runs' locks."""
        raise NotImplementedError

    def try_lock_slots(self, limited: str) -> bool:
        """Take, if no other transaction holds it, the lock under which the slots of a limited task or
        function (named by `limited`) are counted and taken (flow45.store.slots), held to the end of the
        transaction."""
        raise NotImplementedError

    def lock_workflows_with_queued_runs(self, workflow_ids: list[int]) -> list[int]:
        """Lock the workflows whose runs finished here (in id order), so that no trigger counts
        their active runs before this commit; returns those that may have a queued run to start,
        which no other finisher starts before this commit."""
        raise NotImplementedError

    def typed_columns(self, every: list, json_only: list) -> list:
        """Of the (name, converter) pairs of a raw row, those the driver did not convert already."""
        return every

    def doubled_wait_elapsed(self, offered, since, at) -> peewee.Expression:
        """`offered + (offered - since) <= at`, as this database compares datetimes."""
        raise NotImplementedError


def _kinds() -> list[type[Dialect]]:
    from flow45.dialect.postgres import PostgresDialect
    from flow45.dialect.sqlite import SqliteDialect

    return [SqliteDialect, PostgresDialect]


def sqlstate(exc: BaseException) -> str | None:
    """PostgreSQL's SQLSTATE of a database error: peewee's (the driver's as its `orig`) or the
    driver's own; None for any other error."""
    return getattr(getattr(exc, "orig", exc), "pgcode", None)


def for_url(url: str) -> Dialect:
    """The dialect of `url`, its database not yet opened."""
    try:
        scheme = urlsplit(url).scheme
    except ValueError as exc:  # such as an IPv6 address left unclosed
        raise SettingsError(f"database URL {hide_password(url)}: {exc}") from None
    for kind in _kinds():
        if scheme in kind.schemes:
            return kind(url)
    raise SettingsError(f"database URL {hide_password(url)!r}: use sqlite:///PATH or postgresql://USER@HOST:PORT/NAME")


def names_server(url: str) -> bool:
    """Whether `url` names a database server (anything else: a file of the caller's own)."""
    from flow45.dialect.postgres import PostgresDialect

    return urlsplit(url).scheme in PostgresDialect.schemes
