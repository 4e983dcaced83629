"""The operator's everyday tools as an operator types them, on the database (both backends)."""

from __future__ import annotations

import json


from flow45 import store
from flow45.models import Event
from tests.store.helpers import BLOB, DIAMOND, T0, claim, complete, deploy_text, instance, states


def test_set_output_checks_the_type_then_finishes_the_task_as_the_operator(flow45, tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = str(claim(run, "a").instance)
    code, out, err = flow45("set-output", a, "--output", '{"uri": "s3://x"}', "--reason", "by hand")
    assert code == 1 and out == "" and "size" in err and "Traceback" not in err
    code, _, err = flow45("set-output", a, "--output", '{"uri": ', "--reason", "by hand")
    assert code == 2 and "--output is not valid JSON" in err
    code, out, err = flow45("set-output", a, "--output", json.dumps(BLOB), "--reason", "by hand", "--json")
    assert code == 0 and json.loads(out) == {"instance": int(a), "state": "succeeded"}, err
    assert states(run)["b"] == "available"
    event = Event.get((Event.instance == int(a)) & (Event.kind == "set_output"))
    assert (event.actor, event.detail["reason"]) == ("ops-ann", "by hand")
    code, out, _ = flow45("instance", a)
    assert code == 0 and "attempt 2: succeeded by ops-ann" in out and "    comment by hand\n" in out
    code, _, err = flow45("set-output", str(instance(run, "d").id), "--output", json.dumps(BLOB), "--reason", "x")
    assert code == 1 and "is pending; an output can be set only while it is" in err


NIGHTLY = """
    team: acme
    types:
      Done:
        fields: {ok: boolean}
    workflows:
      nightly:
        schedule: {cron: "0 2 * * *", timezone: UTC}
        max_active_runs: 1
        tasks:
          load: {function: load, output: Done}
"""


WEEKLY = """
team: acme
types:
  Sent:
    fields: {ok: boolean}
workflows:
  weekly:
    tasks:
      send: {function: send, output: Sent}
"""


def test_backfill_dry_run_lists_the_ticks_then_makes_the_runs_and_trigger_takes_a_logical_time(flow45, tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    code, out, err = flow45("backfill", "acme/nightly", "--from", "2028-02-28", "--to", "2028-02-29T23:00", "--dry-run")
    assert code == 0, err
    assert out.splitlines()[1:3] == ["2028-02-28 02:00:00  -    would create", "2028-02-29 02:00:00  -    would create"]
    assert "dry run: would create 2 run(s)" in out and store.list_runs() == []
    code, out, err = flow45("backfill", "acme/nightly", "--from", "2028-02-28", "--to", "2028-02-29T23:00", "--json")
    plan = json.loads(out)
    assert code == 0 and [(i["logical_time"], i["status"]) for i in plan["items"]] == [
        ("2028-02-28T02:00:00Z", "running"), ("2028-02-29T02:00:00Z", "queued")], err
    code, _, err = flow45("backfill", "acme/nightly", "--from", "yesterday", "--to", "2028-02-29")
    assert code == 2 and "expected a time such as 2026-03-01T06:00:00Z, got 'yesterday'" in err
    code, out, err = flow45("trigger", "acme/nightly", "--logical-time", "2028-01-31T02:00:00Z", "--json")
    assert code == 0, err
    assert store.get_run(json.loads(out)["run"]).logical_time.isoformat() == "2028-01-31T02:00:00"


def test_backfill_to_a_date_covers_that_whole_day_as_the_dashboard_and_runs_until_do(flow45, tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    code, out, err = flow45("backfill", "acme/nightly", "--from", "2028-02-28", "--to", "2028-02-29", "--dry-run")
    assert code == 0, err
    assert out.splitlines()[1:3] == ["2028-02-28 02:00:00  -    would create", "2028-02-29 02:00:00  -    would create"]
    code, out, err = flow45("backfill", "acme/nightly", "--from", "9999-12-31", "--to", "9999-12-31", "--dry-run")
    assert code == 1 and "cannot be worked out that close to the ends of the calendar" in err  # no traceback


def test_pause_with_refused_triggers_then_resume(flow45, tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    code, out, err = flow45("pause", "acme/nightly", "--triggers", "refuse", "--reason", "source migrating")
    assert code == 0 and "acme/nightly paused" in out and "refused" in out, err
    code, out, _ = flow45("workflows")
    assert "0 2 * * * UTC (paused, triggers refused)" in out
    code, out, err = flow45("trigger", "acme/nightly")
    assert code == 1 and "acme/nightly is paused and refuses triggers; resume it first" in err
    code, out, err = flow45("resume", "acme/nightly", "--json")
    assert code == 0 and json.loads(out) == {"workflow": "acme/nightly", "paused": None}, err
    code, out, err = flow45("resume", "acme/nightly")
    assert code == 1 and "acme/nightly is not paused" in err
    assert [(e.kind, e.actor) for e in Event.select().where(Event.kind.in_(["pause", "resume"]))] == [
        ("pause", "ops-ann"), ("resume", "ops-ann")]


def test_deploy_says_which_workflows_the_config_leaves_out_and_prune_retires_them(flow45, tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    (tmp_path / "only.yaml").write_text(NIGHTLY.replace("nightly:", "weekly:").replace("\n    ", "\n"))
    code, out, err = flow45("deploy", str(tmp_path / "only.yaml"))
    assert code == 0, err
    assert f"deployed but not in {tmp_path / 'only.yaml'}: acme/nightly; deploy --prune retires them" in out
    code, out, err = flow45("deploy", str(tmp_path / "only.yaml"), "--prune", "--json")
    retired = {"team": "acme", "workflow": "nightly", "version": 1, "change": "retired", "changes": [], "started_runs": 0,
               "offered_instances": 0}
    assert code == 0 and retired in json.loads(out)["workflows"], err
    code, out, _ = flow45("workflows")
    assert "weekly" in out and "nightly" not in out


def test_prune_retires_nothing_when_a_file_of_the_folder_cannot_be_read(flow45, tmp_path):
    config = tmp_path / "config"
    config.mkdir()
    (config / "weekly.yaml").write_text(WEEKLY)
    nightly = tmp_path / "nightly.yaml"
    nightly.write_text(NIGHTLY)
    (config / "nightly.yaml").symlink_to(nightly)
    code, _, err = flow45("deploy", str(config))
    assert code == 0, err
    nightly.unlink()  # the link now points nowhere: a file moved, a mount gone
    code, out, err = flow45("deploy", str(config), "--prune")
    assert code == 1 and out == "" and f"{config / 'nightly.yaml'}: cannot read: No such file or directory" in err
    code, out, _ = flow45("workflows")
    assert "weekly" in out and "nightly" in out


def test_bulk_retry_plans_then_applies_each_failed_instance_and_reports_a_refusal(flow45, tmp_path):
    deploy_text(tmp_path, DIAMOND)
    runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(2)]  # max_active_runs 1
    grant = claim(runs[0], "a")
    store.fail(grant.instance, grant.token, "boom", retryable=False, now=T0)
    grant = claim(runs[1], "a")  # the second run started when the first failed
    store.fail(grant.instance, grant.token, "boom", retryable=False, now=T0)
    a0, a1 = instance(runs[0], "a").id, instance(runs[1], "a").id
    code, out, err = flow45("bulk", "retry", "--workflow", "acme/diamond", "--task", "a", "--state", "failed",
                            "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and [(i["instance"], i["outcome"]) for i in plan["items"]] == [(a0, "planned"), (a1, "planned")], err
    assert states(runs[0])["a"] == states(runs[1])["a"] == "failed"
    code, out, err = flow45("bulk", "retry", "--run", str(runs[0]), "--run", str(runs[1]), "--task", "a")
    assert code == 0 and "retry: 2 of 2 done, 0 refused" in out, err
    # max_active_runs 1: the first runs again, the second waits queued for its slot
    assert (states(runs[0])["a"], states(runs[1])["a"]) == ("available", "pending")
    assert store.get_run(runs[1]).status == "queued"
    code, out, err = flow45("bulk", "retry", "--run", str(runs[0]), "--task", "a")  # available now: not planned
    assert code == 0 and out.strip() == ("nothing to retry in the 1 chosen run(s) (1 instance(s) left out: retry acts "
                                         "on instances that are failed, in runs not cancelled)"), err
    code, _, err = flow45("bulk", "retry", "--run", str(runs[0]), "--state", "available")
    assert code == 1 and "bulk retry: --state available: retry acts on instances that are failed" in err
    code, _, err = flow45("bulk", "skip", "--run", str(runs[0]), "--task", "b")
    assert code == 1 and "bulk skip needs a reason" in err
    code, _, err = flow45("bulk", "skip", "--run", str(runs[0]), "--task", "b", "--reason", "  ")
    assert code == 1 and "bulk skip needs a reason" in err
    code, out, err = flow45("bulk", "cancel", "--run", str(runs[0]), "--dry-run")
    assert code == 0 and "dry run: 1 item(s) would be cancelled" in out, err


def test_pause_resume_backfill_and_bulk_name_the_closest_workflows_to_a_mistyped_one(flow45, tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    window = ["--from", "2028-02-28", "--to", "2028-02-29"]
    for args in (["pause", "acme/nighlty"], ["resume", "acme/nighlty"], ["backfill", "acme/nighlty", *window],
                 ["bulk", "retry", "--workflow", "acme/nighlty"]):
        code, out, err = flow45(*args)
        assert (code, out) == (1, ""), args
        assert err == "flow45: workflow acme/nighlty is not deployed; did you mean acme/nightly?\n", args
    code, _, err = flow45("pause", "acne/nightly")
    assert code == 1 and "workflow acne/nightly is not deployed; did you mean acme/nightly?" in err


def test_bulk_says_why_its_filter_chose_no_run(flow45, tmp_path):
    """A workflow's filter that matched nothing was answered "no runs chosen; give --run IDs or a filter
    (--workflow, --status)", as if no filter had been given."""
    deploy_text(tmp_path, NIGHTLY)
    code, _, err = flow45("bulk", "retry", "--workflow", "acme/nightly")
    assert code == 1 and err == "flow45: bulk: acme/nightly has no runs\n"
    store.trigger("acme", "nightly", actor="ann", now=T0)
    code, _, err = flow45("bulk", "retry", "--workflow", "acme/nightly", "--status", "failed")
    assert code == 1 and err == "flow45: bulk: acme/nightly has no runs that are failed\n"
    code, _, err = flow45("bulk", "retry", "--workflow", "acme/nightly", "--status", "broken")
    assert code == 1 and "--status broken is not a run status; one of queued, running, succeeded, failed" in err
    code, _, err = flow45("bulk", "retry", "--status", "failed")  # a status alone chose nothing, silently
    assert code == 2 and "flow45 bulk: error: --status chooses among the runs of --workflow" in err
    code, _, err = flow45("bulk", "retry")
    assert code == 1 and "no runs chosen; give --run RUN (repeated for several) or --workflow TEAM/WORKFLOW" in err


def test_a_bulk_plan_holds_only_what_its_action_can_act_on_and_the_real_one_keeps_it(flow45, tmp_path):
    """A dry run listed cancelled runs as "would cancel", and succeeded instances as "would retry": the
    real run then refused them all. The plan leaves them out, and says how many."""
    deploy_text(tmp_path, DIAMOND)
    runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(3)]  # max_active_runs 1: 2 queued
    store.cancel_run(runs[1], actor="ann", now=T0)
    code, out, err = flow45("bulk", "cancel", "--workflow", "acme/diamond", "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and [(i["run"], i["state"]) for i in plan["items"]] == [(runs[0], "running"), (runs[2], "queued")]
    assert plan["left_out"] == 1, err
    code, out, err = flow45("bulk", "cancel", "--workflow", "acme/diamond", "--reason", "wrong month")
    assert code == 0 and "cancel: 2 of 2 done, 0 refused" in out and "1 run(s) left out: cancel acts on runs " \
        "that are queued, running or failed" in out, err
    code, out, err = flow45("bulk", "undo", "--workflow", "acme/diamond", "--reason", "again")
    assert code == 0 and "nothing to undo in the 3 chosen run(s) (12 instance(s) left out" in out, err
    code, out, err = flow45("show", str(runs[0]))
    assert "\n  cancelled by ops-ann: wrong month\n" in out, err
    code, out, err = flow45("show", str(runs[1]), "--json")
    assert (json.loads(out)["cancelled_by"], json.loads(out)["cancel_reason"]) == ("ann", None), err


def test_bulk_cancel_with_a_state_cancels_only_the_runs_in_that_state(flow45, tmp_path):
    """`--state queued` was checked, then not applied to runs: the running run was cancelled with the queued."""
    deploy_text(tmp_path, DIAMOND)
    running, queued = (store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(2))  # max_active_runs 1
    code, out, err = flow45("bulk", "cancel", "--run", str(running), "--run", str(queued), "--state", "queued",
                            "--dry-run", "--json")
    assert code == 0 and [(i["run"], i["state"]) for i in json.loads(out)["items"]] == [(queued, "queued")], err
    code, out, err = flow45("bulk", "cancel", "--workflow", "acme/diamond", "--state", "queued", "--reason", "stale")
    assert code == 0 and "cancel: 1 of 1 done, 0 refused" in out, err
    assert (store.get_run(running).status, store.get_run(queued).status) == ("running", "cancelled")


def test_bulk_undo_of_an_instance_and_what_follows_it_reports_them_undone_together(flow45, tmp_path):
    """The undo of a took b, c and d back to pending with it; their own undos then were refused as
    pending: "1 of 4 done, 3 refused", exit 1, for a plan done whole."""
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    for task in "abcd":
        complete(run, task, BLOB)
    a = instance(run, "a").id
    code, out, err = flow45("bulk", "undo", "--run", str(run), "--reason", "bad source", "--json")
    items = json.loads(out)["items"]
    assert code == 0 and [(i["task"], i["outcome"], i["detail"]) for i in items] == [
        ("a", "done", None), *((task, "done", f"undone with instance {a} (a)") for task in "bcd")], err
    assert states(run) == {"a": "available", "b": "pending", "c": "pending", "d": "pending"}
    undos = Event.select(Event.instance).where((Event.kind == "undo") & Event.from_state.is_null())
    assert [e.instance for e in undos] == [a]  # one undo, its affected set the whole run


def test_instance_shows_what_each_attempt_was_built_on_and_its_log_and_show_the_failed_ones_log(flow45, tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    complete(run, "a", BLOB)
    store.skip_instance(instance(run, "b").id, "not this month", actor="op", now=T0)
    complete(run, "c", BLOB)
    d = str(claim(run, "d").instance)
    code, out, err = flow45("instance", d)
    assert code == 0 and "built on null (b skipped) as left, attempt 1 of c as right" in out, err
    code, out, err = flow45("undo", str(instance(run, "a").id), "--reason", "bad source")
    assert code == 0, err
    code, out, err = flow45("instance", d)
    assert "attempt 1: revoked (archived)" in out and "attempt 1 of c (undone) as right" in out, out
    code, out, err = flow45("instance", str(instance(run, "c").id))
    assert "attempt 1: succeeded (archived)" in out and "    output went to attempt 1 of d (undone)\n" in out, out
    code, out, err = flow45("instance", d, "--json")
    [attempt] = json.loads(out)["attempts"]
    assert attempt["lineage"] == [
        {"param": "left", "task": "b", "instance": instance(run, "b").id, "attempt": None, "undone": False},
        {"param": "right", "task": "c", "instance": instance(run, "c").id, "attempt": 1, "undone": True}]
    # The new attempt of a fails, its worker having said where its log is: show and instance say it.
    grant = claim(run, "a")
    store.fail(grant.instance, grant.token, "source gone", retryable=False, log_url="https://logs.example.org/a/2",
               log_tail="".join(f"line {n}\n" for n in range(1, 8)), now=T0)
    code, out, err = flow45("show", str(run))
    assert code == 0, err
    failed = out[out.index(f"  a (instance {grant.instance}) failed"):].splitlines()
    assert failed[:4] == [f"  a (instance {grant.instance}) failed, attempt 2: source gone",
                          "    log https://logs.example.org/a/2", "    log tail:", "      | line 3"]
    assert failed[-1] == "      | line 7"  # the last five lines
    code, out, err = flow45("instance", str(grant.instance))
    assert "    log https://logs.example.org/a/2\n    log tail:\n      | line 1\n" in out


def test_retry_says_when_the_failed_run_waits_queued_for_its_workflows_slot(flow45, tmp_path):
    deploy_text(tmp_path, DIAMOND)
    runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(2)]  # max_active_runs 1
    grant = claim(runs[0], "a")
    store.fail(grant.instance, grant.token, "boom", retryable=False, now=T0)
    assert store.get_run(runs[1]).status == "running"  # the failed run left its slot
    a0 = instance(runs[0], "a").id
    code, out, err = flow45("retry", str(a0))
    assert code == 0 and out.strip() == (f"instance {a0} retried: run {runs[0]} waits queued for a slot of its "
                                         "workflow's max_active_runs, and offers it when it starts"), err
    store.cancel_run(runs[1], actor="ann", now=T0)
    assert states(runs[0])["a"] == "available"


def test_bulk_cancel_of_a_workflow_acts_on_every_matching_run_past_a_page(flow45, tmp_path):
    """`bulk cancel --workflow` read the workflow's newest 500 runs only: of 501 queued runs it planned
    and cancelled 500, said "500 of 500 done", and the oldest queued run stayed queued."""
    deploy_text(tmp_path, DIAMOND)
    runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(502)]  # max_active_runs 1
    queued = runs[1:]
    code, out, err = flow45("bulk", "cancel", "--workflow", "acme/diamond", "--state", "queued", "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and sorted(i["run"] for i in plan["items"]) == queued and plan["runs"] == 502, err
    code, out, err = flow45("bulk", "cancel", "--workflow", "acme/diamond", "--state", "queued", "--reason", "stale")
    assert code == 0 and out.endswith("\ncancel: 501 of 501 done, 0 refused, in 502 chosen run(s)\n"), err
    assert {r.status for r in store.list_runs(limit=1000)} == {"running", "cancelled"}
    assert store.get_run(runs[0]).status == "running" and store.get_run(queued[0]).status == "cancelled"
