"""A run as a Gantt chart: one row per task, on one time axis from the run's trigger to its end (or now).

Each row shows the current attempt: `░` from its offer to its claim (the queue wait), then `█` in the
state's colour while it ran, and the run time at the end of the row. Drawn to the widget's width."""

from __future__ import annotations

import datetime as dt

from rich.text import Text
from textual.widget import Widget

from flow45.clock import utcnow
from flow45.timing import instance_time, short_span
from flow45.views import RunView
from tui.widgets.progress import STATE_STYLES, short

_TIME_W = 7


def timeline_text(run: RunView, width: int, now: dt.datetime) -> Text:
    """The chart of `run` in `width` cells, time running up to `now` for what is still going."""
    start = run.created_at
    end = run.finished_at if run.finished_at and run.status != "running" else now
    span = max((end - start).total_seconds(), 1e-9)
    name_w = min(max((len(i.task) for i in run.instances), default=4), 20)
    bar_w = max(8, width - name_w - 1 - _TIME_W)

    def cell(moment: dt.datetime | None) -> int | None:
        if moment is None:
            return None
        return max(0, min(bar_w, round((moment - start).total_seconds() / span * bar_w)))

    text = Text(" " * (name_w + 1), "bright_black")
    left, right = start.strftime("%H:%M:%S"), end.strftime("%H:%M:%S")
    text.append((left + right.rjust(bar_w - len(left))) if bar_w > len(left) + len(right) else left.ljust(bar_w),
                "bright_black")
    text.append(f" {short_span(span).rjust(_TIME_W - 1)}", "bright_black")
    for view in run.instances:
        row = [" "] * bar_w
        styles = [""] * bar_w
        offered, started = cell(view.offered_at), cell(view.started_at)
        finished = cell(view.finished_at or (now if view.started_at and view.state == "running" else None))
        waited_until = started if started is not None else (cell(now) if view.state in ("available", "waiting") else None)
        if offered is not None and waited_until is not None:
            for x in range(offered, max(offered, waited_until)):
                row[x], styles[x] = "░", "bright_black"
        if started is not None and finished is not None:
            for x in range(started, max(started + 1, finished)):
                if x < bar_w:
                    row[x], styles[x] = "█", STATE_STYLES.get(view.state, "").replace("bold ", "")
        text.append("\n")
        text.append(short(view.task, name_w).ljust(name_w) + " ")
        for char, style in zip(row, styles):
            text.append(char, style)
        ran = instance_time(view, now)
        text.append(" " + (short_span(ran) if ran is not None else "").rjust(_TIME_W - 1), "bright_black")
    return text


class Timeline(Widget):
    """The run's timeline; `show(run)` to draw another run or the same one changed."""

    DEFAULT_CSS = """
    Timeline {
        height: auto;
        max-height: 50%;
        overflow-y: auto;
        border: round $primary-darken-2;
        border-title-color: $text-muted;
        background: $surface;
    }
    """

    def __init__(self, *, id: str | None = None):
        super().__init__(id=id)
        self.run: RunView | None = None
        self.as_of: dt.datetime | None = None
        self.border_title = "timeline"

    def show(self, run: RunView, as_of: dt.datetime | None = None) -> None:
        self.run, self.as_of = run, as_of
        self.refresh(layout=True)

    def get_content_height(self, container, viewport, width: int) -> int:
        return 1 + (len(self.run.instances) if self.run else 0)

    def render(self) -> Text:
        if self.run is None:
            return Text("")
        return timeline_text(self.run, self.content_size.width, self.as_of or utcnow())
