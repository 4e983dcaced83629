"""An assigned operator's inbox in the dashboard: the overdue approval first (though younger), taken
with `t`, then decided in its form with a comment; someone not assigned is refused in the form,
in words naming who may. The clock stands at a fixed moment: due times are read against it."""

from __future__ import annotations

import datetime as dt
import threading

import time_machine
from textual.widgets import Input, Select, Static

from flow45 import store
from flow45.models import Attempt, Event
from tests.tui.conftest import OPERATOR, REVIEWER, SIZE, T0, complete, instance, monthly_run, notices, wait_until
from tests.tui.test_dashboard import text_of
from tui.app import Dashboard
from tui.screens.human import HumanTaskScreen
from tui.screens.inbox import SHOWS, InboxScreen
from tui.screens.modals import GiveModal, TakeOverModal
from tui.screens.runs import RunsScreen

DAY = dt.timedelta(days=1)
NOW = T0 + 2 * DAY + dt.timedelta(hours=1)  # the example's approval is due 2 days after it is ready


def two_approvals() -> tuple[int, int]:
    """(due tomorrow, overdue by an hour): the overdue one is the younger run."""
    later = monthly_run(("extract",))
    complete(later, "render", {"uri": "s3://reports/2026-03.pdf", "pages": 3}, now=T0 + DAY)
    late = monthly_run(("extract", "render"))
    return instance(later, "approve").id, instance(late, "approve").id


async def open_inbox(pilot, show: str) -> InboxScreen:
    """The inbox with the two approvals read for `show`: until that read is shown, the rows and the
    summary are the first read's (all)."""
    app = pilot.app
    await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
    await pilot.press("i")
    await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.is_mounted)  # its Selects too
    inbox = app.screen
    inbox.query_one("#inbox-show", Select).value = show
    named = f"(team reports, {dict((v, k) for k, v in SHOWS)[show]})"
    await wait_until(pilot, lambda: named in text_of(inbox.query_one("#inbox-summary", Static)) and len(inbox.rows) == 2)
    return inbox


async def test_the_overdue_task_comes_first_is_taken_and_decided_with_a_comment(tui_db):
    later, late = two_approvals()
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE) as pilot:
            inbox = await open_inbox(pilot, "groups")
            assert [(i.instance.id, i.overdue) for i in inbox.rows] == [(late, True), (later, False)]
            table = inbox.query_one("#inbox-table")
            assert [str(table.get_row_at(r)[4]) for r in (0, 1)] == ["overdue by 1h", "due in 23h"]
            assert "2 human task(s) waiting (team reports, my groups), 1 overdue" in text_of(inbox.query_one("#inbox-summary", Static))
            await pilot.press("t")  # the cursor is on the overdue one
            await wait_until(pilot, lambda: inbox.rows and inbox.rows[0].instance.taken_by == REVIEWER)
            assert str(table.get_row_at(0)[5]) == REVIEWER
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
            form = app.screen
            info = text_of(form.query_one("#human-info", Static))
            assert "taken by you" in info and "who may decide: @reviewers (demo-operator, reports-ops)" in info
            assert "overdue by 1h" in info
            form.query_one("#field-approved", Select).value = True
            form.query_one("#field-reviewer", Input).value = "kim"
            form.query_one("#human-comment", Input).value = "late, but the figures match"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and len(app.screen.rows) == 1)
    [attempt] = Attempt.select().where(Attempt.instance == late)
    assert (attempt.status, attempt.worker, attempt.comment) == ("succeeded", REVIEWER, "late, but the figures match")
    assert [e.actor for e in Event.select().where((Event.instance == late) & Event.kind.in_(["take", "submit"]))] \
        == [REVIEWER, REVIEWER]
    assert store.get_instance(later).state == "available"


async def test_someone_not_assigned_is_refused_in_the_form_naming_who_may(tui_db):
    later, late = two_approvals()
    app = Dashboard(OPERATOR, database_url=tui_db)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE) as pilot:
            await open_inbox(pilot, "all")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
            form = app.screen
            assert "not taken (ctrl+t takes it)" in text_of(form.query_one("#human-info", Static))
            form.query_one("#field-approved", Select).value = True
            form.query_one("#field-reviewer", Input).value = "ann"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: "may not decide" in text_of(form.query_one("#human-refusal", Static)))
            assert f"{OPERATOR} may not decide it; who may: @reviewers (demo-operator, reports-ops)" \
                in text_of(form.query_one("#human-refusal", Static))
    assert store.get_instance(late).state == "available"


