"""A team's operator with nothing but its broker URL: the read commands print what an administrator's
database-backed commands print for that team, another team's ids are missing ids, and what it
does is written to the ledger under its broker user."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import pytest

from bridge.setup_broker import team_permissions
from flow45 import names, store
from flow45.config import load_config
from flow45.models import Event
from tests.bridge.test_operators import operator
from tests.client.two_teams import T0, _instance, deploy_two_teams, finish_nightly
from tests.conftest import EXAMPLES, ROOT
from tests.harness import commands

pytestmark = pytest.mark.integration

MISSING = 999_999
SOME_DAY = "2026-03-02T12:30:00Z"  # what both modes take as now, so the durations they print agree


def at_some_day(url: str, *args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    """`operator`, with the process's clock pinned at SOME_DAY."""
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "FLOW45_AMQP_URL": url, "PYTHONPATH": str(ROOT), **env}
    return commands.run([sys.executable, "-m", "tests.pinned", SOME_DAY, "-m", "flow45", *args], cwd=cwd, env=environ,
                        timeout=60)


def test_the_read_commands_print_the_same_in_both_modes(bridge_env, postgres_url, tmp_path, tmp_path_factory):
    teams = deploy_two_teams(tmp_path)
    ours = teams["reports"]
    changed = tmp_path_factory.mktemp("v2") / "reports.yaml"  # a second version, to tell what it changed
    changed.write_text((EXAMPLES / "reports.yaml").read_text().replace("max_active_runs: 2", "max_active_runs: 3"))
    store.deploy(load_config(changed), actor="ann", now=T0)
    ops = bridge_env.url("reports-ops")
    extracted = Event.get((Event.run == ours.run) & (Event.kind == "submit")).id  # extract done, render offered next
    commands = (
        (["workflows"], ["workflows", "--team", "reports"]),
        (["runs"], ["runs", "--team", "reports"]),
        (["runs", "--json", "--limit", "1"], ["runs", "--json", "--limit", "1", "--team", "reports"]),
        (["runs", "--params", '{"month": "2026-02"}', "--since", "2026-03-01"],
         ["runs", "--params", '{"month": "2026-02"}', "--since", "2026-03-01", "--team", "reports"]),
        (["runs", "--json", "--param", "month=2026-02", "--since", "2d", "--until", "1h"],  # durations before SOME_DAY
         ["runs", "--json", "--param", "month=2026-02", "--since", "2d", "--until", "1h", "--team", "reports"]),
        (["show", str(ours.run)], ["show", str(ours.run)]),
        (["show", "--json", str(ours.run)], ["show", "--json", str(ours.run)]),
        (["show", str(ours.run), "--as-of", str(extracted)], ["show", str(ours.run), "--as-of", str(extracted)]),
        (["show", "--json", str(ours.run), "--as-of", "2026-03-01T12:00:00Z"],
         ["show", "--json", str(ours.run), "--as-of", "2026-03-01T12:00:00Z"]),
        (["instance", str(ours.extract)], ["instance", str(ours.extract)]),
        (["stats", "reports/monthly_report", "--json"], ["stats", "reports/monthly_report", "--json"]),
        (["versions", "reports/monthly_report"], ["versions", "reports/monthly_report"]),
        (["versions", "reports/monthly_report", "--json"], ["versions", "reports/monthly_report", "--json"]),
        (["versions", "reports/monthly_report", "--since", "1"],) * 2,
        (["runs", "--workflow", "monthly_report", "--version", "1", "--json"],
         ["runs", "--workflow", "monthly_report", "--version", "1", "--json", "--team", "reports"]),
        (["events"], ["events", "--team", "reports"]),
        (["graph", "reports/monthly_report"], ["graph", "reports/monthly_report"]),
        (["schema"], ["schema", "--team", "reports"]),
    )
    # Each command is a process of its own: a few at a time.
    with ThreadPoolExecutor(max_workers=4) as pool:
        answers = list(pool.map(lambda pair: (
            at_some_day(ops, *pair[0], cwd=tmp_path), at_some_day(ops, *pair[1], cwd=tmp_path, FLOW45_DATABASE_URL=postgres_url),
        ), commands))
    for (remote, local), (through_broker, on_database) in zip(commands, answers):
        assert through_broker.returncode == on_database.returncode == 0, (remote, through_broker.stderr)
        assert through_broker.stdout == on_database.stdout, remote
        assert "rival" not in through_broker.stdout
    assert list(tmp_path.iterdir()) == [tmp_path / "rival.yaml"]  # no store, no settings made here
    versions = answers[[pair[0] for pair in commands].index(["versions", "reports/monthly_report"])][0].stdout
    assert "v2  deployed 2026-03-01 12:00:00 by ann" in versions and "  max_active_runs: 2 -> 3" in versions
    on_v1 = answers[[pair[0] for pair in commands].index(
        ["runs", "--workflow", "monthly_report", "--version", "1", "--json"])][0]
    assert [r["id"] for r in json.loads(on_v1.stdout)] == [ours.run]
    since = answers[[pair[0] for pair in commands].index(["versions", "reports/monthly_report", "--since", "1"])][0]
    assert "from v1 to v2:\n  max_active_runs: 2 -> 3\n" in since.stdout


