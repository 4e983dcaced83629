"""The local client with a team filter behaves as that team's operator: one team's rows, and another
team's ids answered as missing ones are."""

from __future__ import annotations

import pytest

from flow45.client import LocalClient, RunFilter
from flow45.db import connect
from flow45.errors import NotFound
from flow45.migrate import ensure_schema
from tests.client.two_teams import deploy_two_teams

MISSING = 999_999


@pytest.fixture
def two_teams(tmp_path):
    db = connect(f"sqlite:///{tmp_path / 'flow45.db'}", create=True)
    ensure_schema()
    yield deploy_two_teams(tmp_path)
    db.close()


def refusal(call) -> str:
    with pytest.raises(NotFound) as caught:
        call()
    return caught.value.message


def test_a_team_filter_shows_one_team(two_teams):
    ours, theirs = two_teams["reports"], two_teams["rival"]
    client = LocalClient("admin", team="reports")
    assert {w.team for w in client.workflows()} == {"reports"} and len(client.workflows()) == 2
    assert client.workflows("rival") == []
    assert [r.id for r in client.runs()] == [ours.run]
    assert client.runs(RunFilter(team="rival")) == [] and client.runs(RunFilter(text="rival")) == []
    assert client.status_counts() == {"running": 1}
    assert {e.team for e in client.events(limit=1000)} == {"reports"}
    assert client.events(run=theirs.run) == [] and client.events(team="rival") == []
    assert [t.instance.id for t in client.human_inbox()] == [ours.approve]
    assert client.latest_event_id() < max(e.id for e in LocalClient("admin").events(limit=1000))

    everyone = LocalClient("admin")  # no filter: the administrator sees both teams
    assert [r.id for r in everyone.runs()] == [theirs.run, ours.run]
    # named runs (a live list's touched rows) in one read: newest first, under the filter
    assert everyone.runs(ids=[ours.run, theirs.run]) == everyone.runs()
    assert [r.id for r in everyone.runs(RunFilter(text="rival"), ids=[ours.run, theirs.run])] == [theirs.run]
    assert everyone.runs(RunFilter(status="succeeded"), ids=[ours.run]) == []
    assert {t.instance.team for t in everyone.human_inbox()} == {"reports", "rival"}


def test_another_teams_ids_are_answered_as_missing_ones(two_teams):
    theirs = two_teams["rival"]
    client = LocalClient("admin", team="reports")
    for read in (client.run, client.run_spec):
        assert refusal(lambda: read(theirs.run)) == refusal(lambda: read(MISSING)).replace(str(MISSING), str(theirs.run))
    assert client.run_row(theirs.run) is None
    assert client.runs(ids=[theirs.run, MISSING]) == [] and client.runs(RunFilter(text="monthly"), ids=[theirs.run]) == []
    assert refusal(lambda: client.instance(theirs.approve)) == f"task instance {theirs.approve} not found for team reports"
    assert refusal(lambda: client.instance(MISSING)) == f"task instance {MISSING} not found for team reports"
    assert refusal(lambda: client.run(theirs.run)) == f"run {theirs.run} not found for team reports"
    for act in (lambda i: client.skip(i, "no"), client.retry, client.hold, client.release,
                lambda i: client.undo(i, "no"), lambda i: client.submit(i, {"approved": True, "reviewer": "x"})):
        assert refusal(lambda: act(theirs.approve)) == f"task instance {theirs.approve} not found for team reports"
    assert refusal(lambda: client.cancel(theirs.run)) == f"run {theirs.run} not found for team reports"
    # as a workflow that was never deployed is
    assert refusal(lambda: client.trigger("rival", "monthly_report")) == "workflow rival/monthly_report is not deployed"
    assert refusal(lambda: client.trigger("reports", "nosuch")) == "workflow reports/nosuch is not deployed"
    # nothing of theirs changed
    assert LocalClient("admin").instance(theirs.approve).state == "available"
    assert LocalClient("admin").run(theirs.run).status == "running"


def test_a_page_of_runs_with_their_chosen_instances_is_what_reading_each_run_whole_gives(two_teams):
    """`run_instances` reads a page of runs in one go; the same as each run read whole (`Client`'s own
    way), the run's order kept, and another team's runs not among them (SQLite here; PostgreSQL in
    tests/bridge/test_remote_bulk.py)."""
    from flow45 import store
    from flow45.client import Client

    ours, theirs = two_teams["reports"], two_teams["rival"]
    store.cancel_run(ours.run, actor="admin")
    client = LocalClient("admin", team="reports")
    for task, state in ((None, None), ("extract", None), (None, "succeeded"), ("render", "succeeded"), ("x", None)):
        assert client.run_instances(task=task, state=state) == Client.run_instances(client, task=task, state=state)
    [run] = client.run_instances(ids=[ours.run, theirs.run])
    assert (run.id, run.status) == (ours.run, "cancelled")
    assert [i.task for i in run.instances] == ["extract", "render", "approve", "publish"]
    assert client.run_instances(RunFilter(team="rival")) == []
