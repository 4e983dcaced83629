"""Many teams' items in one line, the teams taking turns: what one team queued in bulk waits behind
one item of each other team, never the other teams behind it."""

from __future__ import annotations

import itertools
from typing import Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
_GONE = object()  # what zip_longest fills a team's turns with once its items ran out


def in_turns(items: Iterable[T], team_of: Callable[[T], str]) -> Iterator[T]:
    """`items`, one of each team in turn (teams in the order they first appear), each team's items
    in the order given."""
    by_team: dict[str, list[T]] = {}
    for item in items:
        by_team.setdefault(team_of(item), []).append(item)
    return (item for turn in itertools.zip_longest(*by_team.values(), fillvalue=_GONE)
            for item in turn if item is not _GONE)
