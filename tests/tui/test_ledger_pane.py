"""The run and instance screens open their ledger pane with the newest events only: the pane says
when earlier events were left out, and where to read them."""

from __future__ import annotations

from flow45 import store
from flow45.models import Event
from tests.tui.conftest import OPERATOR, SIZE, T0, instance, monthly_run, wait_until
from tests.tui.test_dashboard import open_run
from tui.app import Dashboard
from tui.screens.instance import InstanceScreen
from tui.widgets.ledger import SHOWN, Ledger


async def test_a_ledger_pane_of_a_long_run_says_it_shows_the_newest_events(tui_db):
    """A run of more events than the pane reads showed its newest 300 as if they were all of it."""
    run = monthly_run(("extract", "render"))
    short = len(Event.select().where(Event.run == run))
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        assert screen.query_one(Ledger).border_title == "ledger" and len(screen.steps) == short
    render = instance(run, "render").id
    for n in range(SHOWN):
        store.note_run(run, f"looked {n}", actor="ann", task="render", now=T0)
    ids = [e.id for e in Event.select(Event.id).where(Event.run == run).order_by(Event.id)]
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        ledger = screen.query_one(Ledger)
        assert ledger.border_title == (f"ledger · the newest {SHOWN} events; the rest: "
                                       f"flow45 events --run {run} --after 0")
        assert screen.steps == ids[-SHOWN:] and ledger.last_id == ids[-1]
        app.push_screen(InstanceScreen(render))
        await wait_until(pilot, lambda: isinstance(app.screen, InstanceScreen) and app.screen.payload is not None)
        pane = app.screen.query_one(Ledger)
        await wait_until(pilot, lambda: pane.last_id == ids[-1])
        assert pane.border_title == (f"ledger · the newest {SHOWN} events; the rest: "
                                     f"flow45 events --instance {render} --after 0")
