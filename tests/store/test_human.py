"""Human tasks that people own: who may decide, taking and handing back, the comment kept, reminders
and every overdue outcome, each applied once by the scheduler's sweep at its moment; on SQLite and
PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import ConfigError, NotAllowed
from flow45.models import Attempt, Event
from flow45.scheduler import tick
from flow45.settings import Settings, current_settings, use_settings
from flow45.store.inbox import human_inbox
from flow45.store.rules_human import relative_due
from tests.store.helpers import T0, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

MICRO = dt.timedelta(microseconds=1)
OK = {"ok": True}


def config(overdue: str | None = "{escalate: ['@managers']}", assignees: str = "[ann, '@finance']") -> str:
    assignment = f"assignees: {assignees}, due: 2h, reminders: [30m, 1h]" + (f", overdue: {overdue}" if overdue else "")
    return f"""
    team: acme
    groups:
      finance: [bob, carol]
      managers: [dave]
    types:
      Ok:
        fields: {{ok: boolean, by: {{type: string, optional: true}}}}
    workflows:
      approval:
        tasks:
          prepare: {{function: prep, output: Ok}}
          approve: {{function: approve, output: Ok, human: true, inputs: {{doc: prepare}}, {assignment}}}
          publish: {{function: pub, output: Ok, inputs: {{approval: approve}}}}
    """


def ready_run(tmp_path, text: str) -> tuple[int, int]:
    """A run whose approval became available at T0: (run, approve's instance id)."""
    deploy_text(tmp_path, text)
    run = store.trigger("acme", "approval", actor="ann", now=T0)
    complete(run, "prepare", OK, now=T0)
    return run, instance(run, "approve").id


def events(instance_id: int, kind: str) -> list[Event]:
    return list(Event.select().where((Event.instance == instance_id) & (Event.kind == kind)).order_by(Event.id))


def test_only_who_may_decide_can_submit_and_the_comment_is_kept(tmp_path):
    run, approve = ready_run(tmp_path, config())
    with pytest.raises(NotAllowed, match=r"eve may not decide it; who may: ann, @finance \(bob, carol\)"):
        store.submit_human(approve, OK, actor="eve", now=T0)
    assert states(run)["approve"] == "available"
    store.submit_human(approve, {"ok": True, "by": "bob"}, actor="bob", comment="  figures match the ledger ", now=T0)
    [attempt] = Attempt.select().where(Attempt.instance == approve)
    assert (attempt.status, attempt.worker, attempt.comment) == ("succeeded", "bob", "figures match the ledger")
    assert events(approve, "submit")[0].actor == "bob"
    assert states(run)["publish"] == "available"


def test_someone_a_deploy_takes_out_of_a_group_may_no_longer_decide_an_earlier_runs_task(tmp_path):
    run, approve = ready_run(tmp_path, config())
    deploy_text(tmp_path, config().replace("finance: [bob, carol]", "finance: [carol, erin]"))  # bob has left
    assert store.get_run(run).version == 1
    with pytest.raises(NotAllowed, match=r"bob may not decide it; who may: ann, @finance \(carol, erin\)"):
        store.submit_human(approve, OK, actor="bob", now=T0)
    with pytest.raises(NotAllowed, match="bob may not decide it"):
        store.take(approve, actor="bob", now=T0)
    assert [item.instance.id for item in human_inbox("acme", "bob", "groups", now=T0)] == []
    assert [item.who for item in human_inbox("acme", "erin", "groups", now=T0)] == ["ann, @finance (carol, erin)"]
    store.submit_human(approve, OK, actor="erin", now=T0)  # who joined decides the earlier run's task
    assert states(run)["approve"] == "succeeded"


def test_human_true_alone_lets_any_operator_decide(tmp_path):
    text = config(overdue=None).replace("assignees: [ann, '@finance'], ", "")
    run, approve = ready_run(tmp_path, text)
    store.submit_human(approve, OK, actor="whoever", now=T0)
    assert states(run)["approve"] == "succeeded"


def test_taking_shows_the_holder_and_taking_over_needs_a_reason(tmp_path):
    run, approve = ready_run(tmp_path, config())
    assert store.get_run(run).waiting_for == "approve (for ann, @finance, due by 2026-03-01 14:00Z)"
    assert store.take(approve, actor="ann", now=T0) is None
    assert instance(run, "approve").taken_by == "ann"
    shown = store.list_runs()[0].waiting_for
    assert shown == "approve (ann, due by 2026-03-01 14:00Z)", "the store says when, whatever its clock"
    assert relative_due(shown, T0) == "approve (ann, due in 2h)"
    assert relative_due(shown, T0 + dt.timedelta(hours=2, minutes=1)) == "approve (ann, overdue by 1m)"
    with pytest.raises(NotAllowed, match="is taken by ann; take it over with a reason"):
        store.submit_human(approve, OK, actor="bob", now=T0)
    with pytest.raises(NotAllowed, match="is taken by ann; take it over with a reason"):
        store.take(approve, actor="bob", reason="  ", now=T0)
    with pytest.raises(NotAllowed, match="eve may not decide it"):
        store.take(approve, actor="eve", reason="I am on call", now=T0)
    assert store.take(approve, actor="bob", reason="ann is on leave", now=T0) == "ann"
    [first, over] = events(approve, "take")
    assert (first.actor, first.detail["from"]) == ("ann", None)
    assert (over.actor, over.detail) == ("bob", {"taken_by": "bob", "from": "ann", "reason": "ann is on leave"})
    assert (over.from_state, over.to_state) == (None, None), "taking moves nothing"
    with pytest.raises(NotAllowed, match="is taken by bob; only its holder can hand it back"):
        store.hand_back(approve, actor="ann", now=T0)
    store.hand_back(approve, actor="bob", now=T0)
    assert instance(run, "approve").taken_by is None and events(approve, "hand_back")[0].actor == "bob"
    with pytest.raises(NotAllowed, match="is not taken; only its holder can hand it back"):
        store.hand_back(approve, actor="bob", now=T0)
    store.submit_human(approve, OK, actor="carol", comment="ok", now=T0)  # nobody has it: anyone allowed decides
    assert states(run)["approve"] == "succeeded"


def test_a_task_given_to_someone_is_theirs_and_giving_it_over_from_a_third_needs_a_reason(tmp_path):
    from flow45.errors import Flow45Error
    from flow45.notify.events import notify_kinds, text

    run, approve = ready_run(tmp_path, config())
    assert store.take(approve, actor="ann", for_user="bob", now=T0) is None  # ann, who may decide, gives it to bob
    assert instance(run, "approve").taken_by == "bob"
    [given] = events(approve, "take")
    assert (given.actor, given.detail) == ("ann", {"taken_by": "bob", "from": None, "reason": None})
    with pytest.raises(NotAllowed, match="is taken by bob; take it over with a reason"):
        store.submit_human(approve, OK, actor="ann", now=T0)

    with pytest.raises(NotAllowed, match=r"eve may not decide it; who may: ann, @finance \(bob, carol\)"):
        store.take(approve, actor="carol", for_user="eve", reason="eve knows", now=T0)
    with pytest.raises(NotAllowed, match="eve may not decide it"):  # nor give it, when not allowed to decide
        store.take(approve, actor="eve", for_user="carol", reason="carol knows", now=T0)
    with pytest.raises(Flow45Error, match="'bob smith' is not a user name"):
        store.take(approve, actor="ann", for_user="bob smith", now=T0)
    with pytest.raises(NotAllowed, match=r"is taken by bob; take it over with a reason \(flow45 take \d+ --for carol"):
        store.take(approve, actor="ann", for_user="carol", now=T0)
    assert store.take(approve, actor="ann", for_user="carol", reason="bob is away", now=T0) == "bob"
    assert store.take(approve, actor="carol", for_user="bob", now=T0) == "carol"  # the holder passes it on freely
    assert store.take(approve, actor="ann", for_user="bob", now=T0) is None  # bob has it already: nothing changes
    assert [e.detail["taken_by"] for e in events(approve, "take")] == ["bob", "carol", "bob"]

    ledger = [e for e in store.list_events(team="acme") if e.kind == "take"]
    assert [notify_kinds(e) for e in ledger] == [["assigned"]] * 3
    assert text(ledger[1], ["assigned"]) == (f"[acme] task instance {approve} of run {run} was given to carol by ann, "
                                             f"over from bob (event {ledger[1].id})")
    store.submit_human(approve, OK, actor="bob", now=T0)
    assert states(run)["approve"] == "succeeded"


def test_a_task_is_not_given_to_a_workers_broker_user_nor_to_another_teams(tmp_path):
    run, approve = ready_run(tmp_path, config(assignees="[]"))  # any operator may decide
    use_settings(current_settings().model_copy(update={"teams": Settings.model_validate(
        {"teams": {"acme": {"users": {"acme-ops": "operator", "acme-worker": "worker"}},
                   "rival": {"users": {"rival-ops": "operator"}}}}).teams}))
    with pytest.raises(NotAllowed, match="acme-worker is a worker's broker user of team acme, not an operator"):
        store.take(approve, actor="ann", for_user="acme-worker", now=T0)
    # The bridge takes rival-ops's messages for team rival: it could never decide it, only hold it.
    with pytest.raises(NotAllowed, match="rival-ops is a broker user of team rival, not of team acme"):
        store.take(approve, actor="ann", for_user="rival-ops", now=T0)
    assert store.take(approve, actor="ann", for_user="bob", now=T0) is None
    assert instance(run, "approve").taken_by == "bob"


def test_deploy_refuses_an_assignee_who_could_never_decide_naming_where(tmp_path):
    use_settings(current_settings().model_copy(update={"teams": Settings.model_validate(
        {"teams": {"acme": {"users": {"acme-ops": "operator", "acme-worker": "worker"}},
                   "rival": {"users": {"rival-ops": "operator"}}}}).teams}))
    text = config(overdue="{escalate: [acme-worker]}", assignees="[ann, rival-ops]")
    with pytest.raises(ConfigError) as refused:
        deploy_text(tmp_path, text.replace("managers: [dave]", "managers: [dave, rival-ops]"))
    never = "they could never decide its tasks"
    assert sorted(line.split(": ", 1)[1] for line in refused.value.problems) == [
        f"groups.managers.1: rival-ops is a broker user of team rival, not of team acme; {never}",
        f"workflows.approval.tasks.approve.assignees.1: rival-ops is a broker user of team rival, not of team acme; {never}",
        f"workflows.approval.tasks.approve.overdue.to.0: acme-worker is a worker's broker user of team acme, not an "
        f"operator; {never}"]
    assert not store.list_workflows("acme")
    assert deploy_text(tmp_path, config(assignees="[ann, acme-ops]")).workflows[0].change == "created"


def test_reminders_are_sent_once_each_at_their_moment(tmp_path):
    run, approve = ready_run(tmp_path, config(overdue=None))
    assert store.human_alarms(T0 + dt.timedelta(minutes=30) - MICRO) == ([], [])
    assert tick(T0 + dt.timedelta(minutes=30)).reminded == [approve]
    assert store.human_alarms(T0 + dt.timedelta(minutes=59)) == ([], [])
    assert store.human_alarms(T0 + dt.timedelta(hours=1)) == ([approve], [])
    assert store.human_alarms(T0 + dt.timedelta(hours=1, minutes=59)) == ([], [])
    sent = events(approve, "remind")
    assert [(e.detail["reminder"], e.at) for e in sent] == [(1, T0 + dt.timedelta(minutes=30)), (2, T0 + dt.timedelta(hours=1))]
    assert sent[0].detail["to"] == "ann, @finance (bob, carol)" and sent[0].detail["reason"] == "waiting 30m since it became available"
    # Due without an overdue outcome: noted once in the ledger, and the task still waits.
    assert store.human_alarms(T0 + dt.timedelta(hours=2)) == ([], [approve])
    assert store.human_alarms(T0 + dt.timedelta(days=3)) == ([], [])
    [late] = events(approve, "overdue")
    assert late.detail["outcome"] == "none" and states(run)["approve"] == "available"


@pytest.mark.parametrize("outcome", ["escalate", "fail", "skip", "default"])
def test_every_overdue_outcome_is_applied_once_when_due_and_not_a_microsecond_before(tmp_path, outcome):
    written = {"escalate": "{escalate: ['@managers']}", "fail": "fail", "skip": "skip",
               "default": "{default: {ok: false, by: flow45}}"}[outcome]
    run, approve = ready_run(tmp_path, config(written))
    due = T0 + dt.timedelta(hours=2)
    assert instance(run, "approve").due_at == due
    store.take(approve, actor="ann", now=T0)
    store.human_alarms(due - MICRO)  # the two reminders
    assert events(approve, "overdue") == [] and states(run)["approve"] == "available"
    if outcome == "escalate":
        with pytest.raises(NotAllowed, match=r"dave may not decide it; who may: ann, @finance \(bob, carol\)$"):
            store.submit_human(approve, OK, actor="dave", now=due - MICRO)
    report = tick(due)
    assert report.overdue == [approve] and report.reminded == []
    assert store.human_alarms(due + dt.timedelta(hours=5)) == ([], [])
    [event] = events(approve, "overdue")
    assert (event.actor, event.at, event.detail["outcome"]) == ("flow45-scheduler", due, outcome)
    assert event.detail["reason"] == "not decided within 2h (due 2026-03-01T14:00:00Z)"
    assert event.detail["taken_by"] == "ann"
    after = states(run)
    if outcome == "escalate":
        assert after["approve"] == "available" and event.detail["to"] == "ann, @finance (bob, carol), @managers (dave)"
        store.take(approve, actor="dave", reason="escalated to me", now=due)
        store.submit_human(approve, OK, actor="dave", comment="approved after escalation", now=due)
        assert states(run)["publish"] == "available"
    elif outcome == "fail":
        assert after["approve"] == "failed" and store.get_run(run).status == "failed"
        [attempt] = Attempt.select().where(Attempt.instance == approve)
        assert (attempt.status, attempt.worker, attempt.error) == ("failed", "flow45-scheduler", event.detail["reason"])
    elif outcome == "skip":
        assert (after["approve"], after["publish"]) == ("skipped", "available")
        assert store.get_run(run, with_attempts=True).instances[1].attempts == []
    else:
        assert (after["approve"], after["publish"]) == ("succeeded", "available")
        [attempt] = Attempt.select().where(Attempt.instance == approve)
        assert (attempt.status, attempt.worker, attempt.output) == ("succeeded", "flow45-scheduler", {"ok": False, "by": "flow45"})


def test_a_default_output_refused_when_due_leaves_the_task_to_a_person_and_the_sweep_goes_on(tmp_path):
    """The installation lowered `output_max_bytes` below a deployed default: the default cannot be
    applied. The task is marked overdue and waits for a decision, and the sweep goes on to other
    teams' tasks rather than fail on this one at every tick."""
    run, approve = ready_run(tmp_path, config("{default: {ok: false, by: " + "x" * 400 + "}}"))
    deploy_text(tmp_path, config("{default: {ok: false, by: flow45}}").replace("team: acme", "team: rival"))
    theirs = store.trigger("rival", "approval", actor="ann", now=T0)
    complete(theirs, "prepare", OK, now=T0)
    their_approve = instance(theirs, "approve").id
    use_settings(Settings(database_url=current_settings().database_url, output_max_bytes=256))
    due = T0 + dt.timedelta(hours=2)
    report = tick(due)
    # both came due at the same moment: the sweep may take either first
    assert sorted(report.overdue) == sorted([approve, their_approve]) and report.errors == []
    [event] = events(approve, "overdue")
    assert event.detail["outcome"] == "none"
    refused = event.detail["refused"]
    assert refused.startswith("the default output: ") and "over the cap of 256" in refused
    assert states(run)["approve"] == "available" and states(theirs)["approve"] == "succeeded"
    assert tick(due + dt.timedelta(hours=1)).overdue == [], "once"


def test_a_sweep_goes_past_an_instance_it_cannot_change(tmp_path, monkeypatch, caplog):
    """Whatever makes one instance's change fail (here: a bug), the other instances of the sweep move."""
    run, approve = ready_run(tmp_path, config("skip"))
    other, other_approve = ready_run(tmp_path, config("skip"))
    from flow45.store import rules_human

    alarm = rules_human.alarm

    def broken_for_the_first(ch, instance, *args, **kwargs):
        if instance.id == approve:
            raise KeyError("a bug")
        return alarm(ch, instance, *args, **kwargs)

    monkeypatch.setattr(rules_human, "alarm", broken_for_the_first)
    report = tick(T0 + dt.timedelta(hours=2))
    assert report.overdue == [other_approve] and report.errors == []
    assert states(run)["approve"] == "available" and states(other)["approve"] == "skipped"
    assert f"task instance {approve}: changing it failed; left as it was" in caplog.text


def test_undo_arms_a_human_task_again_from_the_time_of_the_undo(tmp_path):
    run, approve = ready_run(tmp_path, config("{default: {ok: false}}"))
    store.take(approve, actor="bob", now=T0)
    tick(T0 + dt.timedelta(hours=2))
    assert states(run)["approve"] == "succeeded"
    later = T0 + dt.timedelta(hours=5)
    store.undo(approve, "decide it yourselves", actor="ann", now=later)
    row = instance(run, "approve")
    assert (row.state, row.taken_by, row.due_at, row.reminders_sent, row.overdue_at) == (
        "available", None, later + dt.timedelta(hours=2), 0, None)
    assert store.human_alarms(later + dt.timedelta(minutes=30)) == ([approve], [])


def test_upgrade_from_before_the_human_step_adds_the_human_task_columns(store_db):
    from playhouse.migrate import SchemaMigrator, migrate

    from flow45.migrate import CURRENT, STEPS, _human_tasks_v4, schema_version, upgrade
    from flow45.models import SchemaVersion

    migrator = SchemaMigrator.from_database(store_db.obj if hasattr(store_db, "obj") else store_db)
    database = migrator.database
    human_step = STEPS.index(_human_tasks_v4) + 1  # the version it makes; later steps may follow
    with database.atomic():
        migrate(migrator.drop_index("task_instance", "task_instance_state_alarm_at"),
                *(migrator.drop_column("task_instance", c) for c in
                  ("taken_by", "due_at", "alarm_at", "reminders_sent", "overdue_at")),
                migrator.drop_column("attempt", "comment"))
        SchemaVersion.delete().where(SchemaVersion.version >= human_step).execute()
    assert schema_version() == human_step - 1
    assert upgrade() == (human_step - 1, CURRENT)
    columns = {c.name for c in database.get_columns("task_instance")}
    assert {"taken_by", "due_at", "alarm_at", "reminders_sent", "overdue_at"} <= columns
    assert "comment" in {c.name for c in database.get_columns("attempt")}
    assert "task_instance_state_alarm_at" in {i.name for i in database.get_indexes("task_instance")}
