"""The lifecycle of runs and task instances, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import IllegalTransition, InvalidOutput, InvalidParams, NotFound, StaleToken, TooLong
from flow45.models import Attempt, Event, Outbox, TaskInstance
from tests.store.helpers import BLOB, DIAMOND, T0, claim, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")


def test_fan_out_and_fan_in_complete_the_run(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    assert states(run) == {"a": "available", "b": "pending", "c": "pending", "d": "pending"}
    complete(run, "a", BLOB)
    assert states(run)["b"] == states(run)["c"] == "available"
    complete(run, "b", {"uri": "b", "size": 2})
    assert states(run)["d"] == "pending", "d waits for both upstreams"
    complete(run, "c", {"uri": "c", "size": 3})
    grant = claim(run, "d")
    assert grant.inputs == {"left": {"uri": "b", "size": 2}, "right": {"uri": "c", "size": 3}}
    store.submit(grant.instance, grant.token, BLOB)
    view = store.get_run(run)
    assert view.status == "succeeded" and view.finished_at is not None


def test_redeploying_unchanged_config_creates_no_version(tmp_path):
    first = deploy_text(tmp_path, DIAMOND)
    again = deploy_text(tmp_path, DIAMOND)
    assert [w.change for w in first.workflows] == ["created"]
    assert [(w.change, w.version) for w in again.workflows] == [("unchanged", 1)]
    changed = deploy_text(tmp_path, DIAMOND.replace("retries: 1", "retries: 2"))
    assert [(w.change, w.version) for w in changed.workflows] == [("updated", 2)]


def test_runs_keep_the_version_they_started_with(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    deploy_text(tmp_path, DIAMOND.replace("retries: 1", "retries: 5"))
    assert store.get_run(run).version == 1


def test_offer_is_written_with_the_instance_becoming_available(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = instance(run, "a")
    offer = Outbox.get(Outbox.instance == a.id)
    assert offer.routing_key == "acme.fa" and offer.body["token"] == a.token and offer.body["attempt"] == 1


def test_exactly_one_claim_of_an_offer_wins(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = instance(run, "a")
    store.claim(a.id, a.token, "first", now=T0)
    with pytest.raises(StaleToken, match="running by first"):
        store.claim(a.id, a.token, "second", now=T0)


def test_stale_token_changes_nothing(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    events_before = Event.select().count()
    with pytest.raises(StaleToken):
        store.submit(grant.instance, "not-the-token", BLOB, now=T0)
    assert states(run)["a"] == "running" and Event.select().count() == events_before


def test_output_is_validated_capped_and_refused_when_secret(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    with pytest.raises(InvalidOutput, match="output.size: Input should be greater than or equal to 0"):
        store.submit(grant.instance, grant.token, {"uri": "x", "size": -1}, now=T0)
    with pytest.raises(InvalidOutput, match="output.extra: unknown field"):
        store.submit(grant.instance, grant.token, {**BLOB, "extra": 1}, now=T0)
    with pytest.raises(InvalidOutput, match="over the cap of 16384"):
        store.submit(grant.instance, grant.token, {"uri": "x" * 20000, "size": 1}, now=T0)
    with pytest.raises(InvalidOutput, match="private key"):
        store.submit(grant.instance, grant.token, {"uri": "-----BEGIN RSA PRIVATE KEY-----", "size": 1}, now=T0)
    assert states(run)["a"] == "running", "a refused submit leaves the attempt running"


def test_duplicate_message_takes_effect_once(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    first = store.submit(grant.instance, grant.token, BLOB, now=T0, message_id="m-1", team="acme")
    again = store.submit(grant.instance, grant.token, BLOB, now=T0, message_id="m-1", team="acme")
    assert not first.duplicate and again.duplicate and again.state == "succeeded"
    assert Event.select().where((Event.kind == "submit")).count() == 1


def test_another_teams_instance_is_not_found(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = instance(run, "a")
    with pytest.raises(NotFound, match="not found for team rival"):
        store.claim(a.id, a.token, "w", team="rival", now=T0)


def test_fail_retries_after_delay_then_fails_the_run(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    store.fail(grant.instance, grant.token, "boom", now=T0)
    a = instance(run, "a")
    assert a.state == "retry_wait" and a.not_before == T0 + dt.timedelta(seconds=10)
    assert store.release_due_retries(now=T0 + dt.timedelta(seconds=9)) == []
    assert store.release_due_retries(now=T0 + dt.timedelta(seconds=10)) == [a.id]
    grant = claim(run, "a")
    assert grant.attempt == 2
    store.fail(grant.instance, grant.token, "boom again", now=T0)
    assert states(run)["a"] == "failed" and store.get_run(run).status == "failed"
    store.retry_instance(grant.instance, actor="op", now=T0)
    assert states(run)["a"] == "available" and store.get_run(run).status == "running"


def test_non_retryable_failure_fails_at_once(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    store.fail(grant.instance, grant.token, "bad input", retryable=False, now=T0)
    assert states(run)["a"] == "failed"


def test_lease_expiry_counts_as_a_failed_attempt(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    renewed = store.progress(grant.instance, grant.token, 40, "reading", now=T0 + dt.timedelta(seconds=200))
    assert store.expire_leases(now=T0 + dt.timedelta(seconds=301)) == []
    assert store.expire_leases(now=renewed.lease_expires_at + dt.timedelta(seconds=1)) == [grant.instance]
    assert states(run)["a"] == "retry_wait"
    with pytest.raises(StaleToken):
        store.submit(grant.instance, grant.token, BLOB, now=T0)
    assert Attempt.get(Attempt.token == grant.token).status == "expired"


def test_skip_passes_null_downstream(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    complete(run, "a", BLOB)
    grant = claim(run, "b")
    store.skip(grant.instance, grant.token, "nothing to do", now=T0)
    with pytest.raises(IllegalTransition, match="skip needs a reason"):
        store.skip_instance(instance(run, "c").id, " ", actor="op", now=T0)
    assert instance(run, "c").state == "available"
    store.skip_instance(instance(run, "c").id, "not needed", actor="op", now=T0)
    assert claim(run, "d").inputs == {"left": None, "right": None}


def test_an_operators_reason_is_kept_stripped_and_one_over_2000_characters_is_refused_as_through_the_bridge(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    longest = "  " + "why " * 499  # 1,998 characters
    store.hold(instance(run, "a").id, actor="op", reason=longest, now=T0)
    store.skip_instance(instance(run, "a").id, longest, actor="op", now=T0)
    kept = [(e.kind, e.detail["reason"]) for e in Event.select().where(Event.run == run).order_by(Event.id)
            if e.detail and "reason" in e.detail]
    assert kept == [("hold", longest.strip()), ("skip", longest.strip())]

    before = Event.select().count()
    too_long = longest + "and so on"
    refusals = [lambda: store.undo(instance(run, "a").id, too_long, actor="op", now=T0),
                lambda: store.cancel_run(run, actor="op", reason=too_long, now=T0),
                lambda: store.set_output(instance(run, "b").id, BLOB, reason=too_long, actor="op", now=T0)]
    for refused in refusals:
        with pytest.raises(TooLong, match="^the reason is 2,007 characters, over the 2,000 kept: shorten it"):
            refused()
    assert Event.select().count() == before and store.get_run(run).status == "running"


def test_hold_and_release(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = instance(run, "a")
    store.hold(a.id, actor="op", now=T0)
    with pytest.raises(StaleToken):
        store.claim(a.id, a.token, "w", now=T0)
    assert store.get_run(run).waiting_for == "1 held instance(s)"
    store.release(a.id, actor="op", now=T0)
    assert instance(run, "a").state == "available" and instance(run, "a").attempt == 2


def test_max_active_runs_queues_and_starts_the_next(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    first = store.trigger("acme", "diamond", actor="ann", now=T0)
    second = store.trigger("acme", "diamond", actor="ann", now=T0)
    assert store.get_run(second).status == "queued"
    assert "max_active_runs: 1" in store.get_run(second).waiting_for
    store.cancel_run(first, actor="op", reason="wrong month", now=T0)
    assert store.get_run(first).status == "cancelled"
    assert store.get_run(second).status == "running" and states(second)["a"] == "available"


def test_a_deploy_that_raises_max_active_runs_starts_the_queued_runs_before_any_new_one(tmp_path):
    deploy_text(tmp_path, DIAMOND)  # max_active_runs: 1
    runs = [store.trigger("acme", "diamond", actor="cron", now=T0) for _ in range(4)]
    raised = deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 3"), actor="ann")
    assert [(w.change, w.version, w.started_runs) for w in raised.workflows] == [("updated", 2, 2)]
    assert [store.get_run(r).status for r in runs] == ["running", "running", "running", "queued"]
    assert {store.get_run(r).version for r in runs} == {1}  # each keeps its tasks; the limit is the current one's
    assert store.get_run(runs[3]).waiting_for == "a free slot (max_active_runs: 3)"
    late = store.trigger("acme", "diamond", actor="cron", now=T0)
    assert store.get_run(late).status == "queued"  # behind the one queued before it
    store.cancel_run(runs[0], actor="op", now=T0)
    assert [store.get_run(r).status for r in (runs[3], late)] == ["running", "queued"]


def test_a_deploy_that_lowers_max_active_runs_holds_the_queued_runs_to_it(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 2"))
    runs = [store.trigger("acme", "diamond", actor="cron", now=T0) for _ in range(3)]
    deploy_text(tmp_path, DIAMOND)  # back to 1: the first two still run, the third waits for both
    store.cancel_run(runs[0], actor="op", now=T0)
    assert [store.get_run(r).status for r in runs] == ["cancelled", "running", "queued"]
    store.cancel_run(runs[1], actor="op", now=T0)
    assert store.get_run(runs[2]).status == "running"


def test_cancel_revokes_running_attempts(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    store.cancel_run(run, actor="op", reason=" ", now=T0)
    assert Event.get(Event.run == run, Event.instance.is_null(), Event.kind == "cancel").detail == {"reason": None}, \
        "a blank reason is none"
    with pytest.raises(StaleToken):
        store.submit(grant.instance, grant.token, BLOB, now=T0)
    assert set(states(run).values()) == {"cancelled"}
    with pytest.raises(IllegalTransition):
        store.cancel_run(run, actor="op", now=T0)


def test_params_are_validated(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    with pytest.raises(InvalidParams, match="declares no params"):
        store.trigger("acme", "diamond", {"month": "x"}, actor="ann", now=T0)
    with pytest.raises(NotFound, match="acme/nope is not deployed"):
        store.trigger("acme", "nope", actor="ann", now=T0)


NOTED = """
    team: acme
    types:
      Doc: {fields: {uri: string}}
      Note: {fields: {note: string}}
    workflows:
      noted:
        params: Note
        tasks:
          a: {function: fa, output: Doc}
