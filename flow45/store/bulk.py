"""Multi-row writes for the hot path: one statement per table, whatever the batch size; on
PostgreSQL, statements whose results nobody reads wait in a `Deferred` and travel together."""

from __future__ import annotations

import json
from typing import Any, Sequence

from flow45.db import database, is_sqlite

CHUNK = 500


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


def _bound_insert(cursor, table: str, columns: list[str], values: list[tuple], suffix: str) -> bytes:
    row = "(" + ", ".join(["%s"] * len(columns)) + ")"
    rows = b", ".join(cursor.mogrify(row, v) for v in values)
    return f'INSERT INTO "{table}" ({", ".join(columns)}) VALUES '.encode() + rows + suffix.encode()


def insert_rows(
    model, rows: list[dict], returning: str | None = None, skip_conflicts: bool = False,
    deferred: Deferred | None = None,
) -> list:
    """Multi-row INSERT; on PostgreSQL as raw statements (peewee's query building costs more than the
    round trip on the hot path), held in `deferred` unless values are returned (then it sends them
    all). Returns the `returning` column's values, in order."""
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
    suffix = (" ON CONFLICT DO NOTHING" if skip_conflicts else "") + (f" RETURNING {returning}" if returning else "")
    values = [tuple(f.db_value(row[f.name]) for f in fields) for row in rows]
    columns = [f.column_name for f in fields]
    pending = deferred or Deferred()
    cursor = database.cursor()
    found: list = []
    for start in range(0, len(values), CHUNK):
        statement = _bound_insert(cursor, model._meta.table_name, columns, values[start : start + CHUNK], suffix)
        if returning:
            found.extend(r[0] for r in pending.send(statement).fetchall())
        else:
            pending.add_bound(statement)
    if deferred is None:
        pending.send()
    return found


def update_rows(
    table: str, key: Sequence[str], columns: Sequence[str], rows: list[tuple], casts: dict[str, str],
    where: str = "", deferred: Deferred | None = None,
) -> None:
    """UPDATE `table` SET columns FROM the rows, matched on `key` columns (rows hold key values first).
    `casts` gives each column's PostgreSQL type, so NULLs in VALUES are typed."""
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
    pending = deferred or Deferred()
    assignments = ", ".join(f"{c} = v.{c}::{casts[c]}" for c in columns)
    match = " AND ".join(f"t.{k} = v.{k}::{casts[k]}" for k in key)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        placeholders = ", ".join("(" + ", ".join(["%s"] * len(names)) + ")" for _ in chunk)
        sql = (
            f"UPDATE {table} AS t SET {assignments} FROM (VALUES {placeholders}) AS v({', '.join(names)}) "
            f"WHERE {match}{' AND ' + where.replace('{t}', 't') if where else ''}"
        )
        pending.add(sql, [value for row in chunk for value in row])
    if deferred is None:
        pending.send()


def _sqlite(values: Sequence[Any]) -> list[Any]:
    return [str(v) if hasattr(v, "isoformat") and not isinstance(v, str) else v for v in values]


def as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))
