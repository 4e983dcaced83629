"""The run's timeline (a Gantt chart on the run screen): each task's wait and run time on one axis."""

from __future__ import annotations

import datetime as dt

from flow45 import store
from tests.tui.conftest import OPERATOR, SIZE, T0, instance, wait_until
from tests.tui.test_dashboard import open_run
from tui.app import Dashboard
from tui.widgets.timeline import Timeline, timeline_text


def minutes(n: float) -> dt.datetime:
    return T0 + dt.timedelta(minutes=n)


def nightly() -> int:
    """Triggered at 0; load_emea claimed at 2, still running; load_apac claimed at 4 and done at 8."""
    run = store.trigger("reports", "nightly_sales", None, actor="ann", now=minutes(0))
    emea, apac = instance(run, "load_emea"), instance(run, "load_apac")
    store.claim(emea.id, emea.token, "w1", now=minutes(2))
    grant = store.claim(apac.id, apac.token, "w2", now=minutes(4))
    store.submit(apac.id, grant.token, {"region": "apac", "uri": "s3://apac", "rows": 10}, now=minutes(8))
    return run


def test_each_task_waits_then_runs_on_one_axis(tui_db):
    run = store.get_run(nightly())
    lines = timeline_text(run, 13 + 1 + 20 + 7, now=minutes(10)).plain.splitlines()  # 20 cells: 30 s each
    assert lines[0].split() == ["12:00:00", "12:10:00", "10m00s"]
    rows = {line[:13].strip(): (line[14:34], line[34:].strip()) for line in lines[1:]}
    assert rows["load_emea"] == ("░░░░████████████████", "8m00s")  # waited 0-2, runs on until now
    assert rows["load_apac"] == ("░░░░░░░░████████    ", "4m00s")  # waited 0-4, ran 4-8
    assert rows["load_americas"] == ("░" * 20, "")  # offered at 0, never claimed
    assert rows["summarize"] == (" " * 20, "")  # pending: nothing yet


async def test_g_shows_the_timeline_on_the_run_screen(tui_db):
    nightly()
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        timeline = screen.query_one(Timeline)
        assert not timeline.display
        await pilot.press("g")
        await wait_until(pilot, lambda: timeline.display and timeline.size.height > 0)
        assert [i.task for i in timeline.run.instances][:3] == ["load_emea", "load_americas", "load_apac"]
        await pilot.press("g")
        await wait_until(pilot, lambda: not timeline.display)
