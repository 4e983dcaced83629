"""How statements reach PostgreSQL on the hot path. Each statement shape is prepared once per
connection, with one array parameter per column: planning a batch's statement costs several times
more than running it. Parameters are written as literals here where that is safe, and statements
whose results nobody reads wait in a `Deferred` and travel together in one round trip."""

from __future__ import annotations

import datetime as dt
import functools
import hashlib
import weakref
from typing import Any, Sequence

import peewee
import psycopg2

# Prepared plans are not re-planned per call. Each statement touches a few rows by key: a plan made
# while the tables were small (no statistics yet) must not scan them whole once they have grown.
GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off"

_PG_TYPES = {"AUTO": "bigint", "BIGAUTO": "bigint", "BIGINT": "bigint", "INT": "integer", "VARCHAR": "varchar",
             "TEXT": "text", "DATETIME": "timestamp", "BOOL": "boolean", "FLOAT": "double precision"}
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> its _Session
_names: dict[tuple, tuple[str, str, tuple]] = {}  # (statement, types) -> its name, its EXECUTE with placeholders, its casts


class Deferred:
    """Statements sent later in one round trip (psycopg2 binds the parameters on the client, so
    several statements go as one query); a statement whose rows are wanted goes last."""

    def __init__(self, db: peewee.Database) -> None:
        self._db = db
        self._statements: list[bytes] = []

    def add(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._statements.append(new_cursor(self._db).mogrify(sql, params))

    def add_bound(self, statement: bytes) -> None:
        self._statements.append(statement)

    def send(self, last: bytes | None = None):
        """Run everything waiting (and `last`); returns the cursor, holding `last`'s rows."""
        parts, self._statements = self._statements + ([last] if last else []), []
        if not parts:
            return None
        return send_statement(self._db, b";\n".join(parts))

    def send_later(self) -> None:
        """Send everything waiting with the transaction's next statement, at the latest its COMMIT:
        one round trip fewer. Outside a transaction, sent now."""
        if self._statements and self._db.in_transaction():
            self._db.send_later(self._statements)
            self._statements = []
        else:
            self.send()


def prepared(db: peewee.Database, sql: str, types: Sequence[str], args: Sequence[Any]) -> bytes:
    """`EXECUTE` of `sql` (parameters $1..$n of `types`) with `args` bound, preparing it on this
    connection first if needed. Run it after GENERIC_PLANS in the same transaction."""
    key = (sql, tuple(types))
    named = _names.get(key)
    if named is None:  # the statements are a few dozen texts, each named once per process
        name = "flow45_" + hashlib.sha1(sql.encode()).hexdigest()[:20]
        named = _names[key] = (name, f"EXECUTE {name}({', '.join(f'%s::{t}' for t in types)})",
                               tuple(f"::{t}" for t in types))
    name, execute_bound, casts = named
    connection = db.connection()
    session = _prepared.get(connection)
    if session is None:
        session = _prepared[connection] = _Session(connection.encoding == "UTF8")
    if name not in session.names:  # prepared statements outlive transactions, rolled back or not
        send_statement(db, f"PREPARE {name} ({', '.join(types)}) AS {sql}")
        session.names.add(name)
    if session.utf8:
        try:
            return f"EXECUTE {name}({', '.join([_literal(v) + cast for v, cast in zip(args, casts)])})".encode()
        except (_NoLiteral, KeyError):
            pass
    return new_cursor(db).mogrify(execute_bound, args)



def send_statement(db: peewee.Database, statement: str | bytes, cursor=None):
    """Run `statement` on the driver's cursor (a new one unless given), its errors raised as peewee's
    classes, as `execute_sql` raises them: every caller catches one family of database errors."""
    cursor = cursor or new_cursor(db)
    with peewee.__exception_wrapper__:
        cursor.execute(statement)
    return cursor


def new_cursor(db: peewee.Database):
    """A new cursor of the connection. One the server closed (a crash, a restart) answers `connection
    already closed` in psycopg2's own InterfaceError, which no caller's handling of database errors
    (peewee's classes) would catch: the connection would never be dropped and opened again, and every
    later batch refused. Raised as peewee's, as a statement's errors are; connecting raises those already."""
    try:
        return db.cursor()
    except psycopg2.Error:
        with peewee.__exception_wrapper__:
            raise


class _Session:
    """What one connection has prepared, and whether its text goes as UTF-8 (then this module writes
    the statement's literals itself: psycopg2's mogrify adapts each value through several layers)."""

    __slots__ = ("names", "utf8")

    def __init__(self, utf8: bool) -> None:
        self.names: set[str] = set()
        self.utf8 = utf8


class _NoLiteral(Exception):
    """A value whose literal is psycopg2's to write."""


def _literal(value: Any) -> str:
    """A string, an integer or a list (an array parameter, which the statement casts) as an SQL
    literal. Strings and arrays go as escape strings (E'...'), which mean the same whatever
    standard_conforming_strings says: a backslash and a quote are the only characters they escape.
    A list's element of a type not below raises KeyError: psycopg2 writes that list."""
    kind = type(value)
    if kind is list:  # PostgreSQL's array literal, {1,NULL,"text"}, inside the escape string
        return "E'{" + ",".join([_ELEMENT[type(v)](v) for v in value]) + "}'"
    if kind is str:
        if "\x00" in value:
            raise _NoLiteral  # no text can hold it: psycopg2 refuses it, saying so
        return "E'" + value.replace("\\", "\\\\").replace("'", "''") + "'"
    if kind is int:
        return f"({value})" if value < 0 else str(value)
    raise _NoLiteral


def _element_text(text: str) -> str:
    """Quoted as an array element (backslash and double quote escaped), then escaped for the escape
    string around the array, in one pass: a backslash becomes four."""
    if "\x00" in text:
        raise _NoLiteral
    return '"' + text.replace("\\", "\\\\\\\\").replace('"', '\\\\"').replace("'", "''") + '"'


def _element_timestamp(value: dt.datetime | dt.date) -> str:
    if getattr(value, "tzinfo", None) is not None:
        raise _NoLiteral  # the store keeps naive UTC; psycopg2 knows what an offset means
    return '"' + value.isoformat() + '"'


_ELEMENT = {str: _element_text, int: str, bool: lambda b: "t" if b else "f", float: lambda f: f'"{f!r}"',
            dt.datetime: _element_timestamp, dt.date: _element_timestamp, type(None): lambda _: "NULL"}


@functools.lru_cache(maxsize=None)  # a few dozen shapes: one per table and set of columns
def insert_shape(model, names: tuple[str, ...], returning: str | None, skip_conflicts: bool):
    """The INSERT of rows with these columns (and the others' defaults): its text, its parameters'
    types, the fields in parameter order, and the fields whose defaults each row takes."""
    fields = [model._meta.fields[name] for name in names]
    defaults = [f for f in model._meta.sorted_fields if f.default is not None and f.name not in names]
    fields += defaults
    types = [_PG_TYPES[f.field_type] + "[]" for f in fields]
    arrays = ", ".join(f"${n}" for n in range(1, len(fields) + 1))
    sql = (f'INSERT INTO "{model._meta.table_name}" ({", ".join(f.column_name for f in fields)}) '
           f"SELECT * FROM unnest({arrays})"
           + (" ON CONFLICT DO NOTHING" if skip_conflicts else "") + (f" RETURNING {returning}" if returning else ""))
    return sql, types, fields, defaults


@functools.lru_cache(maxsize=None)  # a few dozen shapes
def update_statement(table: str, key: tuple[str, ...], columns: tuple[str, ...], where: str) -> str:
    names = [*key, *columns]
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    # The first key's array again, as a key lookup: with statistics that say the table is
    # empty, the join alone may be planned as a hash of the whole table.
    match = " AND ".join([*(f"t.{k} = v.{k}" for k in key), f"t.{key[0]} = ANY($1)"])
    arrays = ", ".join(f"${n}" for n in range(1, len(names) + 1))
    return (f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}) AS v({', '.join(names)}) "
            f"WHERE {match}{' AND ' + where.replace('{t}', 't') if where else ''}")



def columns_of(values: list[tuple], width: int) -> list[list]:
    """Rows to one list per column: the array parameters of an unnest()."""
    return [list(column) for column in zip(*values)] if values else [[] for _ in range(width)]