def test_another_teams_ids_are_missing_ids_and_the_ledger_names_the_broker_user(bridge_env, tmp_path):
    teams = deploy_two_teams(tmp_path)
    ours, theirs = teams["reports"], teams["rival"]
    ops = bridge_env.url("reports-ops")
    their_event = Event.get((Event.run == theirs.run) & (Event.kind == "submit")).id
    as_of = operator(ops, "show", str(ours.run), "--as-of", str(their_event), cwd=tmp_path)
    assert as_of.returncode == 1 and as_of.stderr.strip().endswith(f"ledger event {their_event} not found for team reports")
    for command, their_id in (("show", theirs.run), ("instance", theirs.approve)):
        other = operator(ops, command, str(their_id), cwd=tmp_path)
        missing = operator(ops, command, str(MISSING), cwd=tmp_path)
        assert other.returncode == missing.returncode == 1 and other.stdout == ""
        assert other.stderr == missing.stderr.replace(str(MISSING), str(their_id))
        assert other.stderr.strip().endswith("not found for team reports")
    skipped = operator(ops, "skip", str(theirs.approve), "--reason", "not ours", cwd=tmp_path)
    assert skipped.returncode == 1 and f"task instance {theirs.approve} not found for team reports" in skipped.stderr
    assert store.get_instance(theirs.approve).state == "available"

    done = operator(ops, "submit", str(ours.approve), "--output", '{"approved": true, "reviewer": "kim"}', cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == f"instance {ours.approve} succeeded\n", done.stderr
    events = operator(ops, "events", "--json", "--instance", str(ours.approve), cwd=tmp_path)
    last = json.loads(events.stdout.splitlines()[-1])
    assert (last["kind"], last["to_state"], last["actor"]) == ("submit", "succeeded", "reports-ops")
    before = store.list_events(0, limit=1000)
    dry = operator(ops, "undo", str(ours.extract), "--reason", "recheck", "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0 and json.loads(dry.stdout)["affected"][0]["task"] == "extract", dry.stderr
    assert store.list_events(0, limit=1000) == before  # a dry run changes nothing
    [publish] = [i.id for i in store.get_run(ours.run).instances if i.task == "publish"]
    done = operator(ops, "skip", str(publish), "--reason", "not this month", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == f"instance {publish} skipped\n", done.stderr
    assert [(e.kind, e.actor) for e in store.list_events(before[-1].id, instance=publish)] == [("skip", "reports-ops")]
    posing = operator(ops, "--as", "the-boss", "retry", str(ours.extract), cwd=tmp_path)
    assert posing.returncode == 2 and "--as names the actor on the database only" in posing.stderr


def test_wait_through_the_broker_for_the_largest_id_says_it_is_not_found(bridge_env, tmp_path):
    """It was refused as "runs.before: Input should be less than or equal to 9223372036854775807"."""
    store.deploy(load_config(EXAMPLES / "reports.yaml"), actor="admin", now=T0)
    done = operator(bridge_env.url("reports-ops"), "wait", "9223372036854775807", cwd=tmp_path)
    assert (done.returncode, done.stderr) == (1, "flow45: run 9223372036854775807 not found for team reports\n")


def test_events_follow_through_the_broker_prints_a_new_event(bridge_env, tmp_path):
    teams = deploy_two_teams(tmp_path)
    assert bridge_env.bridge.events.ready.wait(10)
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOW45_AMQP_URL": bridge_env.url("reports-ops")}
    after = max(e.id for e in store.list_events(0, limit=1000))
    follow = subprocess.Popen([sys.executable, "-m", "flow45", "events", "--follow", "--json", "--after", str(after)],
                              cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.5)  # let it subscribe first, so the event reaches it by the stream (else by its first read)
        store.trigger("rival", "nightly_sales", None, actor="cron")
        run = store.trigger("reports", "nightly_sales", None, actor="cron")
        line = json.loads(follow.stdout.readline())  # blocks until the event comes; the test's timeout bounds it
        assert (line["kind"], line["run"], line["team"]) == ("trigger", run, "reports")
    finally:
        follow.terminate()
        follow.wait(10)
    assert teams["rival"].run != run


def test_events_follow_without_an_id_starts_from_the_newest(bridge_env, tmp_path):
    """As `tail -f`: the team's newest events, then each new one; not the whole ledger first."""
    deploy_two_teams(tmp_path)
    assert bridge_env.bridge.events.ready.wait(10)
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOW45_AMQP_URL": bridge_env.url("reports-ops")}
    newest = [e.id for e in store.list_events(0, team="reports", limit=1000)][-2:]
    follow = subprocess.Popen([sys.executable, "-m", "flow45", "events", "--follow", "--json", "--limit", "2"],
                              cwd=tmp_path, env=environ, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert [json.loads(follow.stdout.readline())["id"] for _ in newest] == newest
        time.sleep(1.5)  # let it subscribe first, so the event reaches it by the stream (else by its first read)
        run = store.trigger("reports", "nightly_sales", None, actor="cron")
        line = json.loads(follow.stdout.readline())  # blocks until the event comes; the test's timeout bounds it
        assert (line["kind"], line["run"]) == ("trigger", run)
    finally:
        follow.terminate()
        follow.wait(10)


@pytest.mark.parametrize("mode", ["broker", "database"])
def test_events_follow_prints_an_event_committed_after_larger_ids(bridge_env, postgres_url, tmp_path, mode):
    """A transaction that took its ledger ids first but commits last: `--follow` prints its events
    too, once each, though its first read (before it subscribed) found a larger id already: through
    the broker the stream brings them when they commit (or the read made on subscribing does); on the
    database the reads look again for the ids skipped over. Both wait for as long as the transaction
    is open, past the time they look for an id at least (the stream's here cut short)."""
    import queue
    import threading

    from tests.held_open import HeldOpen

    deploy_two_teams(tmp_path)
    assert bridge_env.bridge.events.ready.wait(10)
    bridge_env.bridge.events._holes.wait = 0.2
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOW45_AMQP_URL": bridge_env.url("reports-ops")}
    if mode == "database":
        environ["FLOW45_DATABASE_URL"] = postgres_url
    after = max(e.id for e in store.list_events(0, limit=1000))
    with HeldOpen(lambda: store.trigger("reports", "monthly_report", {"month": "2026-02"}, actor="slow-cron")) as slow:
        early = store.trigger("reports", "nightly_sales", None, actor="cron")
        follow = subprocess.Popen([sys.executable, "-m", "flow45", "events", "--follow", "--json", "--after",
                                   str(after)], cwd=tmp_path, env=environ, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)
        lines: queue.Queue = queue.Queue()
        threading.Thread(target=lambda: [lines.put(line) for line in follow.stdout], daemon=True).start()
        try:
            printed = [json.loads(lines.get(timeout=60))]
            assert (printed[0]["kind"], printed[0]["run"]) == ("trigger", early)
            time.sleep(1.5)  # let it subscribe; the skipped ids are older than the stream's wait, still open
            slow.commit()
            while not any(e["run"] == slow.result and e["kind"] == "trigger" for e in printed):
                printed.append(json.loads(lines.get(timeout=30)))
        finally:
            follow.terminate()
            follow.wait(10)
    late_trigger = next(e for e in printed if e["run"] == slow.result and e["kind"] == "trigger")
    assert late_trigger["id"] < printed[0]["id"]  # its id came before the early run's, its commit after
    assert len({e["id"] for e in printed}) == len(printed)


def test_set_output_through_the_broker_is_the_broker_users_attempt(bridge_env, tmp_path):
    deploy_two_teams(tmp_path)
    run = store.trigger("reports", "nightly_sales", None, actor="cron")
    [emea] = [i.id for i in store.get_run(run).instances if i.task == "load_emea"]
    ops = bridge_env.url("reports-ops")
    bad = operator(ops, "set-output", str(emea), "--output", '{"region": "mars", "uri": "u", "rows": 1}',
                   "--reason", "loaded by hand", cwd=tmp_path)
    assert bad.returncode == 1 and "region" in bad.stderr and "Traceback" not in bad.stderr
    output = '{"region": "emea", "uri": "s3://sales/emea", "rows": 7}'
    done = operator(ops, "set-output", str(emea), "--output", output, "--reason", "loaded by hand", cwd=tmp_path)
    assert done.returncode == 0 and done.stdout == f"instance {emea} succeeded: output set by hand\n", done.stderr
    [event] = [e for e in store.list_events(0, limit=1000, instance=emea) if e.kind == "set_output"]
    assert (event.actor, event.detail["reason"]) == ("reports-ops", "loaded by hand")
    assert store.get_instance(emea).state == "succeeded"


def test_backfill_and_trigger_with_a_logical_time_through_the_broker(bridge_env, tmp_path):
    deploy_two_teams(tmp_path)
    ops = bridge_env.url("reports-ops")
    args = ("backfill", "reports/nightly_sales", "--from", "2028-02-28T00:00:00Z", "--to", "2028-03-01T00:00:00Z")
    dry = operator(ops, *args, "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert [i["status"] for i in json.loads(dry.stdout)["items"]] == ["would_create", "would_create"]
    done = operator(ops, *args, "--json", cwd=tmp_path)
    items = json.loads(done.stdout)["items"]
    assert [(i["logical_time"], i["status"]) for i in items] == [
        ("2028-02-28T02:30:00Z", "running"), ("2028-02-29T02:30:00Z", "queued")], done.stderr
    assert {store.get_run(i["run"]).triggered_by for i in items} == {"reports-ops"}
    theirs = operator(ops, "backfill", "rival/nightly_sales", "--from", "2028-02-28", "--to", "2028-03-01", cwd=tmp_path)
    assert theirs.returncode == 1 and "not deployed" in theirs.stderr
    made = operator(ops, "trigger", "reports/monthly_report", "--logical-time", "2028-02-01T05:00:00Z", "--json",
                    cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    assert store.get_run(json.loads(made.stdout)["run"]).logical_time.isoformat() == "2028-02-01T05:00:00"


def test_pause_and_resume_through_the_broker(bridge_env, tmp_path):
    deploy_two_teams(tmp_path)
    ops = bridge_env.url("reports-ops")
    paused = operator(ops, "pause", "reports/nightly_sales", "--json", cwd=tmp_path)
    assert paused.returncode == 0 and json.loads(paused.stdout)["paused"] == "queue", paused.stderr
    made = operator(ops, "trigger", "reports/nightly_sales", "--json", cwd=tmp_path)
    run = json.loads(made.stdout)["run"]
    assert store.get_run(run).status == "queued"
    listed = operator(ops, "workflows", "--json", cwd=tmp_path)
    assert {w["name"]: w["paused"] for w in json.loads(listed.stdout)}["nightly_sales"] == "queue"
    resumed = operator(ops, "resume", "reports/nightly_sales", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr
    assert store.get_run(run).status == "running"
    theirs = operator(ops, "pause", "rival/nightly_sales", cwd=tmp_path)
    assert theirs.returncode == 1 and "not deployed" in theirs.stderr
    # another team's workflow reads as one that does not exist; the names offered are the team's own
    nobodys = operator(ops, "pause", "nobody/nightly_sales", cwd=tmp_path)
    assert (theirs.stderr, nobodys.stderr) == (
        "flow45: workflow rival/nightly_sales is not deployed; did you mean reports/nightly_sales?\n",
        "flow45: workflow nobody/nightly_sales is not deployed; did you mean reports/nightly_sales?\n")


def test_an_undo_through_the_broker_lists_the_connected_runs_and_cancels_them_when_asked(bridge_env, tmp_path):
    """What the dashboard's undo dialog does through the client interface, remotely."""
    from bridge.remote import RemoteClient

    deploy_two_teams(tmp_path)
    nightly, report = finish_nightly()
    notify = _instance(nightly, "notify").id
    client = RemoteClient(bridge_env.url("reports-ops"))
    try:
        plan = client.undo(notify, "", dry_run=True)  # the dialog's plan, before a reason is typed
        assert [(c.run, c.workflow, c.status, c.cancel) for c in plan.connected] == [
            (report, "monthly_report", "running", True)]
        plan = client.undo(notify, "mail went to the wrong list", cancel_connected=True)
        assert plan.cancel_connected and [c.run for c in plan.connected] == [report]
    finally:
        client.close()
    assert store.get_run(report).status == "cancelled" and store.get_run(nightly).status == "running"
    cancel = Event.get((Event.run == report) & (Event.kind == "cancel") & Event.instance.is_null())
    assert cancel.actor == "reports-ops" and "mail went to the wrong list" in cancel.detail["reason"]


def test_deploy_prune_through_the_broker_retires_what_the_files_leave_out(bridge_env, tmp_path):
    deploy_two_teams(tmp_path)
    ops = bridge_env.url("reports-ops")
    folder = tmp_path / "only"
    folder.mkdir()
    text = (EXAMPLES / "reports.yaml").read_text()
    monthly_alone = text[:text.index("  nightly_sales:")].replace("    on: {workflow: reports/nightly_sales", "    # on:")
    (folder / "reports.yaml").write_text(monthly_alone)
    said = operator(ops, "deploy", str(folder), cwd=tmp_path)
    assert said.returncode == 0 and "reports/nightly_sales; deploy --prune retires them" in said.stdout, said.stderr
    pruned = operator(ops, "deploy", str(folder), "--prune", "--json", cwd=tmp_path)
    assert pruned.returncode == 0, pruned.stderr
    assert ("nightly_sales", "retired") in [(w["workflow"], w["change"]) for w in json.loads(pruned.stdout)["workflows"]]
    assert {w.name for w in store.list_workflows("reports")} == {"monthly_report"}
    assert {w.name for w in store.list_workflows("rival")} == {"monthly_report", "nightly_sales"}


def test_bulk_skip_through_the_broker_plans_then_skips_each_as_the_broker_user(bridge_env, tmp_path):
    teams = deploy_two_teams(tmp_path)
    ours = teams["reports"]
    ops = bridge_env.url("reports-ops")
    args = ("bulk", "skip", "--run", str(ours.run), "--state", "pending", "--reason", "not this month")
    dry = operator(ops, *args, "--dry-run", "--json", cwd=tmp_path)
    assert dry.returncode == 0, dry.stderr
    assert [i["task"] for i in json.loads(dry.stdout)["items"]] == ["publish"]
    done = operator(ops, *args, cwd=tmp_path)
    assert done.returncode == 0 and "skip: 1 of 1 done, 0 refused" in done.stdout, done.stderr
    [publish] = [i for i in store.get_run(ours.run).instances if i.task == "publish"]
    assert publish.state == "skipped"
    theirs = operator(ops, "bulk", "retry", "--run", str(teams["rival"].run), cwd=tmp_path)
    assert theirs.returncode == 1 and "not found for team reports" in theirs.stderr


def test_an_operator_who_names_its_team_never_reads_through_the_shared_exchange(bridge_env, tmp_path):
    """Every team's operators may write to the shared `flow45.read`, where a client's first read
    (`whoami`) went: a team flooding it held up another team's dashboards from starting. Told its
    team (FLOW45_TEAM), a client sends every read to its team's own exchange. Here the broker
    refuses reports-ops the shared exchange: told, it reads all the same; a wrong team is named."""
    deploy_two_teams(tmp_path)
    ops, rabbit = bridge_env.url("reports-ops"), bridge_env.rabbit
    configure, write, read = team_permissions("reports", "operator")
    assert write.count(re.escape(names.READ_EXCHANGE) + "|") == 1
    rabbit.ctl("set_permissions", "-p", "/", "reports-ops", configure,
               write.replace(re.escape(names.READ_EXCHANGE) + "|", ""), read)
    try:
        told = operator(ops, "workflows", "--json", cwd=tmp_path, FLOW45_TEAM="reports")
        assert told.returncode == 0, told.stderr
        assert {w["team"] for w in json.loads(told.stdout)} == {"reports"}
        untold = operator(ops, "workflows", cwd=tmp_path)
        assert untold.returncode == 1 and "flow45.read" in untold.stderr and "Traceback" not in untold.stderr
    finally:
        rabbit.ctl("set_permissions", "-p", "/", "reports-ops", configure, write, read)
    wrong = operator(ops, "workflows", "--json", cwd=tmp_path, FLOW45_TEAM="rival")
    assert wrong.returncode == 0 and {w["team"] for w in json.loads(wrong.stdout)} == {"reports"}
    assert "refuses this user's reads to team rival" in wrong.stderr and "is FLOW45_TEAM right?" in wrong.stderr


def test_a_note_through_the_broker_is_the_broker_users_and_shows_with_the_run(bridge_env, tmp_path):
    deploy_two_teams(tmp_path)
    ours = store.trigger("reports", "nightly_sales", None, actor="cron")
    theirs = store.trigger("rival", "nightly_sales", None, actor="cron")
    ops = bridge_env.url("reports-ops")
    done = operator(ops, "note", str(ours), "emea's file came late; watching it", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"note added to run {ours}\n"), done.stderr
    shown = operator(ops, "show", str(ours), cwd=tmp_path)
    said = "emea's file came late; watching it"
    assert re.search(rf"^  note by reports-ops \S+ \S+: {said}$", shown.stdout, re.M), shown.stdout
    assert [(n.actor, n.text) for n in store.get_run(ours).notes] == [("reports-ops", said)]

    missing = operator(ops, "note", str(theirs), "hello from reports", cwd=tmp_path)
    assert missing.returncode == 1 and f"run {theirs} not found" in missing.stderr and "Traceback" not in missing.stderr
    long = operator(ops, "note", str(ours), "x" * 2001, cwd=tmp_path)
    assert long.returncode == 1 and "text" in long.stderr and "2000" in long.stderr, long.stderr
    assert store.get_run(theirs).notes == [] and len(store.get_run(ours).notes) == 1

    done = operator(ops, "note", str(ours), "apac late too", "--task", "load_apac", cwd=tmp_path)
    assert (done.returncode, done.stdout) == (0, f"note added to run {ours}, task load_apac\n"), done.stderr
    apac = operator(ops, "instance", str(_instance(ours, "load_apac").id), cwd=tmp_path)
    assert re.search(r"^  note by reports-ops \S+ \S+: apac late too$", apac.stdout, re.M), apac.stdout
    typo = operator(ops, "note", str(ours), "x", "--task", "load_apc", cwd=tmp_path)
    assert typo.returncode == 1 and "has no task 'load_apc'; did you mean load_apac?" in typo.stderr, typo.stderr


def test_a_trigger_sent_again_with_its_key_through_the_broker_answers_the_first_run(bridge_env, tmp_path):
    deploy_two_teams(tmp_path)
    ops = bridge_env.url("reports-ops")
    args = ("trigger", "reports/monthly_report", "--param", "month=2028-02", "--key", "feb 2028")
    made = operator(ops, *args, "--json", cwd=tmp_path)
    assert made.returncode == 0, made.stderr
    first = json.loads(made.stdout)
    again = operator(ops, *args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert again.stdout == (f"run {first['run']} of reports/monthly_report v1: {first['status']} "
                            "(triggered before with key feb 2028; nothing new started)\n")
    older = operator(ops, "bridge", *args, cwd=tmp_path)  # the administrators' `bridge trigger` too
    assert older.stdout == (f"run {first['run']} of reports/monthly_report: {first['status']} "
                            "(triggered before with key feb 2028; nothing new started)\n"), older.stderr
    other = operator(ops, "trigger", "reports/monthly_report", "--param", "month=2028-03", "--key", "feb 2028",
                     cwd=tmp_path)
    assert other.returncode == 1
    assert f"has run {first['run']} ({first['status']}) for key 'feb 2028' already" in other.stderr
    assert "Traceback" not in other.stderr
    found = operator(ops, "runs", "--key", "feb 2028", "--json", cwd=tmp_path)
    assert [(r["id"], r["key"]) for r in json.loads(found.stdout)] == [(first["run"], "feb 2028")]
    assert store.get_run(first["run"]).triggered_by == "reports-ops"
    assert Event.select().where((Event.kind == "trigger") & (Event.run == first["run"])).count() == 1