async def test_due_and_overdue_are_measured_by_the_stores_clock_not_the_dashboards(tui_db):
    """Through the broker the bridge reads the inbox at its time; the dashboard, its clock two hours
    behind, says "overdue by" from the bridge's time too, so the words agree with the overdue mark."""
    from flow45.client.local import LocalClient
    from flow45.store.inbox import human_inbox

    class BridgeAhead(LocalClient):
        def human_inbox(self, team=None, limit=500, *, show="all"):
            return human_inbox(team, self.actor, show, limit=limit, now=NOW)

    later, late = two_approvals()
    app = Dashboard(REVIEWER, client=BridgeAhead(REVIEWER))
    with time_machine.travel((NOW - dt.timedelta(hours=2)).replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE) as pilot:
            inbox = await open_inbox(pilot, "all")
            assert [(i.instance.id, i.overdue, i.checked_at) for i in inbox.rows] == [(late, True, NOW), (later, False, NOW)]
            table = inbox.query_one("#inbox-table")
            assert [str(table.get_row_at(r)[4]) for r in (0, 1)] == ["overdue by 1h", "due in 23h"]


async def test_a_reviewer_gives_a_task_to_another_and_the_inbox_shows_who_has_it(tui_db):
    later, late = two_approvals()
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE) as pilot:
            inbox = await open_inbox(pilot, "groups")
            await pilot.press("g")  # on the overdue one
            await wait_until(pilot, lambda: isinstance(app.screen, GiveModal))
            modal = app.screen
            assert modal.title_text == f"Give instance {late} (approve of run {store.get_instance(late).run})"
            modal.query_one("#give-to", Input).value = "eve"  # not among @reviewers
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: "eve may not decide it" in text_of(modal.query_one("#refusal", Static)))
            modal.query_one("#give-to", Input).value = "demo-operator"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen)
                             and inbox.rows[0].instance.taken_by == "demo-operator")
            assert str(inbox.query_one("#inbox-table").get_row_at(0)[5]) == "demo-operator"
    [given] = Event.select().where((Event.instance == late) & (Event.kind == "take"))
    assert (given.actor, given.detail["taken_by"]) == (REVIEWER, "demo-operator")


async def test_available_since_is_when_the_task_became_available_not_when_it_was_last_taken(tui_db):
    later, late = two_approvals()
    store.take(late, actor=REVIEWER, now=NOW - dt.timedelta(minutes=5))
    store.hand_back(late, actor=REVIEWER, now=NOW - dt.timedelta(minutes=4))
    store.take(later, actor="demo-operator", now=NOW - dt.timedelta(minutes=3))
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE) as pilot:
            inbox = await open_inbox(pilot, "all")
            table = inbox.query_one("#inbox-table")
            assert [str(table.get_row_at(r)[7]) for r in (0, 1)] == ["2026-03-01 12:00:00", "2026-03-02 12:00:00"]


async def test_the_form_says_the_task_is_escalated_once_the_store_escalated_it_not_when_its_due_passes(tui_db):
    """The example's approval escalates to @leads when overdue: lee may decide only once the sweep
    applied that, as the core checks it, however late the dashboard's clock says it is."""
    from flow45.store.sweep import human_alarms

    later, late = two_approvals()
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE) as pilot:
            await open_inbox(pilot, "all")
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
            info = app.screen.query_one("#human-info", Static)
            assert "who may decide: @reviewers (demo-operator, reports-ops)   overdue by 1h" in text_of(info)
            assert human_alarms(NOW)[1] == [late]  # went overdue: escalated
            await wait_until(pilot, lambda: "@leads (lee)" in text_of(info))
            assert "who may decide: @reviewers (demo-operator, reports-ops), @leads (lee)" in text_of(info)


async def test_due_and_overdue_go_on_counting_while_nothing_happens(tui_db, monkeypatch):
    """No event, no read: the inbox and the form still say how late each task is now, not how late it
    was when read."""
    from tui.screens import base

    monkeypatch.setattr(base, "RECOUNT_EVERY", 0.1)
    later, late = two_approvals()
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False) as traveller:
        async with app.run_test(size=SIZE) as pilot:
            inbox = await open_inbox(pilot, "all")
            table = inbox.query_one("#inbox-table")

            def due_cells() -> list[str]:
                return [str(table.get_row_at(r)[4]) for r in (0, 1)]

            assert due_cells() == ["overdue by 1h", "due in 23h"]
            traveller.shift(dt.timedelta(hours=23, minutes=30))
            await wait_until(pilot, lambda: due_cells() == ["overdue by 1d", "overdue by 30m"])
            assert "2 human task(s) waiting (team reports, all), 2 overdue" in text_of(inbox.query_one("#inbox-summary", Static))
            assert [i.instance.id for i in inbox.rows] == [late, later]
            await pilot.press("enter")
            await wait_until(pilot, lambda: isinstance(app.screen, HumanTaskScreen) and app.screen.payload)
            info = app.screen.query_one("#human-info", Static)
            assert text_of(info).endswith("overdue by 1d")
            traveller.shift(dt.timedelta(hours=2))
            await wait_until(pilot, lambda: text_of(info).endswith("overdue by 1d 2h"))


