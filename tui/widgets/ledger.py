"""The ledger, live: a log of events for a run, an instance or everything, appended as they come."""

from __future__ import annotations

from collections import deque
from typing import Iterable

from rich.text import Text
from textual.geometry import Size
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flow45.views import EventView
from tui.widgets.progress import STATE_STYLES

SHOWN = 300  # events a screen's ledger pane opens with, the newest; it reads one more to know of earlier ones


def _detail(event: EventView) -> str:
    detail = event.detail
    if not isinstance(detail, dict):
        return "" if detail is None else str(detail)
    parts = []
    if detail.get("reason"):
        parts.append(f"reason: {detail['reason']}")
    if detail.get("affected"):
        parts.append("affected: " + ", ".join(str(a.get("task", a.get("instance"))) for a in detail["affected"]))
    if detail.get("hold"):
        parts.append("hold")
    if "attempt" in detail and not parts:
        parts.append(f"attempt {detail['attempt']}")
    if detail.get("workflow"):
        parts.append(f"{detail['workflow']} v{detail.get('version', '?')}")
    if detail.get("error"):
        parts.append(f"error: {detail['error']}")
    return "; ".join(parts)


def format_event(event: EventView, names: dict[int, str] | None = None) -> Text:
    """One line: id, time, kind, what, the move, who, and why."""
    text = Text.assemble(
        (f"{event.id:>5} ", "bright_black"), (event.at.strftime("%H:%M:%S "), "bright_black"),
        (f"{event.kind:<7} ", "bold"),
    )
    if event.instance is not None:
        label = (names or {}).get(event.instance) or event.task
        text.append(f"#{event.instance}" + (f" {label}" if label else "") + " ")
    elif event.run is not None:
        text.append(f"run {event.run} ")
    if event.to_state:
        if event.from_state:
            text.append(event.from_state, STATE_STYLES.get(event.from_state, ""))
            text.append("→")
        text.append(event.to_state, STATE_STYLES.get(event.to_state, ""))
        text.append(" ")
    text.append(f"by {event.actor}", "italic")
    if detail := _detail(event):
        text.append(f"  {detail}", "bright_black")
    return text


def newest(events: list[EventView]) -> tuple[list[EventView], bool]:
    """Of the events read as SHOWN + 1 (tail_events), the newest SHOWN, and whether earlier ones were left out."""
    return events[-SHOWN:], len(events) > SHOWN


class Ledger(ScrollView, can_focus=True):
    """Events of one run, one instance, or all of them, oldest at the top, following the newest.

    One line per event, drawn on demand (Textual's line API): showing a long ledger costs what
    the visible lines cost. Lines wider than the panel scroll sideways."""

    DEFAULT_CSS = """
    Ledger {
        background: $surface;
        border: round $primary-darken-2;
        border-title-color: $text-muted;
        scrollbar-size-vertical: 1;
        scrollbar-size-horizontal: 1;
    }
    Ledger:focus { border: round $accent; }
    """
    MAX_LINES = 2000

    def __init__(self, *, run: int | None = None, instance: int | None = None, id: str | None = None):
        super().__init__(id=id)
        self.run = run
        self.instance = instance
        self.names: dict[int, str] = {}
        self.last_id = 0
        self.border_title = "ledger"
        self._lines: deque[Text] = deque(maxlen=self.MAX_LINES)
        self._ids: deque[int] = deque(maxlen=self.MAX_LINES)  # the event id of each line
        self._widest = 0
        self.marked: int | None = None  # the event shown as "as it was" on the run screen

    def matches(self, event: EventView) -> bool:
        if event.id <= self.last_id:
            return False
        if self.instance is not None:
            return event.instance == self.instance
        return self.run is None or event.run == self.run

    @property
    def lines(self) -> list[str]:
        return [line.plain for line in self._lines]

    def mark(self, event_id: int | None) -> None:
        """Highlight one event's line (None: none) and bring it into view."""
        self.marked = event_id
        self.refresh()
        if event_id is not None and event_id in self._ids:
            line = list(self._ids).index(event_id)
            height = max(1, self.scrollable_content_region.height)
            if not self.scroll_offset.y <= line < self.scroll_offset.y + height:
                self.scroll_to(y=max(0, line - height // 2), animate=False, immediate=True)

    def show(self, events: Iterable[EventView], *, earlier: bool = False) -> None:
        """`earlier`: older events than these were left out, which the title says, with where to read them."""
        self.border_title = "ledger"
        if earlier:
            whose = f"--instance {self.instance}" if self.instance is not None else f"--run {self.run}"
            self.border_title = f"ledger · the newest {SHOWN} events; the rest: flow45 events {whose} --after 0"
        self._lines.clear()
        self._ids.clear()
        self._widest = 0
        self.last_id = 0
        self.add(events, follow=True)

    def add(self, events: Iterable[EventView], follow: bool | None = None) -> int:
        """Append the events this log follows; returns how many. The view follows the newest
        only while the reader is at the bottom: scrolling up to read stays put."""
        if follow is None:
            follow = self.scroll_offset.y >= self.max_scroll_y
        added = 0
        for event in events:
            if self.matches(event):
                line = format_event(event, self.names)
                self._lines.append(line)
                self._ids.append(event.id)
                self._widest = max(self._widest, line.cell_len)
                self.last_id = event.id
                added += 1
        if added:
            self.virtual_size = Size(self._widest, len(self._lines))
            self.refresh()
            if follow:
                self.call_after_refresh(self.scroll_end, animate=False, immediate=True)
        return added

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        index = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if index >= len(self._lines):
            return Strip.blank(width, style)
        text = self._lines[index].copy()
        if self.marked is not None and self._ids[index] == self.marked:
            text.pad_right(max(0, width + scroll_x - text.cell_len))
            text.stylize("reverse")
        text.stylize_before(style)
        strip = Strip(list(text.render(self.app.console)), text.cell_len)
        return strip.crop_extend(scroll_x, scroll_x + width, style)
