"""Queries run on every trigger or scheduler tick, whose SQL peewee generates once per process and database kind.

Generating a query's SQL costs peewee more than the query takes to run on a warm server: it was
most of a trigger's CPU. The queries here keep their shape, only their parameters change."""

from __future__ import annotations

from typing import Any, Callable

import peewee

from flow45.db import dialect

_texts: dict[tuple[str, type], str] = {}


def first_row(name: str, model: type[peewee.Model], build: Callable[..., peewee.Query], *params: Any):
    """The first row of `build(*params)` as a `model`, or None. `name` names the query's shape: its
    SQL is taken from `build` the first time, then reused with other `params`, which must be the
    query's parameters in order (simple values compared or assigned, nothing peewee rewrites)."""
    found = rows(name, model, build, *params)
    return found[0] if found else None


def rows(name: str, model: type[peewee.Model], build: Callable[..., peewee.Query], *params: Any,
         dicts: bool = False) -> list:
    """Every row of `build(*params)` as a `model` (its selected columns set; with `dicts`, a dict by
    column name), as `first_row` reuses SQL."""
    key = (name, type(dialect()))
    sql = _texts.get(key)
    if sql is None:
        sql, bound = build(*params).sql()
        if list(bound) != list(params):
            raise ValueError(f"query {name}: its parameters are {bound!r}, not {list(params)!r}")
        _texts[key] = sql
    query = model.raw(sql, *params)
    return list(query.dicts() if dicts else query)  # read to the end: a SQLite statement left open holds its lock
