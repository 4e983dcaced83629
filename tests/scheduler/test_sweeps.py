"""Leases, retries and lost offers through tick(now), on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import StaleToken
from flow45.models import Event, Outbox, TaskInstance
from flow45.scheduler import tick
from tests.scheduler.helpers import deploy_at

pytestmark = pytest.mark.usefixtures("store_db")

T0 = dt.datetime(2026, 3, 1, 12, 0, 0)


def at(seconds: float) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


WORKFLOW = """
    team: acme
    types:
      Blob: {fields: {uri: string}}
    workflows:
      load:
        tasks:
          a: {function: fa, output: Blob, retries: 2, retry_delay: 10s, retry_backoff: 2, lease: 60s}
          b: {function: fb, output: Blob, inputs: {src: a}}
"""


@pytest.fixture
def run(tmp_path) -> int:
    deploy_at(tmp_path, WORKFLOW, T0)
    return store.trigger("acme", "load", actor="ann", now=T0)


def a_of(run_id: int) -> TaskInstance:
    return TaskInstance.get((TaskInstance.run == run_id) & (TaskInstance.task == "a"))


def claim_a(run_id: int, now: dt.datetime):
    row = a_of(run_id)
    return store.claim(row.id, row.token, "w1", now=now)


def test_lease_expiry_and_retry_backoff_through_tick(run):
    grant = claim_a(run, at(0))
    assert tick(at(60)).expired == [], "the lease holds until its last second"
    report = tick(at(61))
    assert report.expired == [grant.instance] and report.lines() == [f"task instance {grant.instance}: lease expired"]
    a = a_of(run)
    assert (a.state, a.failures, a.not_before) == ("retry_wait", 1, at(71))
    with pytest.raises(StaleToken):
        store.submit(grant.instance, grant.token, {"uri": "late"}, now=at(62))

    assert tick(at(70)).retried == []
    assert tick(at(71)).retried == [grant.instance]
    assert (a_of(run).state, a_of(run).attempt) == ("available", 2)

    second = claim_a(run, at(72))
    store.fail(second.instance, second.token, "boom", now=at(80))
    assert a_of(run).not_before == at(100), "the second retry waits twice as long"
    assert tick(at(99)).retried == []
    assert tick(at(100)).retried == [grant.instance]

    third = claim_a(run, at(101))
    tick(at(101 + 61))
    assert a_of(run).state == "failed", "no retries left"
    assert store.get_run(run).status == "failed"
    assert [e.kind for e in Event.select().where(Event.instance == third.instance).order_by(Event.id)][-1] == "expire"


def test_progress_keeps_the_lease_alive_across_ticks(run):
    grant = claim_a(run, at(0))
    for second in (50, 100, 150):
        store.progress(grant.instance, grant.token, second / 2, now=at(second))
        assert tick(at(second + 30)).expired == []
    assert tick(at(211)).expired == [grant.instance]


def mark_sent(now: dt.datetime) -> None:
    Outbox.update(sent_at=now).where(Outbox.sent_at.is_null()).execute()


def offers_of(instance_id: int) -> list[Outbox]:
    return list(Outbox.select().where((Outbox.instance == instance_id) & (Outbox.kind == "offer")).order_by(Outbox.id))


def test_an_offer_that_may_be_lost_is_sent_again_with_the_same_attempt_and_token(run):
    a = a_of(run)
    mark_sent(at(1))
    assert tick(at(59)).reoffered == []
    report = tick(at(60))
    assert report.reoffered == [a.id] and report.lines() == [f"task instance {a.id}: offer may be lost, sent again"]
    first, again = offers_of(a.id)
    assert (again.body["attempt"], again.body["token"]) == (first.body["attempt"], first.body["token"]) == (1, a.token)
    assert again.sent_at is None and again.routing_key == "acme.fa"
    assert (a_of(run).offered_at, a_of(run).state, a_of(run).updated_at) == (at(60), "available", T0)
    event = Event.select().where(Event.kind == "reoffer").get()
    assert (event.instance, event.actor, event.detail["attempt"]) == (a.id, "flow45-scheduler", 1)
    store.claim(a.id, a.token, "w1", now=at(61))  # either copy of the offer claims the same attempt


def test_reoffers_back_off_while_nobody_claims(run):
    a = a_of(run)
    sent_again = []
    for second in range(0, 2200, 10):
        mark_sent(at(second))
        if tick(at(second)).reoffered:
            sent_again.append(second)
    # the wait doubles from the quiet period (60s) and stops growing at ten of them
    assert sent_again == [60, 120, 240, 480, 960, 1560, 2160]
    assert len(offers_of(a.id)) == 1 + len(sent_again)


def test_an_offer_still_in_the_outbox_is_not_lost(run):
    assert tick(at(600)).reoffered == [], "the relay has not sent it yet: nothing to repeat"
    assert len(offers_of(a_of(run).id)) == 1


def test_claimed_or_held_instances_are_not_offered_again(run):
    mark_sent(at(1))
    claim_a(run, at(1))
    assert tick(at(61)).reoffered == []
    tick(at(62))  # lease expired at 61: retry_wait, not available
    assert a_of(run).state == "retry_wait"
    tick(at(72))
    store.hold(a_of(run).id, actor="op", now=at(73))
    mark_sent(at(73))
    assert tick(at(500)).reoffered == []


def test_human_tasks_are_never_offered_to_workers(store_db, tmp_path):
    import datetime as dt

    from flow45 import store
    from flow45.models import Outbox
    from flow45.store.schedule_runs import reoffer_lost
    from tests.store.helpers import T0, deploy_text, instance

    deploy_text(tmp_path, """
        team: acme
        types:
          Approval: {fields: {approved: boolean}}
        workflows:
          review:
            tasks:
              approve: {function: approve, output: Approval, human: true}
    """)
    run = store.trigger("acme", "review", actor="ann", now=T0)
    assert instance(run, "approve").state == "available"
    assert reoffer_lost(T0 + dt.timedelta(hours=1), quiet=60) == []
    assert Outbox.select().where(Outbox.kind == "offer").count() == 0
