"""A message of one team that names another team's task instance, run or callback key is refused
(as not found, in the words a missing id gets) without locking that team's run: a team flooding
messages with another team's ids must not make that team's own commits wait. Each message below is
processed while the owner's commit holds its run's row lock: a message that reached for the lock
would wait for it, and fail after the lock timeout, instead of being refused at once. PostgreSQL
alone: SQLite has one write lock for everything, no row locks."""

from __future__ import annotations

from typing import Callable

import psycopg2
import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic, database
from flow45.errors import NotFound
from flow45.models import TaskInstance
from flow45.store.batch import Item, apply_taking_kept, apply_worker_batch
from flow45.store.run_cache import RunCache
from flow45.store.unit import read_back
from tests.store.helpers import T0, deploy_text, instance


TEAM = """
    team: {team}
    types:
      Blob:
        fields: {{uri: string}}
      Approval:
        fields: {{approved: boolean}}
    workflows:
      chain:
        tasks:
          a: {{function: fa, output: Blob}}
          b: {{function: fb, output: Blob, inputs: {{src: a}}}}
          ok: {{function: ok, output: Approval, human: true, after: [b]}}
"""
LOCK_TIMEOUT = "1s"  # reached only by a message that waits for the owner's lock


def _acme_run_beside_rival(tmp_path):
    """Team acme's run with its first task claimed, and team rival deployed beside it."""
    for team in ("acme", "rival"):
        deploy_text(tmp_path, TEAM.format(team=team))
    run = store.trigger("acme", "chain", actor="ann", now=T0)
    row = instance(run, "a")
    return run, store.claim(row.id, row.token, "acme-worker", now=T0, team="acme")


@pytest.fixture
def owned(pg_store, tmp_path):
    found = _acme_run_beside_rival(tmp_path)
    database.execute_sql(f"SET lock_timeout = '{LOCK_TIMEOUT}'")
    return found


@pytest.fixture
def owner_commit_in_flight(postgres_url):
    """Hold a run's row lock in a session of its own, as the owner's commit in flight holds it."""
    sessions = []

    def hold(run_id: int) -> None:
        session = psycopg2.connect(postgres_url)
        sessions.append(session)
        session.cursor().execute("SELECT id FROM run WHERE id = %s FOR UPDATE", (run_id,))

    yield hold
    for session in sessions:
        session.rollback()
        session.close()


def _refused_at_once(hold: Callable[[int], None], run_id: int, message: Callable[[], object], wording: str) -> None:
    hold(run_id)
    with pytest.raises(NotFound) as refused:
        message()
    assert str(refused.value) == wording


@pytest.mark.integration
def test_a_worker_message_about_another_teams_instance_takes_no_lock_of_its_run(owned, owner_commit_in_flight):
    run, grant = owned
    _refused_at_once(owner_commit_in_flight, run,
                     lambda: store.progress(grant.instance, grant.token, 50, now=T0, team="rival"),
                     f"task instance {grant.instance} not found for team rival")


@pytest.mark.integration
def test_a_batch_with_another_teams_instance_locks_only_its_own_teams_runs(owned, owner_commit_in_flight, tmp_path):
    """The bridge's path: a batch of a few teams' messages, the runs kept from earlier batches."""
    run, grant = owned
    own_run = store.trigger("rival", "chain", actor="rick", now=T0)
    own = instance(own_run, "a")
    kept = RunCache()
    at_first = [Item("acme", "acme-1", m.Progress.model_construct(type="progress", instance=grant.instance,
                                                                  token=grant.token, percent=10.0, message=None))]
    apply_taking_kept(lambda: at_first, T0, kept)  # the bridge keeps acme's run
    assert len(kept) == 1
    owner_commit_in_flight(run)
    hostile = Item("rival", "rival-1", m.Progress.model_construct(type="progress", instance=grant.instance,
                                                                  token=grant.token, percent=90.0, message=None))
    mine = Item("rival", "rival-2", m.Claim.model_construct(type="claim", instance=own.id, token=own.token, worker="rick"))
    for items in ([hostile], [hostile, mine]):
        for item in items:
            item.result = item.error = None
        applied, _, _ = apply_taking_kept(lambda: items, T0, kept, read_back_now=False)
        read_back(kept)
        assert isinstance(hostile.error, NotFound)
        assert str(hostile.error) == f"task instance {grant.instance} not found for team rival"
    assert mine.result.state == "running"
    assert TaskInstance.get_by_id(grant.instance).progress_pct == 10.0


