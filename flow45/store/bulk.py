"""Multi-row writes for the hot path: one statement per table, whatever the batch size. How each
database does it (and how writes share one round trip) is its dialect's business."""

from __future__ import annotations

from typing import Any, Sequence

from flow45 import wire
from flow45.db import dialect


def insert_rows(model, rows: list[dict], returning: str | None = None, skip_conflicts: bool = False,
                deferred: Any = None) -> list:
    """Multi-row INSERT, held in `deferred` (if any) unless values are returned (then everything
    waiting is sent with it). Returns the `returning` column's values, in order."""
    return dialect().insert_rows(model, rows, returning, skip_conflicts, deferred)


def insert_rows_later(model, rows: list[dict]) -> None:
    """Multi-row INSERT sent with the transaction's next statement where the database can (an error
    in it is raised there): rows nobody reads back until then need no round trip of their own."""
    deferred = dialect().deferred()
    insert_rows(model, rows, deferred=deferred)
    if deferred is not None:
        deferred.send_later()


def update_rows(table: str, key: Sequence[str], columns: Sequence[str], rows: list[tuple], casts: dict[str, str],
                where: str = "", deferred: Any = None) -> None:
    """UPDATE `table` SET columns FROM the rows, matched on `key` columns (rows hold key values first).
    `casts` gives each column's PostgreSQL type; `where` may name the table as `{t}`."""
    dialect().update_rows(table, key, columns, rows, casts, where, deferred)


def as_json(value: Any) -> str | None:
    return None if value is None else wire.dumps(value)
