"""Undo, exactly as DESIGN.md says, on SQLite and on PostgreSQL."""

from __future__ import annotations

import pytest

from flow45 import store
from flow45.errors import IllegalTransition, StaleToken
from flow45.models import Attempt, Event, Outbox
from tests.store.helpers import BLOB, DIAMOND, T0, claim, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")


@pytest.fixture
def finished_run(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    for task in "abcd":
        complete(run, task, {"uri": f"s3://{task}", "size": 1})
    assert store.get_run(run).status == "succeeded"
    return run


def test_dry_run_shows_the_affected_set_and_changes_nothing(finished_run):
    events_before = Event.select().count()
    plan = store.undo(instance(finished_run, "b").id, "wrong", actor="op", dry_run=True)
    assert [(a.task, a.state, a.becomes, a.notify) for a in plan.affected] == [
        ("b", "succeeded", "available", False),
        ("d", "succeeded", "pending", False),
    ]
    assert Event.select().count() == events_before and store.get_run(finished_run).status == "succeeded"


def test_undo_archives_reoffers_and_notifies(finished_run):
    c = instance(finished_run, "c")
    plan = store.undo(c.id, "bad extract", actor="op", now=T0)
    assert states(finished_run) == {"a": "succeeded", "b": "succeeded", "c": "available", "d": "pending"}
    assert store.get_run(finished_run).status == "running"
    archived = Attempt.select().where(Attempt.archived == True)  # noqa: E712
    assert {a.instance_id for a in archived} == {c.id, instance(finished_run, "d").id}
    notice = Outbox.get(Outbox.kind == "undo")
    assert notice.routing_key == "acme.fc.undo" and notice.body["output"] == {"uri": "s3://c", "size": 1}
    event = Event.get_by_id(plan.event)
    assert event.actor == "op" and event.detail["reason"] == "bad extract"
    assert [a["task"] for a in event.detail["affected"]] == ["c", "d"]
    # The superseded output is kept, the new attempt gets a fresh token and offer.
    assert instance(finished_run, "c").attempt == 2
    complete(finished_run, "c", {"uri": "s3://c2", "size": 2})
    assert claim(finished_run, "d").inputs["right"] == {"uri": "s3://c2", "size": 2}


def test_running_downstream_loses_its_token(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    complete(run, "a", BLOB)
    grant = claim(run, "b")
    store.undo(instance(run, "a").id, "redo", actor="op", now=T0)
    with pytest.raises(StaleToken):
        store.submit(grant.instance, grant.token, BLOB, now=T0)
    assert states(run) == {"a": "available", "b": "pending", "c": "pending", "d": "pending"}
    assert Attempt.get(Attempt.token == grant.token).status == "revoked"


def test_undo_with_hold_and_pending_refusal(finished_run, tmp_path):
    store.undo(instance(finished_run, "a").id, "hold it", actor="op", hold=True, now=T0)
    assert states(finished_run)["a"] == "held" and states(finished_run)["b"] == "pending"
    with pytest.raises(IllegalTransition, match="pending: it has not started"):
        store.undo(instance(finished_run, "b").id, "x", actor="op", now=T0)
    with pytest.raises(IllegalTransition, match="needs a reason"):
        store.undo(instance(finished_run, "a").id, " ", actor="op", now=T0)


def test_lineage_names_the_upstream_attempts_and_keeps_the_undone_chain(finished_run):
    d = instance(finished_run, "d").id
    [first] = store.get_instance(d).attempts
    assert [(link.param, link.task, link.attempt, link.undone) for link in first.lineage] == [
        ("left", "b", 1, False), ("right", "c", 1, False)]
    store.undo(instance(finished_run, "c").id, "bad extract", actor="op", now=T0)
    complete(finished_run, "c", {"uri": "s3://c2", "size": 2})
    claim(finished_run, "d")
    old, new = store.get_instance(d).attempts
    # The superseded attempt still says what it was built on, and that this was undone since.
    assert old.archived and [link.text() for link in old.lineage] == ["attempt 1 of b as left",
                                                                      "attempt 1 of c (undone) as right"]
    assert [link.text() for link in new.lineage] == ["attempt 1 of b as left", "attempt 2 of c as right"]
    # Seen from upstream: where each output of c went, the one built on the undone output marked.
    undone, redone = store.get_instance(instance(finished_run, "c").id).attempts
    assert [u.text() for u in undone.used_by] == ["attempt 1 of d (undone)"]
    assert [(u.text(), u.param) for u in redone.used_by] == [("attempt 2 of d", "right")]
    assert {u.instance for u in undone.used_by + redone.used_by} == {d}  # the id a reader follows
    # A task without inputs records none.
    assert store.get_instance(instance(finished_run, "a").id).attempts[0].lineage == []
    run = store.get_run(finished_run, with_attempts=True)
    assert [link.undone for link in run.instances[3].attempts[0].lineage] == [False, True]
