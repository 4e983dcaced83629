"""A task's `max_running`: at most that many of its instances, over all runs of the workflow, offered or
running at once (Airflow's max_active_tis_per_dag, Conductor's concurrentExecLimit). The rest wait as
`queued` and the scheduler's sweep offers them as slots free, the most urgent, then the longest waiting,
first."""

from __future__ import annotations

import datetime as dt

import pytest
from peewee import fn

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.errors import IllegalTransition
from flow45.models import Event, Outbox
from flow45.store import specs
from flow45.store.batch import Item, apply_worker_batch
from flow45.config import load_config
from flow45.scheduler import tick
from flow45.errors import ConfigError
from tests.store.helpers import BLOB, claim, complete, deploy_blob_tasks, deploy_text, instance, states, task_refusal

pytestmark = pytest.mark.usefixtures("store_db")

FIRST_OF_MONTH = dt.datetime(2027, 3, 1, 0, 0)  # a month's calls start together at midnight
CALLS = ["call: {function: call_crm, output: Blob, max_running: 2}",
         "after: {function: tidy, output: Blob, inputs: {src: call}}"]


def _at(minutes: float) -> dt.datetime:
    return FIRST_OF_MONTH + dt.timedelta(minutes=minutes)


def _runs(n: int, minutes: float = 0, **given) -> list[int]:
    return [store.trigger("acme", "calls", actor="cron", now=_at(minutes), **given) for _ in range(n)]


def _call_states(runs: list[int]) -> list[str]:
    return [states(run)["call"] for run in runs]


def _finish(run: int, minutes: float) -> None:
    grant = claim(run, "call", now=_at(minutes))
    store.submit(grant.instance, grant.token, BLOB, now=_at(minutes))


