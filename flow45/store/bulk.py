"""Multi-row writes for the hot path: one statement per table, whatever the batch size.

On PostgreSQL each statement shape is prepared once per connection, with one array parameter per
column: planning a batch's statement costs several times more than running it. Statements whose
results nobody reads wait in a `Deferred` and travel together in one round trip."""

from __future__ import annotations

import hashlib
import weakref
from typing import Any, Sequence

from flow45 import wire
from flow45.db import database, is_sqlite

CHUNK = 500  # rows per statement on SQLite
# Prepared plans are not re-planned per call. Each statement touches a few rows by key: a plan made
# while the tables were small (no statistics yet) must not scan them whole once they have grown.
GENERIC_PLANS = "SET LOCAL plan_cache_mode = force_generic_plan; SET LOCAL enable_seqscan = off"

_PG_TYPES = {"AUTO": "bigint", "BIGAUTO": "bigint", "BIGINT": "bigint", "INT": "integer", "VARCHAR": "varchar",
             "TEXT": "text", "DATETIME": "timestamp", "BOOL": "boolean", "FLOAT": "double precision"}
_prepared: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # connection -> names prepared on it


class Deferred:
    """PostgreSQL statements sent later in one round trip (psycopg2 binds the parameters on the client,
    so several statements go as one query); a statement whose rows are wanted goes last."""

    def __init__(self) -> None:
        self._statements: list[bytes] = []

    def add(self, sql: str, params: Sequence[Any] = ()) -> None:
        self._statements.append(database.cursor().mogrify(sql, params))

    def add_bound(self, statement: bytes) -> None:
        self._statements.append(statement)

    def send(self, last: bytes | None = None):
        """Run everything waiting (and `last`); returns the cursor, holding `last`'s rows."""
        parts, self._statements = self._statements + ([last] if last else []), []
        if not parts:
            return None
        cursor = database.cursor()
        cursor.execute(b";\n".join(parts))
        return cursor


def prepared(sql: str, types: Sequence[str], args: Sequence[Any]) -> bytes:
    """`EXECUTE` of `sql` (parameters $1..$n of `types`) with `args` bound, preparing it on this
    connection first if needed. Run it after GENERIC_PLANS in the same transaction."""
    name = "flow45_" + hashlib.sha1(sql.encode()).hexdigest()[:20]
    connection = database.connection()
    done = _prepared.setdefault(connection, set())
    cursor = database.cursor()
    if name not in done:  # prepared statements outlive transactions, rolled back or not
        cursor.execute(f"PREPARE {name} ({', '.join(types)}) AS {sql}")
        done.add(name)
    marks = ", ".join(f"%s::{t}" for t in types)
    return cursor.mogrify(f"EXECUTE {name}({marks})", list(args))


def pg_type(field) -> str:
    return _PG_TYPES[field.field_type]


def _columns(values: list[tuple], width: int) -> list[list]:
    """Rows to one list per column: the array parameters of an unnest()."""
    return [list(column) for column in zip(*values)] if values else [[] for _ in range(width)]


def insert_rows(
    model, rows: list[dict], returning: str | None = None, skip_conflicts: bool = False,
    deferred: Deferred | None = None,
) -> list:
    """Multi-row INSERT; on PostgreSQL a prepared statement held in `deferred` unless values are
    returned (then it sends them all). Returns the `returning` column's values, in order."""
    if not rows:
        return []
    if is_sqlite():
        if returning is None:
            for start in range(0, len(rows), CHUNK):
                query = model.insert_many(rows[start : start + CHUNK])
                (query.on_conflict_ignore() if skip_conflicts else query).execute()
            return []
        return [model.insert(row).execute() for row in rows]
    fields = [model._meta.fields[name] for name in rows[0]]
    defaults = [f for f in model._meta.sorted_fields if f.default is not None and f.name not in rows[0]]
    rows = [{**row, **{f.name: f.default() if callable(f.default) else f.default for f in defaults}} for row in rows]
    fields += defaults
    types = [pg_type(f) + "[]" for f in fields]
    arrays = ", ".join(f"${n}" for n in range(1, len(fields) + 1))
    sql = (f'INSERT INTO "{model._meta.table_name}" ({", ".join(f.column_name for f in fields)}) '
           f"SELECT * FROM unnest({arrays})"
           + (" ON CONFLICT DO NOTHING" if skip_conflicts else "") + (f" RETURNING {returning}" if returning else ""))
    values = [tuple(f.db_value(row[f.name]) for f in fields) for row in rows]
    statement = prepared(sql, types, _columns(values, len(fields)))
    pending = deferred or Deferred()
    if returning:
        return [r[0] for r in pending.send(statement).fetchall()]
    pending.add_bound(statement)
    if deferred is None:
        pending.send()
    return []


def update_rows(
    table: str, key: Sequence[str], columns: Sequence[str], rows: list[tuple], casts: dict[str, str],
    where: str = "", deferred: Deferred | None = None,
) -> None:
    """UPDATE `table` SET columns FROM the rows, matched on `key` columns (rows hold key values first).
    `casts` gives each column's PostgreSQL type (of the statement's array parameters)."""
    if not rows:
        return
    names = [*key, *columns]
    if is_sqlite():
        assignments = ", ".join(f"{c} = ?" for c in columns)
        match = " AND ".join(f"{k} = ?" for k in key)
        extra = " AND " + where.replace("{t}.", "") if where else ""
        sql = f"UPDATE {table} SET {assignments} WHERE {match}{extra}"
        cursor = database.obj.cursor()
        cursor.executemany(sql, [(*_sqlite(r[len(key):]), *r[: len(key)]) for r in rows])
        return
    types = [casts[c] + "[]" for c in names]
    assignments = ", ".join(f"{c} = v.{c}" for c in columns)
    match = " AND ".join(f"t.{k} = v.{k}" for k in key)
    arrays = ", ".join(f"${n}" for n in range(1, len(names) + 1))
    sql = (f"UPDATE {table} AS t SET {assignments} FROM unnest({arrays}) AS v({', '.join(names)}) "
           f"WHERE {match}{' AND ' + where.replace('{t}', 't') if where else ''}")
    statement = prepared(sql, types, _columns(rows, len(names)))
    if deferred is None:
        database.cursor().execute(statement)
    else:
        deferred.add_bound(statement)


def _sqlite(values: Sequence[Any]) -> list[Any]:
    return [str(v) if hasattr(v, "isoformat") and not isinstance(v, str) else v for v in values]


def as_json(value: Any) -> str | None:
    return None if value is None else wire.dumps(value)
