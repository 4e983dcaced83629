"""BEGIN travels with a transaction's first statement instead of in a round trip of its own.

A batch of the bridge is four round trips (lock and read, write, commit, and peewee's BEGIN); the
BEGIN alone cost about a quarter of a millisecond each time. PostgreSQL runs `BEGIN; stmt` sent as
one query like the two sent apart: the transaction goes on after the query. A transaction in which
nothing ran sends nothing, not even its COMMIT."""

from __future__ import annotations

import peewee
import psycopg2.extensions


class LazyBeginCursor(psycopg2.extensions.cursor):
    def execute(self, query, vars=None):
        begin = self.connection.pending_begin
        if begin is not None:
            self.connection.pending_begin = None
            if isinstance(query, bytes):
                query = begin.encode() + b";\n" + query
            elif isinstance(query, str):
                query = f"{begin};\n{query}"
            else:  # a psycopg2.sql composition: joined only once it meets the connection
                super().execute(begin)
        return super().execute(query, vars)

    def executemany(self, query, vars_list):
        if self.connection.pending_begin is not None:
            self.execute("SELECT 1")  # carries the BEGIN: executemany runs its statement once per row
        return super().executemany(query, vars_list)


class LazyBeginConnection(psycopg2.extensions.connection):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cursor_factory = LazyBeginCursor
        self.pending_begin: str | None = None


class LazyBeginDatabase(peewee.PostgresqlDatabase):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, connection_factory=LazyBeginConnection, **kwargs)

    def begin(self, isolation_level=None) -> None:
        if isolation_level or self._isolation_level:
            return super().begin(isolation_level)
        self.connection().pending_begin = "BEGIN"

    def commit(self) -> None:
        if not self._began_nothing():
            super().commit()

    def rollback(self) -> None:
        if not self._began_nothing():
            super().rollback()

    def _began_nothing(self) -> bool:
        """True (and the BEGIN forgotten) when no statement ran since it."""
        conn = self._state.conn
        if conn is None or getattr(conn, "pending_begin", None) is None:
            return False
        conn.pending_begin = None
        return True
