"""A run's task instances as a DAG: grouped by dependency level, one row each, edges named.

Each row shows the instance's state, attempt, worker, progress bar, run time and message, and the upstream
tasks it waits on (`◀ extract, render`). The row under the cursor marks its direct neighbours:
▲ on the tasks that feed it, ▼ on the tasks that wait for it. Rows are drawn on demand (Textual's
line API), so a run of thousands of instances scrolls as cheaply as one of four, and an update
redraws only the rows that changed.
"""

from __future__ import annotations

from typing import Iterable

from rich.text import Text
from textual.binding import Binding
from textual.events import Click
from textual.geometry import Size
from textual.message import Message
from textual.scroll_view import ScrollView
from textual.strip import Strip

from flow45.clock import utcnow
from flow45.timing import instance_time, short_span
from flow45.views import InstanceView
from tui.widgets.progress import pct_bar, short, state_text

_STATE_W, _ATTEMPT_W, _WORKER_W, _BAR_W, _TIME_W, _MIN_MESSAGE_W, _WANTED_MESSAGE_W = 13, 4, 12, 6, 7, 12, 20


def edge_label(upstream: list[str], width: int) -> str:
    """`◀ a, b` within `width` cells, `+N` for the names that do not fit; blank for a root."""
    if not upstream:
        return ""
    shown: list[str] = []
    for index, name in enumerate(upstream):
        rest = len(upstream) - index - 1
        candidate = "◀ " + ", ".join(shown + [name]) + (f" +{rest}" if rest else "")
        if len(candidate) > width and shown:
            return "◀ " + ", ".join(shown) + f" +{len(upstream) - index}"
        shown.append(name)
    return short("◀ " + ", ".join(shown), width)