"""


@pytest.mark.parametrize("note, refused", [
    ("x" * 16_000, None),
    ("x" * 16_400, "params for acme/noted are 16411 bytes of JSON, over the cap of 16384: params say where the data "
                   "is, never the data itself"),
    ("s3://ann:hunter2@bucket/x", "params for acme/noted: refused, params.note: the value looks like a URL with a "
                                  "password; params never carry secrets"),
])
def test_params_are_small_and_never_secret(tmp_path, note, refused):
    """Every claim of the run carries its params, and the ledger keeps them."""
    deploy_text(tmp_path, NOTED)
    if refused is None:
        run = store.trigger("acme", "noted", {"note": note}, actor="ann", now=T0)
        assert store.get_run(run).params == {"note": note}
        return
    with pytest.raises(InvalidParams) as caught:
        store.trigger("acme", "noted", {"note": note}, actor="ann", now=T0)
    assert caught.value.message == refused
    assert not store.list_runs(team="acme")


def test_human_task_submitted_by_operator(tmp_path):
    deploy_text(tmp_path, """
        team: acme
        types:
          Approval: {fields: {approved: boolean, reviewer: string}}
        workflows:
          review:
            tasks:
              approve: {function: approve, output: Approval, human: true}
    """)
    run = store.trigger("acme", "review", actor="ann", now=T0)
    with pytest.raises(InvalidOutput, match="output.reviewer: Field required"):
        store.submit_human(instance(run, "approve").id, {"approved": True}, actor="bob", now=T0)
    store.submit_human(instance(run, "approve").id, {"approved": True, "reviewer": "bob"}, actor="bob", now=T0)
    assert store.get_run(run).status == "succeeded"
    assert Event.select().where(Event.kind == "submit").get().actor == "bob"


BACKING_OFF = """
    team: acme
    types:
      Blob:
        fields: {uri: string}
    workflows:
      flaky:
        tasks:
          a: {function: fa, output: Blob, retries: 100, retry_delay: 30s, retry_backoff: 2}
"""


def test_a_backoff_that_would_pass_the_calendars_end_waits_a_century_and_the_failure_is_recorded(tmp_path):
    deploy_text(tmp_path, BACKING_OFF)
    run = store.trigger("acme", "flaky", actor="ann", now=T0)
    grant = claim(run, "a")
    TaskInstance.update(failures=59).where(TaskInstance.id == grant.instance).execute()  # 30s * 2**59: no date
    store.fail(grant.instance, grant.token, "boom", now=T0)
    a = instance(run, "a")
    assert a.state == "retry_wait" and a.failures == 60
    assert a.not_before == T0 + dt.timedelta(days=36500)