def test_past_its_max_running_a_task_waits_queued_and_is_offered_oldest_first_as_slots_free(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(4)
    assert _call_states(runs) == ["available", "available", "queued", "queued"]
    queued = Event.get((Event.instance == instance(runs[2], "call").id) & (Event.to_state == "queued"))
    assert queued.detail["queued"] == "max_running 2 for call: 2 offered or running"
    assert instance(runs[2], "call").token is None and instance(runs[2], "call").attempt == 0
    assert Outbox.select().count() == 2  # no offer for a queued instance: no worker can claim it

    claim(runs[0], "call", now=_at(1))
    assert store.offer_queued(_at(2)) == []  # offered or running, both take a slot
    _finish(runs[1], 3)  # the submit hands its slot on at once, not at the scheduler's next tick
    assert _call_states(runs) == ["running", "succeeded", "available", "queued"]
    assert states(runs[1])["after"] == "available"  # another task: no limit of its own
    slotted = Event.get((Event.instance == instance(runs[2], "call").id) & (Event.to_state == "available"))
    assert (slotted.kind, slotted.actor, slotted.from_state) == ("slot", "flow45-scheduler", "queued")


def test_a_long_queue_of_one_task_keeps_no_other_tasks_queued_instance_waiting(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    deploy_blob_tasks(tmp_path, "mails", ["send: {function: send_mail, output: Blob, max_running: 1}"])
    _runs(6)  # two offered, four queued ahead of any mail
    mails = [store.trigger("acme", "mails", actor="cron", now=_at(1)) for _ in range(2)]
    claim(mails[0], "send", now=_at(1))
    assert store.expire_leases(_at(60)) == [instance(mails[0], "send").id]  # the sweep hands its slot on
    assert store.offer_queued(_at(60), limit=2) == [instance(mails[1], "send").id]


@pytest.mark.parametrize("change", [
    lambda first: store.cancel_run(first.run_id, actor="ann", now=_at(2)),
    lambda first: store.skip_instance(first.id, "done by hand", actor="ann", now=_at(2)),
    lambda first: store.hold(first.id, actor="ann", reason="CRM down", now=_at(2)),
    lambda first: store.set_output(first.id, BLOB, reason="called by hand", actor="ann", now=_at(2)),
], ids=["cancel", "skip", "hold", "set_output"])
def test_an_operators_change_that_frees_a_slot_hands_it_on_at_once(tmp_path, change):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(3)
    change(instance(runs[0], "call"))
    assert _call_states(runs)[2] == "available"  # not queued until the scheduler's next tick
    slotted = Event.get((Event.instance == instance(runs[2], "call").id) & (Event.to_state == "available"))
    assert slotted.at == _at(2)


def _chain_of_two_runs(tmp_path) -> list[int]:
    """Two runs of load -> call (max_running 1), their loads done: the first's call offered, the second's queued."""
    deploy_blob_tasks(tmp_path, "chain", [
        "load: {function: load, output: Blob}",
        "call: {function: call_crm, output: Blob, inputs: {src: load}, max_running: 1}"])
    runs = [store.trigger("acme", "chain", actor="cron", now=_at(0)) for _ in range(2)]
    for run in runs:
        grant = claim(run, "load", now=_at(1))
        store.submit(grant.instance, grant.token, BLOB, now=_at(1))
    return runs


def test_an_undo_that_frees_a_slot_hands_it_on_at_once(tmp_path):
    runs = _chain_of_two_runs(tmp_path)
    claim(runs[0], "call", now=_at(2))
    store.undo(instance(runs[0], "load").id, "wrong file", actor="ann", now=_at(3))
    assert [states(r)["call"] for r in runs] == ["pending", "available"]


def test_the_undo_plan_says_an_instance_whose_slots_are_all_taken_waits_queued(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(3)
    for run in runs[:2]:
        complete(run, "call", BLOB, now=_at(1))
    assert _call_states(runs) == ["succeeded", "succeeded", "available"]
    claim(runs[2], "call", now=_at(2))
    planned = store.plan_undo(instance(runs[0], "call").id)
    assert [(a.task, a.becomes) for a in planned.affected] == [("call", "available"), ("after", "pending")]
    complete(runs[1], "after", BLOB, now=_at(2))
    store.undo(instance(runs[1], "call").id, "wrong account", actor="ann", now=_at(3))  # a slot for it
    planned = store.plan_undo(instance(runs[0], "call").id)  # both slots taken: it waits
    store.undo(instance(runs[0], "call").id, "wrong account", actor="ann", now=_at(4))
    assert [(a.task, a.becomes) for a in planned.affected] == [("call", "queued"), ("after", "pending")]
    assert _call_states(runs) == ["queued", "available", "running"]


def test_the_undo_plan_counts_the_slot_its_downstream_instance_gives_back(tmp_path):
    deploy_text(tmp_path, """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    functions:
      call_crm: {max_running: 1}
    workflows:
      calls:
        tasks:
          call: {function: call_crm, output: Blob}
          confirm: {function: call_crm, output: Blob, after: [call]}
    """)
    run = store.trigger("acme", "calls", actor="cron", now=_at(0))
    complete(run, "call", BLOB, now=_at(1))
    assert states(run) == {"call": "succeeded", "confirm": "available"}  # the function's one slot
    planned = store.plan_undo(instance(run, "call").id)
    store.undo(instance(run, "call").id, "wrong account", actor="ann", now=_at(2))
    assert [(a.task, a.becomes) for a in planned.affected] == [("call", "available"), ("confirm", "pending")]
    assert states(run) == {"call": "available", "confirm": "pending"}


def test_a_run_the_scheduler_times_out_hands_its_slot_on_in_the_same_tick(tmp_path):
    deploy_text(tmp_path, """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      calls:
        max_active_runs: null
        timeout: 10m
        tasks:
          call: {function: call_crm, output: Blob, max_running: 1}
    """)
    runs = [store.trigger("acme", "calls", actor="cron", now=_at(minutes)) for minutes in (0, 5)]
    report = tick(_at(11))
    assert report.timed_out == [runs[0]] and report.slotted == [instance(runs[1], "call").id]
    assert _call_states(runs) == ["cancelled", "available"]


def test_an_urgent_run_goes_ahead_of_those_queued_before_it(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(3)
    urgent = store.trigger("acme", "calls", actor="ann", now=_at(1), priority=9)
    _finish(runs[0], 2)
    assert _call_states([*runs, urgent]) == ["succeeded", "available", "queued", "available"]


def test_the_slots_are_the_workflows_over_its_versions_and_each_workflow_counts_its_own(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    deploy_blob_tasks(tmp_path, "others", CALLS)
    first = _runs(2)
    deploy_blob_tasks(tmp_path, "calls", [CALLS[0].replace("max_running: 2", "max_running: 3"), CALLS[1]])
    later = _runs(2, minutes=1)
    assert _call_states(first + later) == ["available", "available", "available", "queued"]
    assert states(store.trigger("acme", "others", actor="cron", now=_at(1)))["call"] == "available"


def test_a_queued_instance_can_be_held_released_skipped_and_its_run_cancelled(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(4)
    third, fourth = instance(runs[2], "call"), instance(runs[3], "call")
    store.hold(third.id, actor="ann", reason="wait for the CRM fix", now=_at(1))
    store.release(third.id, actor="ann", now=_at(2))
    assert _call_states(runs[2:]) == ["queued", "queued"]  # released with no free slot: queued again
    store.skip_instance(fourth.id, "done by hand", actor="ann", now=_at(3))
    store.cancel_run(runs[2], actor="ann", now=_at(4))
    _finish(runs[0], 5)
    assert store.offer_queued(_at(6)) == []  # nothing left queued to offer
    assert _call_states(runs) == ["succeeded", "available", "cancelled", "skipped"]


def test_undoing_what_a_queued_instance_waits_on_takes_it_back_to_pending(tmp_path):
    runs = _chain_of_two_runs(tmp_path)
    assert [states(r)["call"] for r in runs] == ["available", "queued"]
    store.undo(instance(runs[1], "load").id, "wrong file", actor="ann", now=_at(2))
    assert states(runs[1]) == {"load": "available", "call": "pending"}
    with pytest.raises(IllegalTransition, match="is pending: it has not started"):
        store.undo(instance(runs[1], "call").id, "again", actor="ann", now=_at(3))


def test_a_failed_attempt_frees_its_slot_and_its_retry_queues_behind_the_instance_that_took_it(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", ["call: {function: call_crm, output: Blob, max_running: 1, retries: 2}"])
    runs = _runs(2)
    grant = claim(runs[0], "call", now=_at(1))
    store.fail(grant.instance, grant.token, "CRM busy", now=_at(2))  # retry_delay from settings
    assert _call_states(runs) == ["retry_wait", "available"]
    store.release_due_retries(now=_at(30))
    assert _call_states(runs) == ["queued", "available"]
    _finish(runs[1], 31)
    assert _call_states(runs) == ["available", "succeeded"] and instance(runs[0], "call").attempt == 2


def test_a_submit_through_the_bridges_batch_frees_the_slot_and_the_sweep_fills_it(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(3)
    grant = claim(runs[0], "call", now=_at(1))
    item = Item("acme", "m-1", m.Submit(type="submit", instance=grant.instance, token=grant.token, output=BLOB))
    with atomic():
        apply_worker_batch([item], _at(2))
    assert item.error is None
    assert store.offer_queued(_at(2)) == [instance(runs[2], "call").id]


@pytest.mark.parametrize("task, refused", [
    ("{function: decide, output: Blob, human: true, max_running: 2}", "max_running: a human task waits for a person"),
    ("{wait: 10m, max_running: 2}", "a timer (wait) has no worker and no output: remove max_running"),
    ("{function: call_crm, output: Blob, max_running: 0}", "greater than or equal to 1"),
])
def test_max_running_is_for_worker_tasks_and_at_least_one(tmp_path, task, refused):
    assert refused in task_refusal(tmp_path, task)


TEAM_LIMIT = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    functions:
      call_crm: {max_running: %d}
    workflows:
      orders:
        max_active_runs: null
        tasks:
          call: {function: call_crm, output: Blob}
      refunds:
        max_active_runs: null
        tasks:
          check: {function: call_crm, output: Blob, max_running: 1}
          pay: {function: pay, output: Blob, inputs: {src: check}}
"""


def _call_of(run: int):
    (found,) = [i for i in store.get_run(run).instances if i.function == "call_crm"]
    return found


def test_a_teams_function_limit_holds_over_its_workflows_and_hands_on_to_the_longest_waiting(tmp_path):
    deploy_text(tmp_path, TEAM_LIMIT % 2)
    orders = [store.trigger("acme", "orders", actor="shop", now=_at(n)) for n in range(2)]
    refunds = [store.trigger("acme", "refunds", actor="shop", now=_at(2 + n)) for n in range(2)]
    late_order = store.trigger("acme", "orders", actor="shop", now=_at(5))
    assert [_call_of(r).state for r in [*orders, *refunds, late_order]] == ["available"] * 2 + ["queued"] * 3
    assert _call_of(refunds[1]).queued_for == ("a free slot: at most 1 of check (max_running) and at most 2 of the "
                                               "team's call_crm (functions.call_crm.max_running) offered or running "
                                               "at once")
    assert [store.get_run(r).waiting_for for r in (refunds[1], late_order)] == [
        "1 instance(s) queued (max_running, functions' max_running)", "1 instance(s) queued (functions' max_running)"]
    _finish_call(orders[0], 10)  # the longest waiting, of another workflow, takes the slot
    assert [_call_of(r).state for r in [*orders, *refunds, late_order]] == [
        "succeeded", "available", "available", "queued", "queued"]
    _finish_call(orders[1], 11)  # refunds' own limit of 1 keeps its second waiting: the order goes
    assert [_call_of(r).state for r in [*refunds, late_order]] == ["available", "queued", "available"]
    assert Event.get((Event.instance == _call_of(refunds[0]).id) & (Event.to_state == "queued")).detail["queued"] == (
        "functions.call_crm.max_running 2: 2 offered or running")


def _finish_call(run: int, minutes: float) -> None:
    call = _call_of(run)
    grant = store.claim(call.id, instance(run, call.task).token, "w", now=_at(minutes))
    store.submit(grant.instance, grant.token, BLOB, now=_at(minutes))


def test_a_deploy_that_changes_a_function_limit_makes_new_versions_of_the_workflows_whose_tasks_do_it(tmp_path):
    mail = "      mail:\n        tasks:\n          send: {function: send, output: Blob}\n"
    deploy_text(tmp_path, TEAM_LIMIT % 2 + mail)
    again = deploy_text(tmp_path, TEAM_LIMIT % 3 + mail)
    changed = {w.workflow: (w.change, w.changes) for w in again.workflows}
    assert changed == {"mail": ("unchanged", []), "orders": ("updated", ["functions.call_crm.max_running: 2 -> 3"]),
                       "refunds": ("updated", ["functions.call_crm.max_running: 2 -> 3"])}


def _calls_limited_to(tmp_path, most: int) -> None:
    deploy_blob_tasks(tmp_path, "calls", [CALLS[0].replace("max_running: 2", f"max_running: {most}"), CALLS[1]])


def test_a_deploy_that_raises_max_running_offers_the_earlier_runs_queued_instances_at_once(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(4)
    _calls_limited_to(tmp_path, 4)  # the runs keep their version, not its limit: the backlog may drain now
    assert _call_states(runs) == ["available"] * 4
    assert {store.get_run(run).version for run in runs} == {1}
    later = _runs(1, minutes=1)  # behind them, not before them
    assert _call_states(later) == ["queued"]
    assert _call_of(runs[3]).queued_for is None and _call_of(later[0]).queued_for == (
        "a free slot: at most 4 of call (max_running) offered or running at once")


def test_a_deploy_says_how_many_queued_instances_a_raise_let_go_and_a_dry_run_what_it_would(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", CALLS)
    runs = _runs(5)
    path = tmp_path / "raised.yaml"
    path.write_text((tmp_path / "config-0.yaml").read_text().replace("max_running: 2", "max_running: 4"))
    would = store.deploy(load_config(path), actor="ann", now=_at(1), dry_run=True)
    assert [(w.workflow, w.change, w.offered_instances) for w in would.workflows] == [("calls", "updated", 2)]
    assert _call_states(runs) == ["available"] * 2 + ["queued"] * 3  # nothing kept
    done = store.deploy(load_config(path), actor="ann", now=_at(1))
    assert [(w.workflow, w.offered_instances) for w in done.workflows] == [("calls", 2)]
    assert _call_states(runs) == ["available"] * 4 + ["queued"]


def test_a_deploy_that_lowers_max_running_holds_the_earlier_runs_to_it(tmp_path):
    _calls_limited_to(tmp_path, 3)
    runs = _runs(5)
    _calls_limited_to(tmp_path, 1)  # the CRM is struggling: one call at a time, the backlog too
    assert _call_of(runs[3]).queued_for == "a free slot: at most 1 of call (max_running) offered or running at once"
    for n in range(2):
        _finish(runs[n], 1 + n)
        assert _call_states(runs)[3:] == ["queued", "queued"]  # still one or more running of the three
    _finish(runs[2], 3)
    assert _call_states(runs) == ["succeeded"] * 3 + ["available", "queued"]


LOAD_THEN_CALL = ["load: {function: load, output: Blob}", "call: {function: call_crm, output: Blob, inputs: {src: load}}"]
LIMITED_CALL = [LOAD_THEN_CALL[0], LOAD_THEN_CALL[1].replace("}}", "}, max_running: 1}")]


def test_a_deploy_that_adds_max_running_holds_the_earlier_runs_to_it(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", LOAD_THEN_CALL)
    runs = _runs(3)
    for run in runs[:2]:
        complete(run, "load", BLOB, now=_at(1))
    assert _call_states(runs[:2]) == ["available", "available"]
    deploy_blob_tasks(tmp_path, "calls", LIMITED_CALL)  # the CRM struggles: a backfill's runs must slow down too
    complete(runs[2], "load", BLOB, now=_at(2))
    assert _call_states(runs) == ["available", "available", "queued"]
    assert _call_of(runs[2]).queued_for == "a free slot: at most 1 of call (max_running) offered or running at once"
    assert store.get_run(runs[2]).waiting_for == "1 instance(s) queued (max_running)"
    for n in range(2):
        _finish(runs[n], 3 + n)
    assert _call_states(runs) == ["succeeded", "succeeded", "available"]


ONE_RUN_AT_A_TIME = """
    team: acme
    types:
      Blob:
        fields: {uri: string}
    workflows:
      calls:
        max_active_runs: %d
        tasks:
          call: {function: call_crm, output: Blob%s}
"""


def test_queued_runs_a_deploy_starts_keep_to_the_max_running_it_adds(tmp_path):
    deploy_text(tmp_path, ONE_RUN_AT_A_TIME % (1, ""))
    runs = _runs(3)
    deploy_text(tmp_path, ONE_RUN_AT_A_TIME % (3, ", max_running: 1"))  # more runs, but one call at a time
    assert [store.get_run(run).status for run in runs] == ["running"] * 3
    assert _call_states(runs) == ["available", "queued", "queued"]


def test_a_limit_another_process_deploys_reaches_the_earlier_runs_within_a_second(tmp_path, monkeypatch):
    seconds = [0.0]
    monkeypatch.setattr(specs.recent_limits, "clock", lambda: seconds[0])
    deploy_blob_tasks(tmp_path, "calls", LOAD_THEN_CALL)
    runs = _runs(3)  # the limits are read now
    complete(runs[0], "load", BLOB, now=_at(1))
    monkeypatch.setattr(specs.recent_limits, "forget", lambda: None)  # as a deploy elsewhere would leave them
    deploy_blob_tasks(tmp_path, "calls", LIMITED_CALL)
    seconds[0] = 0.9
    complete(runs[1], "load", BLOB, now=_at(2))
    seconds[0] = 1.1
    complete(runs[2], "load", BLOB, now=_at(3))
    assert _call_states(runs) == ["available", "available", "queued"]  # the second before it was read again


def test_a_deploy_that_raises_a_function_limit_lets_every_workflows_queued_instances_go(tmp_path):
    deploy_text(tmp_path, TEAM_LIMIT % 1)
    orders = [store.trigger("acme", "orders", actor="shop", now=_at(n)) for n in range(3)]
    refund = store.trigger("acme", "refunds", actor="shop", now=_at(3))
    assert [_call_of(r).state for r in [*orders, refund]] == ["available"] + ["queued"] * 3
    raised = deploy_text(tmp_path, TEAM_LIMIT % 3)
    assert [_call_of(r).state for r in [*orders, refund]] == ["available"] * 3 + ["queued"]
    assert _call_of(refund).queued_for == ("a free slot: at most 1 of check (max_running) and at most 3 of the "
                                           "team's call_crm (functions.call_crm.max_running) offered or running at once")
    assert Event.get((Event.instance == _call_of(orders[2]).id) & (Event.to_state == "available")).kind == "slot"
    assert [(w.workflow, w.offered_instances) for w in raised.workflows] == [("orders", 2), ("refunds", 0)]


@pytest.mark.parametrize("functions, refused", [
    ("{call_cmr: {max_running: 2}}",
     "functions.call_cmr: no task of team acme does 'call_cmr' (did you mean 'call_crm'?)"),
    ("{decide: {max_running: 2}}", "functions.decide: 'decide' is done by people (human tasks)"),
    ("{call_crm: {max_running: 0}}", "functions.call_crm.max_running: Input should be greater than or equal to 1"),
    ("{call_crm: {}}", "functions.call_crm.max_running: Field required"),
])
def test_a_function_limit_names_a_workers_function_of_the_team(tmp_path, functions, refused):
    written = tmp_path / "limits.yaml"
    written.write_text(f"team: acme\ntypes: {{Blob: {{fields: {{uri: string}}}}}}\nfunctions: {functions}\nworkflows: "
                       "{w: {tasks: {t: {function: call_crm, output: Blob}, "
                       "h: {function: decide, output: Blob, human: true}}}}\n")
    with pytest.raises(ConfigError) as problems:
        load_config(written)
    assert any(refused in problem for problem in problems.value.problems), problems.value.problems


def _as_it_is(run: int) -> dict:
    return {i.task: (i.state, i.attempt, i.worker, i.progress_pct, i.offered_at, i.started_at, i.finished_at, i.error)
            for i in store.get_run(run).instances}


def test_the_run_as_it_was_rebuilds_queued_instances_as_they_are(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", ["call: {function: call_crm, output: Blob, max_running: 1, retries: 2, "
                                          "retry_delay: 0s}",
                                          "after: {function: tidy, output: Blob, inputs: {src: call}}"])
    runs = _runs(3)  # the second and third queued from the start
    grant = claim(runs[0], "call", now=_at(1))
    store.progress(grant.instance, grant.token, 40, "half", now=_at(2))
    store.fail(grant.instance, grant.token, "CRM busy", now=_at(3))  # retried at once: it keeps its slot
    for n, run in enumerate(runs[:2]):  # each submit hands the slot on
        grant = claim(run, "call", now=_at(4 + n))
        store.submit(grant.instance, grant.token, BLOB, now=_at(5 + n))
    store.undo(instance(runs[1], "call").id, "wrong account", actor="ann", now=_at(8))  # queued behind the third
    assert _call_states(runs) == ["succeeded", "queued", "available"]
    for run in runs:
        newest = Event.select(fn.MAX(Event.id)).where(Event.run == run).scalar()
        assert _as_it_is(run) == {i.task: (i.state, i.attempt, i.worker, i.progress_pct, i.offered_at, i.started_at,
                                           i.finished_at, i.error)
                                  for i in store.run_as_of(run, event=newest).instances}, run
