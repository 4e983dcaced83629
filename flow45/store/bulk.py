"""Multi-row writes for the hot path: one statement per table, whatever the batch size."""

from __future__ import annotations

import json
from typing import Any, Sequence

from flow45.db import database, is_sqlite

CHUNK = 500


def insert_rows(model, rows: list[dict]) -> None:
    for start in range(0, len(rows), CHUNK):
        model.insert_many(rows[start : start + CHUNK]).execute()


def insert_returning_ids(model, rows: list[dict]) -> list[int]:
    """Insert and return the new ids, in order (the ledger needs them for its readers)."""
    ids: list[int] = []
    for start in range(0, len(rows), CHUNK):
        chunk = rows[start : start + CHUNK]
        if is_sqlite():
            for row in chunk:  # in-process: per-row inserts cost no round trips
                ids.append(model.insert(row).execute())
        else:
            ids.extend(r[0] for r in model.insert_many(chunk).returning(model._meta.primary_key).tuples().execute())
    return ids


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
