"""What changed from one stored version of a workflow to the next, one line per changed setting:
`tasks.extract.retries: 3 -> 4`, `tasks.audit: added`, `types.Document.fields.checksum: removed`.
Said by deploy, kept in its ledger event, and listed by `flow45 versions`: who changed what, and when."""

from __future__ import annotations

from typing import Any

from flow45 import wire
from flow45.durations import format_duration

MOST_CHANGES = 40  # lines kept; the rest are counted
MOST_VALUE = 60  # characters of a value shown
# Settings stored as seconds, shown as a config writes them (3d, not 259200.0).
DURATIONS = frozenset({"retry_delay", "max_retry_delay", "lease", "timeout", "due", "reminders", "wait", "sla"})


def spec_changes(before: dict, after: dict) -> list[str]:
    """The changed settings between two stored documents (flow45.store.specs.spec_document), paths as
    a config writes them: the workflow's own keys first, then its types, groups and functions."""
    lines: list[str] = []
    _walk(_readable(before), _readable(after), "", lines)
    if len(lines) > MOST_CHANGES:
        lines[MOST_CHANGES:] = [f"... and {len(lines) - MOST_CHANGES} more"]
    return lines


def _readable(document: dict) -> dict:
    """The document as a config is written: the workflow's keys at the top, not under `workflow`."""
    return {**document.get("workflow", {}),
            **{key: document[key] for key in ("types", "groups", "functions") if key in document}}


def _walk(before: Any, after: Any, path: str, lines: list[str]) -> None:
    if isinstance(before, dict) and isinstance(after, dict):
        for key in [*before, *(k for k in after if k not in before)]:  # the document's own order
            where = f"{path}.{key}" if path else str(key)
            if key not in after:
                was = "" if isinstance(before[key], dict) else f" (was {_shown(before[key], where)})"
                lines.append(f"{where}: removed{was}")
            elif key not in before:
                now = "" if isinstance(after[key], dict) else f" {_shown(after[key], where)}"
                lines.append(f"{where}: added{now}")
            else:
                _walk(before[key], after[key], where, lines)
    elif before is None and isinstance(after, dict):  # a part set where there was none: a schedule, an overdue rule
        lines.append(f"{path}: added")
    elif isinstance(before, dict) and after is None:
        lines.append(f"{path}: removed")
    elif before != after:
        lines.append(f"{path}: {_shown(before, path)} -> {_shown(after, path)}")


def _shown(value: Any, path: str) -> str:
    if path.rpartition(".")[2] in DURATIONS and not path.startswith("types."):
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return _duration(value)
        if isinstance(value, list) and all(isinstance(v, (int, float)) for v in value):
            return "[" + ", ".join(_duration(v) for v in value) + "]"
    text = wire.dumps(value)
    return text if len(text) <= MOST_VALUE else text[:MOST_VALUE - 3] + "..."


def _duration(seconds: float) -> str:
    return format_duration(seconds) if float(seconds).is_integer() else f"{seconds:g}s"
