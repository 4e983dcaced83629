"""Text that workers and operators wrote, made safe to put in front of a person: control characters
written as their escapes. Printed as it came, a worker's error holding ESC [2J clears the reader's
screen, and ESC ]2; retitles the terminal (the dashboard's drawing passes them on too)."""

from __future__ import annotations

import dataclasses
import re
from typing import Any

# Every control character but tab and line feed, C1 and DEL included; and the invisible format
# characters that reorder or hide text (bidirectional overrides and isolates, the zero-width space;
# not the joiners and marks that scripts and emoji need): a name holding U+202E reads backwards.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b\u202a-\u202e\u2060-\u2069\ufeff]")


def visible(text: str) -> str:
    """Control characters as their escapes: ESC as \\x1b, U+202E as \\u202e."""
    return _CONTROL.sub(lambda found: repr(found.group())[1:-1], text)


def visible_all(value: Any) -> Any:
    """`value` with `visible` applied to every string in it: in dataclasses (views), lists, tuples and
    dicts (keys too). Anything else is returned as it is."""
    if isinstance(value, str):
        return visible(value) if _CONTROL.search(value) else value
    if isinstance(value, (list, tuple)) and not hasattr(value, "_fields"):  # a named tuple is left as it is
        return type(value)(visible_all(v) for v in value)
    if isinstance(value, dict):
        return {visible_all(k): visible_all(v) for k, v in value.items()}
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        changed = {f.name: visible_all(getattr(value, f.name)) for f in dataclasses.fields(value) if f.init}
        return dataclasses.replace(value, **changed)
    return value
