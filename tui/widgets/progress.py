"""Progress bars and state marks as Rich text: small enough to sit in a table cell or a DAG row."""

from __future__ import annotations

import datetime as dt

from rich.text import Text

STATE_STYLES = {
    "pending": "bright_black", "available": "cyan", "running": "bold yellow", "retry_wait": "dark_orange",
    "waiting": "orchid", "held": "magenta", "succeeded": "green", "failed": "bold red", "skipped": "blue",
    "cancelled": "red", "queued": "bright_blue",
}
STATE_ICONS = {
    "pending": "·", "available": "○", "running": "●", "retry_wait": "↻", "waiting": "◷", "held": "‖",
    "succeeded": "✓", "failed": "✗", "skipped": "↷", "cancelled": "⊘", "queued": "…",
}
_EIGHTHS = " ▏▎▍▌▋▊▉"


def state_text(state: str, width: int | None = None) -> Text:
    """The state with its mark, coloured; padded to `width` when given."""
    label = f"{STATE_ICONS.get(state, '?')} {state}"
    text = Text(label.ljust(width) if width else label, style=STATE_STYLES.get(state, ""))
    return text


def bar(fraction: float | None, width: int = 10, style: str = "green") -> Text:
    """A bar of `width` cells filled to `fraction` (0..1), in eighths of a cell; blank for None."""
    if fraction is None:
        return Text(" " * width)
    fraction = max(0.0, min(1.0, fraction))
    eighths = round(fraction * width * 8)
    full, part = divmod(eighths, 8)
    filled = "█" * full + (_EIGHTHS[part] if part else "")
    return Text.assemble((filled, style), ("░" * (width - len(filled)), "bright_black"))


def done_bar(counts: dict[str, int], width: int = 10, fits: int | None = None) -> Text:
    """Done (succeeded or skipped) over all instances of a run. `fits`: the bar shrinks so that bar
    and count fit in that many columns (a column cut short would show 0/300 as 0/30)."""
    total = sum(counts.values())
    done = counts.get("succeeded", 0) + counts.get("skipped", 0)
    style = "red" if counts.get("failed") else "green"
    count = f" {done}/{total}"
    if fits is not None:
        width = max(0, min(width, fits - len(count)))
    return bar(done / total if total else 0.0, width, style) + Text(count)


def pct_bar(pct: float | None, state: str, width: int = 10) -> Text:
    """An instance's reported progress; a finished one shows full, a pending one nothing."""
    if state == "succeeded":
        pct = 100.0
    if pct is None:
        return Text(" " * (width + 5))
    style = STATE_STYLES.get(state, "yellow").replace("bold ", "")
    return bar(pct / 100.0, width, style) + Text(f"{pct:4.0f}%")


def minute(value: dt.datetime | None) -> str:
    """To the minute, for tables: `2026-03-01 12:00`."""
    return "-" if value is None else value.strftime("%Y-%m-%d %H:%M")


def short(value: object, width: int) -> str:
    text = "" if value is None else str(value)
    return text if len(text) <= width else text[: max(0, width - 1)] + "…"


def id_width(least: int, ids, before: int = 0) -> int:
    """A column of ids wide enough for the largest (and `before` cells ahead of it, such as a mark):
    an id cut short names another run or instance."""
    return max(least, len(str(max(ids, default=0))) + before)


def cell(value: object, width: int) -> Text:
    """A table cell of text as written: a table reads a plain string as markup, and a worker's or an
    operator's `[/]` would end the dashboard."""
    return Text(short(value, width))
