"""JSON from outside, parsed with limits: nothing pathological is ever built.

Python's `json` recurses once per nesting level, turns `NaN`, `Infinity` and `1e400` into floats
that are not JSON, converts 5,000-digit integers (or refuses them with a bare ValueError), keeps the
last of duplicate keys and lets `\\ud800` and `\\u0000` through, which PostgreSQL refuses later.
`loads` checks the depth before parsing (a scan that cannot recurse) and everything else while
parsing, through the parser's hooks, and raises `JSONRefused` naming the problem.
"""

from __future__ import annotations

import json
import math
import re
from typing import Any

from flow45.errors import Flow45Error

MAX_DEPTH = 64
MAX_NUMBER_CHARS = 64  # every 64-bit integer and every double's shortest form fit with room to spare

_TOKEN = re.compile(r'\\.|["\[\]{}]', re.S)  # what matters for depth: quotes, escapes, brackets


class JSONRefused(Flow45Error):
    """The JSON is not acceptable."""

    code = "invalid_message"


class _Refuse(Exception):
    """Raised inside the parser's hooks; becomes JSONRefused."""


def depth(text: str) -> int:
    """The deepest nesting of arrays and objects in `text`, found in one pass without recursion."""
    deepest = level = 0
    in_string = False
    for match in _TOKEN.finditer(text):
        token = match.group()
        if token == '"':
            in_string = not in_string
        elif in_string or token[0] == "\\":
            continue  # an escape (outside a string it is a syntax error the parser stops at)
        elif token in "[{":
            level += 1
            deepest = max(deepest, level)
        else:
            level -= 1
    return deepest


def _number(literal: str) -> None:
    if len(literal) > MAX_NUMBER_CHARS:
        raise _Refuse(f"a number of {len(literal)} characters ({literal[:20]}…), over {MAX_NUMBER_CHARS}")


def _int(literal: str) -> int:
    _number(literal)
    return int(literal)


def _float(literal: str) -> float:
    _number(literal)
    value = float(literal)
    if not math.isfinite(value):
        raise _Refuse(f"the number {literal} overflows a double: numbers must be finite")
    return value


def _constant(name: str) -> None:
    raise _Refuse(f"{name} is not a JSON number: numbers must be finite")


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result = dict(pairs)
    if len(result) != len(pairs):
        seen: set[str] = set()
        duplicate = next(key for key, _ in pairs if key in seen or seen.add(key))
        raise _Refuse(f"the key {duplicate[:60]!r} appears twice in one object")
    return result


def _bad_string(value: Any) -> str | None:
    """A string the database cannot store: a lone surrogate or U+0000 (only `\\u` escapes make them)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, dict):
            stack.extend(item.keys())
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
        elif isinstance(item, str):
            if "\x00" in item:
                return "a string holds U+0000, which cannot be stored"
            try:
                item.encode("utf-8")
            except UnicodeEncodeError:
                return "a string holds a lone UTF-16 surrogate (\\ud800-\\udfff), which is not Unicode"
    return None


def loads(text: str) -> Any:
    """Parse `text` as JSON; raises JSONRefused naming what is wrong."""
    # Fewer brackets than the limit cannot nest deeper: the common case costs two C-speed counts.
    if text.count("[") + text.count("{") > MAX_DEPTH and (deepest := depth(text)) > MAX_DEPTH:
        raise JSONRefused(f"the JSON nests {deepest} levels deep, over {MAX_DEPTH}")
    try:
        value = json.loads(
            text, parse_int=_int, parse_float=_float, parse_constant=_constant, object_pairs_hook=_object,
        )
    except _Refuse as exc:
        raise JSONRefused(str(exc)) from None
    except json.JSONDecodeError as exc:
        raise JSONRefused(f"not JSON ({exc.msg} at line {exc.lineno} column {exc.colno})") from None
    except RecursionError:  # the depth scan should have caught it; never let it out
        raise JSONRefused(f"the JSON nests too deep, over {MAX_DEPTH} levels") from None
    if "\\u" in text and (problem := _bad_string(value)):
        raise JSONRefused(problem)
    return value
