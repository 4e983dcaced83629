"""What the scheduler's sweeps take on a tick: up to a limit of what came due, the teams in turn.

Each sweep handles a few hundred rows a tick, oldest due first. Taken in that order alone, one team
with thousands due (a backlog of offers nobody claims, a fleet of workers gone at once) would fill
every tick, and another team's lease, retry or lost offer would wait behind all of them.
"""

from __future__ import annotations

import itertools
from typing import Any

import peewee as pw

from flow45.store import reused_sql
from flow45.turns import in_turns


def due_in_turns(query: pw.Select, team: pw.Field, limit: int, shape: tuple[str, tuple] | None = None) -> list[Any]:
    """Up to `limit` rows of `query` (which selects `team`, in the order due), one of each team in
    turn, each team's oldest first. A team with a full page due is looked past once, so every team
    with anything due has its oldest rows among those taken, whatever another team has ahead of them.
    `shape`: (a name for the query's shape, its parameters in order): its first page's SQL is made once
    and reused (`reused_sql.rows`), as every scheduler tick reads each sweep's first page."""
    by_team: dict[str, list[Any]] = {}
    while True:
        if shape is not None and not by_team:
            name, params = shape
            rows = reused_sql.rows(name, query.model, lambda *_: query.limit(limit), *params, limit)
        else:
            page = query.where(team.not_in(list(by_team))) if by_team else query
            rows = list(page.limit(limit))
        for row in rows:
            by_team.setdefault(getattr(row, team.name), []).append(row)
        if len(rows) < limit:  # all that is due, of the teams not seen before
            break
    every = [row for rows in by_team.values() for row in rows]
    return list(itertools.islice(in_turns(every, lambda row: getattr(row, team.name)), limit))
