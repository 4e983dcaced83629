"""The run screen steps back and forth through the run's ledger and shows the DAG as it was."""

from __future__ import annotations

from flow45 import store
from flow45.models import Event
from tests.tui.conftest import OPERATOR, SIZE, T0, instance, monthly_run, wait_until
from tests.tui.test_dashboard import dag_states, open_run, text_of
from tui.app import Dashboard
from tui.widgets.ledger import Ledger


async def test_stepping_back_shows_the_dag_as_it_was_and_stepping_past_the_newest_is_live(tui_db):
    run = monthly_run(("extract", "render"))  # extract and render done, approve available
    ids = [e.id for e in Event.select().where(Event.run == run).order_by(Event.id)]
    app = Dashboard(OPERATOR, database_url=tui_db)
    async with app.run_test(size=SIZE) as pilot:
        screen = await open_run(pilot)
        now = dag_states(app)
        assert now == {"extract": "succeeded", "render": "succeeded", "approve": "available", "publish": "pending"}

        await pilot.press("left_square_bracket")  # before the last event (approve offered)
        await wait_until(pilot, lambda: screen.step_at == len(ids) - 2)
        assert dag_states(app) == {**now, "approve": "pending"}
        assert f"as it was at ledger event {ids[-2]}" in text_of(screen.query_one("#run-info"))
        assert screen.query_one(Ledger).marked == ids[-2]

        for _ in range(len(ids)):  # past the first event: stays at the trigger, before any offer
            await pilot.press("left_square_bracket")
        await wait_until(pilot, lambda: set(dag_states(app).values()) == {"pending"})
        assert screen.query_one(Ledger).marked == ids[0]

        # A change while looking back is added to the ledger, not to the past being shown.
        store.hold(instance(run, "publish").id, actor="ann", now=T0)
        await wait_until(pilot, lambda: screen.steps[-1] > ids[-1])
        assert dag_states(app)["publish"] == "pending"

        for _ in range(len(screen.steps)):
            await pilot.press("right_square_bracket")
        await wait_until(pilot, lambda: screen.step_at is None)  # the newest: read again, live
        assert screen.query_one(Ledger).marked is None
        assert dag_states(app)["publish"] == "held"
        assert "as it was" not in text_of(screen.query_one("#run-info"))