@pytest.mark.integration
@pytest.mark.parametrize("operator", [
    "skip", "retry", "hold", "release", "submit_human", "set_output", "take", "hand_back", "undo", "plan_undo",
])
def test_an_operator_message_about_another_teams_instance_takes_no_lock_of_its_run(owned, owner_commit_in_flight, operator):
    run, grant = owned
    target = instance(run, "ok").id if operator in ("submit_human", "take", "hand_back") else grant.instance
    calls = {
        "skip": lambda: store.skip_instance(target, "mine", actor="rick", now=T0, team="rival"),
        "retry": lambda: store.retry_instance(target, actor="rick", now=T0, team="rival"),
        "hold": lambda: store.hold(target, actor="rick", now=T0, team="rival"),
        "release": lambda: store.release(target, actor="rick", now=T0, team="rival"),
        "submit_human": lambda: store.submit_human(target, {"approved": True}, actor="rick", now=T0, team="rival"),
        "set_output": lambda: store.set_output(target, {"uri": "x"}, reason="mine", actor="rick", now=T0, team="rival"),
        "take": lambda: store.take(target, actor="rick", now=T0, team="rival"),
        "hand_back": lambda: store.hand_back(target, actor="rick", now=T0, team="rival"),
        "undo": lambda: store.undo(target, "mine", actor="rick", now=T0, team="rival"),
        "plan_undo": lambda: store.plan_undo(target, team="rival"),
    }
    _refused_at_once(owner_commit_in_flight, run, calls[operator], f"task instance {target} not found for team rival")


@pytest.mark.integration
@pytest.mark.parametrize("operator", ["note", "cancel"])
def test_an_operator_message_about_another_teams_run_takes_no_lock_of_it(owned, owner_commit_in_flight, operator):
    run, _ = owned
    calls = {
        "note": lambda: store.note_run(run, "mine", actor="rick", now=T0, team="rival"),
        "cancel": lambda: store.cancel_run(run, actor="rick", now=T0, team="rival"),
    }
    _refused_at_once(owner_commit_in_flight, run, calls[operator], f"run {run} not found for team rival")


@pytest.mark.integration
def test_another_teams_callback_key_takes_no_lock_of_its_run(owned, owner_commit_in_flight):
    run, grant = owned
    key = store.park(grant.instance, grant.token, now=T0, team="acme").callback_key
    _refused_at_once(owner_commit_in_flight, run,
                     lambda: store.complete_callback(key, {"uri": "x"}, actor="rick", team="rival", now=T0),
                     "no parked task instance has this callback key for team rival")


@pytest.mark.integration
def test_the_owners_own_message_waits_for_the_lock(owned, owner_commit_in_flight):
    """The same message from the instance's own team waits for the lock: the holder holds it."""
    run, grant = owned
    owner_commit_in_flight(run)
    with pytest.raises(Exception, match="lock timeout"):
        store.progress(grant.instance, grant.token, 50, now=T0, team="acme")


def test_one_batch_of_two_teams_naming_one_instance_applies_the_owners_message_alone(store_db, tmp_path):
    """Each id is matched with the team that named it, whatever else the batch holds (both backends)."""
    run, grant = _acme_run_beside_rival(tmp_path)

    def progress(team: str, percent: float) -> Item:
        return Item(team, f"{team}-{percent}", m.Progress.model_construct(type="progress", instance=grant.instance,
                                                                  token=grant.token, percent=percent, message=None))

    for items in ([progress("rival", 90.0), progress("acme", 10.0)], [progress("acme", 20.0), progress("rival", 90.0)]):
        with atomic():
            apply_worker_batch(items, T0)
        [hostile] = [item for item in items if item.team == "rival"]
        [own] = [item for item in items if item.team == "acme"]
        assert str(hostile.error) == f"task instance {grant.instance} not found for team rival"
        assert own.error is None and own.result.instance == grant.instance
    assert TaskInstance.get_by_id(grant.instance).progress_pct == 20.0
