"""Multi-row writes for the hot path: one statement per table, whatever the batch size."""

from __future__ import annotations

import json
from typing import Any, Sequence

from flow45.db import database, is_sqlite

CHUNK = 500


def insert_rows(model, rows: list[dict], returning: str | None = None, skip_conflicts: bool = False) -> list:
    """Multi-row INSERT; on PostgreSQL as one raw statement per chunk (peewee's query building costs
    more than the round trip on the hot path). Returns the `returning` column's values, in order."""
    if not rows:
        return []
    if is_sqlite():
        if returning is None:
            for start in range(0, len(rows), CHUNK):
                query = model.insert_many(rows[start : start + CHUNK])
                (query.on_conflict_ignore() if skip_conflicts else query).execute()
            return []
        return [model.insert(row).execute() for row in rows]
    from psycopg2.extras import execute_values

    fields = [model._meta.fields[name] for name in rows[0]]
    defaults = [f for f in model._meta.sorted_fields if f.default is not None and f.name not in rows[0]]
    rows = [{**row, **{f.name: f.default() if callable(f.default) else f.default for f in defaults}} for row in rows]
    fields += defaults
    sql = (f'INSERT INTO "{model._meta.table_name}" ({", ".join(f.column_name for f in fields)}) VALUES %s'
           + (" ON CONFLICT DO NOTHING" if skip_conflicts else "")
           + (f" RETURNING {returning}" if returning else ""))
    values = [tuple(f.db_value(row[f.name]) for f in fields) for row in rows]
    cursor = database.cursor()
    found = execute_values(cursor, sql, values, page_size=CHUNK, fetch=returning is not None)
    return [r[0] for r in found] if returning else []


def update_rows(
    table: str, key: Sequence[str], columns: Sequence[str], rows: list[tuple], casts: dict[str, str],
    where: str = "",
) -> int:
    """UPDATE `table` SET columns FROM the rows, matched on `key` columns (rows hold key values first).
    `casts` gives each column's PostgreSQL type, so NULLs in VALUES are typed."""
    if not rows:
        return 0
    names = [*key, *columns]
    if is_sqlite():
        assignments = ", ".join(f"{c} = ?" for c in columns)
        match = " AND ".join(f"{k} = ?" for k in key)
        extra = " AND " + where.replace("{t}.", "") if where else ""
        sql = f"UPDATE {table} SET {assignments} WHERE {match}{extra}"
        cursor = database.obj.cursor()
        cursor.executemany(sql, [(*_sqlite(r[len(key):]), *r[: len(key)]) for r in rows])
        return cursor.rowcount
    changed = 0
    assignments = ", ".join(f"{c} = v.{c}::{casts[c]}" for c in columns)
    match = " AND ".join(f"t.{k} = v.{k}::{casts[k]}" for k in key)
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        placeholders = ", ".join("(" + ", ".join(["%s"] * len(names)) + ")" for _ in chunk)
        sql = (
            f"UPDATE {table} AS t SET {assignments} FROM (VALUES {placeholders}) AS v({', '.join(names)}) "
            f"WHERE {match}{' AND ' + where.replace('{t}', 't') if where else ''}"
        )
        changed += database.execute_sql(sql, [value for row in chunk for value in row]).rowcount
    return changed


def _sqlite(values: Sequence[Any]) -> list[Any]:
    return [str(v) if hasattr(v, "isoformat") and not isinstance(v, str) else v for v in values]


def as_json(value: Any) -> str | None:
    return None if value is None else json.dumps(value, separators=(",", ":"))