async def test_taking_over_a_task_its_holder_let_go_meanwhile_says_it_was_simply_taken(tui_db):
    later, late = two_approvals()
    store.take(late, actor="demo-operator", now=NOW)
    app = Dashboard(REVIEWER, database_url=tui_db)
    said = notices(app)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE, notifications=True) as pilot:
            await open_inbox(pilot, "all")
            await pilot.press("t")  # on the overdue one, which demo-operator has
            await wait_until(pilot, lambda: isinstance(app.screen, TakeOverModal))
            store.hand_back(late, actor="demo-operator", now=NOW)
            app.screen.query_one("#reason", Input).value = "I have the figures"
            await pilot.press("ctrl+s")
            await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen))
            [done] = [message for title, message in said if title == "Done"]
            assert done == f"took over instance {late} (approve of run {store.get_instance(late).run})"
    assert store.get_instance(late).taken_by == REVIEWER


async def test_the_runs_screen_goes_on_counting_while_nothing_happens(tui_db, monkeypatch):
    """An open run's "ran" and its human task's "due in" move on with the clock, not only with events."""
    from tui.screens import base

    monkeypatch.setattr(base, "RECOUNT_EVERY", 0.1)
    later, late = two_approvals()
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel((NOW - dt.timedelta(hours=2)).replace(tzinfo=dt.timezone.utc), tick=False) as traveller:
        async with app.run_test(size=(200, 48)) as pilot:  # wide: "waiting for" whole
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            table = app.screen.query_one("#runs-table")

            def newest() -> tuple[str, str]:
                row = table.get_row(str(store.get_instance(late).run))
                return str(row[4]), str(row[6])

            assert newest() == ("approve (for @reviewers, due in 1h)", "1d23h")
            traveller.shift(dt.timedelta(hours=3))
            await wait_until(pilot, lambda: newest() == ("approve (for @reviewers, overdue by 2h)", "2d02h"))


async def test_the_run_screen_goes_on_counting_while_nothing_happens(tui_db, monkeypatch):
    from tui.screens import base
    from tui.screens.run import RunScreen

    monkeypatch.setattr(base, "RECOUNT_EVERY", 0.1)
    later, late = two_approvals()
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel((NOW - dt.timedelta(hours=2)).replace(tzinfo=dt.timezone.utc), tick=False) as traveller:
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen) and app.screen.loaded)
            await pilot.press("enter")  # the newest run: its approval is due in 1h
            await wait_until(pilot, lambda: isinstance(app.screen, RunScreen) and app.screen.run is not None)
            info = app.screen.query_one("#run-info", Static)
            assert "ran 1d23h" in text_of(info) and "waiting for approve (for @reviewers, due in 1h)" in text_of(info)
            traveller.shift(dt.timedelta(hours=3))
            await wait_until(pilot, lambda: "ran 2d02h" in text_of(info))
            assert "waiting for approve (for @reviewers, overdue by 2h)" in text_of(info)


async def test_an_inbox_longer_than_it_shows_does_not_say_that_is_all(tui_db, monkeypatch):
    from tui.screens import inbox as inbox_module

    monkeypatch.setattr(inbox_module, "SHOWN", 1)
    later, late = two_approvals()
    app = Dashboard(REVIEWER, database_url=tui_db)
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        async with app.run_test(size=SIZE) as pilot:
            await wait_until(pilot, lambda: isinstance(app.screen, RunsScreen))
            await pilot.press("i")
            await wait_until(pilot, lambda: isinstance(app.screen, InboxScreen) and app.screen.rows)
            assert [i.instance.id for i in app.screen.rows] == [late]
            assert "the first 1 human task(s) waiting, more may wait (team reports, all), 1 overdue" \
                in text_of(app.screen.query_one("#inbox-summary", Static))


async def test_while_a_new_filters_read_is_under_way_the_summary_names_the_filter_of_the_rows_shown(tui_db, monkeypatch):
    """A recount redraws the rows shown before the new filter's read comes: the summary goes on naming
    the filter they were read for, not the one chosen since."""
    from flow45.client.local import LocalClient
    from tui.screens import base

    monkeypatch.setattr(base, "RECOUNT_EVERY", 0.1)
    groups_read = threading.Event()

    class SlowGroups(LocalClient):
        def human_inbox(self, team=None, limit=500, *, show="all"):
            if show == "groups":
                assert groups_read.wait(30), "the test never let the read through"
            return super().human_inbox(team, limit, show=show)

    draws = []
    drawn = InboxScreen._draw
    monkeypatch.setattr(InboxScreen, "_draw", lambda screen: (draws.append(screen.show_filter), drawn(screen))[1])
    two_approvals()
    app = Dashboard(REVIEWER, client=SlowGroups(REVIEWER))
    with time_machine.travel(NOW.replace(tzinfo=dt.timezone.utc), tick=False):
        try:
            async with app.run_test(size=SIZE) as pilot:
                inbox = await open_inbox(pilot, "all")
                summary = inbox.query_one("#inbox-summary", Static)
                inbox.query_one("#inbox-show", Select).value = "groups"
                await wait_until(pilot, lambda: draws.count("groups") >= 2)  # recounts since the choice
                assert "2 human task(s) waiting (team reports, all), 1 overdue" in text_of(summary)
                groups_read.set()
                await wait_until(pilot, lambda: "(team reports, my groups)" in text_of(summary))
                assert "2 human task(s) waiting (team reports, my groups), 1 overdue" in text_of(summary)
        finally:
            groups_read.set()
