"""BEGIN travels with a transaction's first statement, and its last writes with its COMMIT, instead
of in round trips of their own.

A batch of the bridge was four round trips (peewee's BEGIN, lock and read, write, commit); the
BEGIN alone cost about a quarter of a millisecond each time, and on a machine where every wake-up of
a process costs as much, the writes' own round trip as well. PostgreSQL runs `BEGIN; stmt` sent as
one query like the two sent apart: the transaction goes on after the query. A transaction in which
nothing ran sends nothing, not even its COMMIT.

Writes left for later (`Deferred.send_later`) go ahead of the transaction's next statement, at the
latest its COMMIT; an error in them is raised there, and the transaction rolls back as before. A
savepoint's SAVEPOINT and RELEASE wait the same way. A rollback drops what waits unsent: all of it
for the transaction's; for a savepoint's, what came after its SAVEPOINT (what came before went with
the SAVEPOINT, or still waits ahead of it). A savepoint rolled back before anything went out since
it began sends nothing.

A read under a time limit (`PostgresDialect.time_limit`) sets the connection's `deadline`: each of
its statements carries a `SET LOCAL statement_timeout` of the time left, and none starts past it,
so the limit bounds the whole read, however many statements it makes."""

from __future__ import annotations

import math
import time
import uuid

import peewee
import psycopg2.extensions

from flow45.errors import TooSlow


class LazyBeginCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):
        limited = self.connection.deadline is not None and not _rolls_back(query)
        limit = self.connection.time_left() if limited else None  # raised before anything is taken
        ahead = self.connection.take_ahead(query)
        if limit is not None:
            ahead.append(limit)
        if ahead:
            # Bound here, so that a % in the statements ahead is never read as a placeholder.
            query, vars = b";\n".join([*ahead, self.mogrify(query, vars)]), None
        return super().execute(query, vars)

    def executemany(self, query, vars_list):
        if self.connection.pending_begin is not None or self.connection.pending_statements:
            self.execute("SELECT 1")  # carries them: executemany runs its statement once per row
        return super().executemany(query, vars_list)


class LazyBeginConnection(psycopg2.extensions.connection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = LazyBeginCursor
        self.pending_begin: str | None = None
        self.pending_statements: list[bytes] = []  # writes, SAVEPOINTs and RELEASEs, in order
        self.deadline: float | None = None  # monotonic: the statements of a read under a time limit

    def time_left(self) -> bytes:
        """The statement that limits the next one to the time left before the deadline; TooSlow past it."""
        left = self.deadline - time.monotonic()
        if left <= 0:
            raise TooSlow()
        return f"SET LOCAL statement_timeout = {max(1, math.ceil(left * 1000))}".encode()

    def take_ahead(self, query) -> list[bytes]:
        """What must be sent ahead of `query`: the BEGIN, and the statements waiting unless it rolls back."""
        ahead = [self.pending_begin.encode()] if self.pending_begin is not None else []
        self.pending_begin = None
        if self.pending_statements:
            if not _rolls_back(query):
                ahead += self.pending_statements
            self.pending_statements = []
        return ahead


def _rolls_back(query) -> bool:
    text = query[:8] if isinstance(query, (str, bytes)) else ""
    return (text.decode() if isinstance(text, bytes) else text).upper().startswith("ROLLBACK")


class LazyBeginDatabase(peewee.PostgresqlDatabase):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, connection_factory=LazyBeginConnection, **kwargs)

    def begin(self, isolation_level=None) -> None:
        if isolation_level or self._isolation_level:
            return super().begin(isolation_level)
        self.connection().pending_begin = "BEGIN"

    def savepoint(self) -> LazySavepoint:
        return LazySavepoint(self)

    def rollback_to(self, savepoint: bytes) -> None:
        """Roll back to the savepoint whose statement is `savepoint`."""
        waiting = self.connection().pending_statements
        if savepoint in waiting:  # not sent yet, nor anything after it: forget them
            del waiting[waiting.index(savepoint):]
        else:  # what waits came after it, and is dropped as the rollback is sent
            self.execute_sql(b"ROLLBACK TO " + savepoint)

    def send_later(self, statements: list[bytes]) -> None:
        """Send `statements` ahead of the transaction's next one (its COMMIT at the latest)."""
        self.connection().pending_statements.extend(statements)

    def commit(self) -> None:
        if not self._began_nothing():
            super().commit()

    def rollback(self) -> None:
        conn = self._state.conn
        if conn is not None and getattr(conn, "pending_statements", None):
            conn.pending_statements = []
        if not self._began_nothing():
            super().rollback()

    def _began_nothing(self) -> bool:
        """True (and the BEGIN forgotten) when nothing was sent since it, nor waits to be."""
        conn = self._state.conn
        if conn is None or getattr(conn, "pending_begin", None) is None or conn.pending_statements:
            return False
        conn.pending_begin = None
        return True


class LazySavepoint:
    """A savepoint (what `atomic()` opens inside a transaction) that costs no round trip of its own."""

    def __init__(self, db: LazyBeginDatabase) -> None:
        self.db = db
        self.statement = f'SAVEPOINT "s{uuid.uuid4().hex}"'.encode()

    def __enter__(self) -> LazySavepoint:
        self.db.send_later([self.statement])
        return self

    def __exit__(self, exc_type, exc_val, exc_tb) -> None:
        if exc_type:
            self.db.rollback_to(self.statement)
        else:
            self.db.send_later([b"RELEASE " + self.statement])