class DagView(ScrollView, can_focus=True):
    """The instances of one run by dependency level, with a cursor."""

    BINDINGS = [
        Binding("up,k", "move(-1)", "Up", show=False),
        Binding("down,j", "move(1)", "Down", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "move(-1000000000)", "First", show=False),
        Binding("end", "move(1000000000)", "Last", show=False),
        Binding("enter", "select", "Open instance"),
    ]
    COMPONENT_CLASSES = {"dag--cursor", "dag--level", "dag--related"}
    DEFAULT_CSS = """
    DagView { background: $surface; }
    DagView > .dag--cursor { background: $accent 40%; }
    DagView > .dag--level { color: $text-muted; text-style: bold; }
    DagView > .dag--related { background: $primary 20%; }
    """

    class Highlighted(Message):
        def __init__(self, dag: DagView, instance: InstanceView):
            super().__init__()
            self.dag = dag
            self.instance = instance

    class Selected(Highlighted):
        pass

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self._lines: list[int | str] = []  # an instance id, or a level heading
        self._views: dict[int, InstanceView] = {}
        self._line_of: dict[int, int] = {}
        self._task_lines: list[int] = []
        self._by_task: dict[str, int] = {}
        self._downstream: dict[str, list[str]] = {}
        self._cursor = 0
        self._task_w = 12
        self._edge_w = 12
        self._natural = (12, 12)  # the task and edge columns' widths when there is room
        self._cache: dict[int, Strip] = {}
        self.as_of = None  # the time the instances are shown as of (the run as it was), else None: now

    # ---- data ---------------------------------------------------------------------------------

    def show(self, views: list[InstanceView], levels: dict[str, int]) -> None:
        """Lay out every instance; the cursor stays on the instance it was on."""
        keep = self.cursor_instance.id if self.cursor_instance else None
        by_level: dict[int, list[InstanceView]] = {}
        for view in views:
            by_level.setdefault(levels.get(view.task, 0), []).append(view)
        self._views = {v.id: v for v in views}
        self._by_task = {v.task: v.id for v in views}
        self._downstream = {v.task: [] for v in views}
        for view in views:
            for up in view.upstream:
                self._downstream.setdefault(up, []).append(view.task)
        self._lines, self._line_of, self._task_lines = [], {}, []
        for level in sorted(by_level):
            self._lines.append(f"level {level} · {len(by_level[level])} task{'s' if len(by_level[level]) != 1 else ''}")
            for view in by_level[level]:
                self._line_of[view.id] = len(self._lines)
                self._task_lines.append(len(self._lines))
                self._lines.append(view.id)
        self._natural = (min(max((len(v.task) for v in views), default=8), 24),
                         min(max((len(edge_label(v.upstream, 999)) for v in views), default=0), 24))
        self._fit()
        self._cursor = 0
        if keep in self._line_of:
            self._cursor = self._task_lines.index(self._line_of[keep])
        self._cache.clear()
        self.virtual_size = Size(self._fixed_width + _MIN_MESSAGE_W, len(self._lines))
        self.refresh()
        self.call_after_refresh(self._scroll_to_cursor)

    def _fit(self) -> None:
        """Columns for the width: the edge labels go first (the ▲/▼ marks still show the cursor's
        neighbours), then task names shorten, so state, attempt, worker and progress stay in view."""
        self._task_w, self._edge_w = self._natural
        room = self.scrollable_content_region.width or 10_000
        if self._fixed_width + _WANTED_MESSAGE_W > room:  # the progress message matters more than the edges
            self._edge_w = 0
        if self._fixed_width > room:
            self._task_w = max(8, self._task_w - (self._fixed_width - room))

    def on_resize(self) -> None:
        before = (self._task_w, self._edge_w)
        self._fit()
        if (self._task_w, self._edge_w) != before:
            self._cache.clear()
            self.virtual_size = Size(self._fixed_width + _MIN_MESSAGE_W, len(self._lines))
            self.refresh()

    def update_instances(self, views: Iterable[InstanceView]) -> None:
        """Replace these instances' rows in place (only those lines are redrawn)."""
        for view in views:
            line = self._line_of.get(view.id)
            if line is None:
                continue
            self._views[view.id] = view
            self._cache.pop(line, None)
            self.refresh_line(line)

    @property
    def instances(self) -> list[InstanceView]:
        return [self._views[self._lines[line]] for line in self._task_lines]

    @property
    def cursor_instance(self) -> InstanceView | None:
        if not self._task_lines:
            return None
        return self._views[self._lines[self._task_lines[self._cursor]]]

    def move_to(self, instance_id: int) -> None:
        if instance_id in self._line_of:
            self._set_cursor(self._task_lines.index(self._line_of[instance_id]))

    # ---- cursor -------------------------------------------------------------------------------

    def _set_cursor(self, index: int) -> None:
        if not self._task_lines:
            return
        index = max(0, min(len(self._task_lines) - 1, index))
        if index == self._cursor:
            return
        self._cursor = index
        self._cache.clear()  # the cursor row and the ▲/▼ marks move
        self.refresh()
        self._scroll_to_cursor()
        self.post_message(self.Highlighted(self, self.cursor_instance))

    def _scroll_to_cursor(self) -> None:
        if not self._task_lines:
            return
        line = self._task_lines[self._cursor]
        top_line = line - 1 if line > 0 and isinstance(self._lines[line - 1], str) else line
        height = max(1, self.scrollable_content_region.height)
        if top_line < self.scroll_offset.y:
            self.scroll_to(y=top_line, animate=False, immediate=True)
        elif line >= self.scroll_offset.y + height:
            self.scroll_to(y=line - height + 1, animate=False, immediate=True)

    def action_move(self, delta: int) -> None:
        self._set_cursor(self._cursor + delta)

    def action_page(self, direction: int) -> None:
        self._set_cursor(self._cursor + direction * max(1, self.scrollable_content_region.height - 2))

    def action_select(self) -> None:
        if self.cursor_instance is not None:
            self.post_message(self.Selected(self, self.cursor_instance))

    def on_click(self, event: Click) -> None:
        offset = event.get_content_offset(self)
        if offset is None:
            return
        line = offset.y + self.scroll_offset.y
        if 0 <= line < len(self._lines) and isinstance(self._lines[line], int):
            self._set_cursor(self._task_lines.index(line))
            if event.chain > 1:
                self.action_select()

    # ---- drawing ------------------------------------------------------------------------------

    @property
    def _fixed_width(self) -> int:
        return 2 + self._task_w + 1 + (self._edge_w + 1 if self._edge_w else 0) + _STATE_W + _ATTEMPT_W + 1 \
            + _WORKER_W + 1 + _BAR_W + 5 + 1 + _TIME_W + 2

    @property
    def _line_width(self) -> int:
        """Rows fill the widget; the message gets what the other columns leave (at least a little)."""
        return max(self.size.width, self._fixed_width + _MIN_MESSAGE_W)

    @property
    def now(self):
        """What a running attempt's time is measured up to."""
        return self.as_of or utcnow()

    def _relation(self, view: InstanceView) -> str:
        cursor = self.cursor_instance
        if cursor is None or cursor.id == view.id:
            return " "
        if view.task in cursor.upstream:
            return "▲"
        if view.task in self._downstream.get(cursor.task, ()):
            return "▼"
        return " "

    def _row_text(self, view: InstanceView) -> Text:
        worker = view.worker or ("(human)" if view.human else "")
        text = Text(self._relation(view), style="bold")
        text.append(" ")
        text.append(short(view.task, self._task_w).ljust(self._task_w), "bold" if view.human else "")
        text.append(" ")
        if self._edge_w:
            text.append(edge_label(view.upstream, self._edge_w).ljust(self._edge_w), "bright_black")
            text.append(" ")
        text.append_text(state_text(view.state, _STATE_W))
        text.append((f"#{view.attempt}" if view.attempt else "").rjust(_ATTEMPT_W) + " ")
        text.append(short(worker, _WORKER_W).ljust(_WORKER_W) + " ", "italic" if view.human else "")
        text.append_text(pct_bar(view.progress_pct, view.state, _BAR_W))
        ran = instance_time(view, self.now)
        text.append(" " + (short_span(ran) if ran is not None else "").rjust(_TIME_W), "bright_black")
        text.append("  ")
        text.append(short(view.progress_message, self._line_width - self._fixed_width))
        return text

    def _line_text(self, line: int, width: int) -> Text:
        item = self._lines[line]
        if isinstance(item, str):
            text = Text(f"── {item} ", style=self.get_component_rich_style("dag--level"))
            text.append("─" * max(0, width - len(text)), self.get_component_rich_style("dag--level"))
            return text
        view = self._views[item]
        text = self._row_text(view)
        text.pad_right(max(0, width - text.cell_len))
        if line == self._task_lines[self._cursor]:
            text.stylize(self.get_component_rich_style("dag--cursor"))
        elif self._relation(view) != " ":
            text.stylize(self.get_component_rich_style("dag--related"))
        return text

    def render_line(self, y: int) -> Strip:
        scroll_x, scroll_y = self.scroll_offset
        line = scroll_y + y
        width = self.size.width
        style = self.rich_style
        if line >= len(self._lines):
            return Strip.blank(width, style)
        full = self._line_width
        strip = self._cache.get(line)
        if strip is None or strip.cell_length != full:
            text = self._line_text(line, full)
            text.stylize_before(style)
            strip = self._cache[line] = Strip(list(text.render(self.app.console)), text.cell_len)
        return strip.crop_extend(scroll_x, scroll_x + width, style)
