"""A run's key: the caller's own name for one run (an order number, a file's name), as Temporal's
workflow id, Conductor's idempotency key or Camunda's business key. A workflow has one run per key:
triggering it again with the key answers that run, so that a caller that retries after a timeout, or
two processes that see the same order, start it once."""

from __future__ import annotations

import re

from flow45.errors import InvalidParams

MAX_LENGTH = 128
# Printable, no spaces at either end: a key is written on command lines, in logs and in ledger details.
PATTERN = r"^[^\x00-\x20\x7f]([^\x00-\x1f\x7f]{0,126}[^\x00-\x20\x7f])?$"


def key_problem(key: str) -> str | None:
    if isinstance(key, str) and re.fullmatch(PATTERN, key):
        return None
    return (f"run key {repr(key)[:60]} must be 1-{MAX_LENGTH} printable characters, without control characters or "
            "spaces at either end")


def check_key(key: str) -> str:
    if problem := key_problem(key):
        raise InvalidParams(problem)
    return key
