"""Small things an operator looks for, on SQLite and on PostgreSQL: events name their tasks, `show` gives
a failure's error, `runs` filters by params and date, `--as` after the sub-command, "did you mean"."""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import time_machine

from flow45 import store
from flow45.models import Event
from flow45.settings import Settings, current_settings, use_settings
from tests.conftest import EXAMPLES
from tests.store.helpers import T0, claim, deploy_text, instance, states

PARAMS = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
      Month:
        fields: {month: string, region: {type: string, optional: true}, batch: {type: integer, optional: true}}
    workflows:
      monthly:
        params: Month
        tasks:
          a: {function: fa, output: Blob}
          b: {function: fb, output: Blob, inputs: {src: a}}
"""


def at(days: float) -> dt.datetime:
    return T0 + dt.timedelta(days=days)


def test_events_name_tasks_and_show_gives_each_failure_its_error(flow45, tmp_path):  # noqa: F811
    deploy_text(tmp_path, PARAMS)
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    grant = claim(run, "a", now=T0)
    store.fail(grant.instance, grant.token, "disk full on /data", retryable=False, now=T0)
    a = instance(run, "a").id
    code, out, _ = flow45("events", "--run", str(run))
    assert code == 0 and f"run {run} instance {a} (a) running -> failed by w" in out
    code, out, _ = flow45("show", str(run))
    assert code == 0 and out.splitlines()[-1] == f"  a (instance {a}) failed, attempt 1: disk full on /data"
    assert json.loads(flow45("show", str(run), "--json")[1])["instances"][0]["error"] == "disk full on /data"


def test_runs_filter_by_params_and_date(flow45, tmp_path):  # noqa: F811
    deploy_text(tmp_path, PARAMS)
    feb = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=at(0))
    mar = store.trigger("acme", "monthly", {"month": "2026-03", "region": "emea"}, actor="ann", now=at(1))
    mar_apac = store.trigger("acme", "monthly", {"month": "2026-03", "region": "apac", "batch": 30}, actor="ann",
                             now=at(2.5))

    def ids(*args: str) -> list[int]:
        code, out, err = flow45("runs", "--json", *args)
        assert code == 0, err
        return [r["id"] for r in json.loads(out)]

    assert ids("--params", '{"month": "2026-03"}') == [mar_apac, mar]
    assert ids("--params", '{"month": "2026-03", "region": "emea"}') == [mar]
    assert ids("--since", "2026-03-02") == [mar_apac, mar]
    assert ids("--until", "2026-03-02") == [mar, feb]  # a date: up to the end of that day
    assert ids("--since", "2026-03-01T12:00:01Z", "--until", "2026-03-04T02:00:00+01:00") == [mar_apac, mar]
    assert ids("--param", "month=2026-03", "--param", "region=EMEA") == [mar]  # compared without case
    assert ids("--param", "batch=3") == [] and ids("--param", "batch=30") == [mar_apac]  # the whole value
    with time_machine.travel(at(3).replace(tzinfo=dt.timezone.utc), tick=False):  # durations count back from now
        assert ids("--since", "1d", "--param", "month=2026-03") == [mar_apac]
        assert ids("--until", "2d12h") == [feb]
    code, _, err = flow45("runs", "--since", "last week")
    assert code == 2 and "a duration before now such as 2d, got 'last week'" in err
    code, _, err = flow45("runs", "--params", "[1]")
    assert code == 2 and "--params must be a JSON object" in err
    code, _, err = flow45("runs", "--param", "month")
    assert code == 2 and "expected KEY=VALUE such as month=2026-03, got 'month'" in err
    code, _, err = flow45("runs", "--param", "month=2026-03", "--params", '{"month": "2026-02"}')
    assert code == 2 and "params.month asked for twice" in err


def test_as_after_the_sub_command_names_the_actor(flow45, tmp_path):  # noqa: F811
    deploy_text(tmp_path, PARAMS)
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    b = instance(run, "b").id
    assert flow45("hold", str(b), "--as", "bob")[0] == 0  # the fixture's own --as comes before the sub-command
    assert Event.select().where((Event.instance == b) & (Event.kind == "hold")).get().actor == "bob"


def test_unknown_workflows_and_teams_get_did_you_mean(flow45, tmp_path):  # noqa: F811
    deploy_text(tmp_path, PARAMS)
    code, _, err = flow45("trigger", "acme/montly", "--params", '{"month": "2026-02"}')
    assert code == 1 and err == "flow45: workflow acme/montly is not deployed; did you mean acme/monthly?\n"
    code, _, err = flow45("stats", "acmee/monthly")
    assert code == 1 and err.endswith("; did you mean acme/monthly?\n")
    code, _, err = flow45("graph", "nobody/zzz")
    assert code == 1 and err.endswith("; there is no team nobody (teams: acme)\n")


def test_a_workers_control_characters_are_printed_as_escapes_not_sent_to_the_terminal(flow45, tmp_path):
    """`flow45 instance` printed a worker's error as it came: ESC [2J cleared the reader's screen."""
    flow45("deploy", str(EXAMPLES))
    run = store.trigger("reports", "monthly_report", {"month": "2026-10"}, actor="ann", now=T0)
    grant = claim(run, "extract", worker="w\x1b]0;owned\x07")
    store.progress(grant.instance, grant.token, 10, "half\x1b[2K", now=T0)
    store.fail(grant.instance, grant.token, "boom\x1b[2J\r\nsecond line", retryable=False, now=T0)
    for command in (("instance", str(grant.instance)), ("show", str(run)), ("events", "--run", str(run))):
        code, out, err = flow45(*command)
        assert code == 0 and "\x1b" not in out and "\x07" not in out and "\r" not in out, (command, err)
    code, out, _ = flow45("instance", str(grant.instance))
    assert "boom\\x1b[2J\\r\nsecond line" in out and "w\\x1b]0;owned\\x07" in out


def test_text_that_reorders_or_hides_itself_is_printed_as_escapes_and_scripts_are_not():
    from flow45.shown import visible

    assert visible("ann\u202eexe.txt") == "ann\\u202eexe.txt"  # reads backwards as printed
    assert visible("a\u200bb\u2066c\ufeff") == "a\\u200bb\\u2066c\\ufeff"
    kept = "tab\there\nnext, é, 日本, مرحبا\u200f, می\u200cخواهم, 👨\u200d👩"
    assert visible(kept) == kept


def test_a_command_started_with_stdout_closed_prints_nothing_and_goes_on(monkeypatch):
    """`flow45 workflows >&-`: print() writes nothing when there is no stream; the filter of control
    characters wrapped None and ended in a traceback."""
    import sys

    from flow45.cli.output import visible_output

    monkeypatch.setattr(sys, "stdout", None)
    with visible_output():
        print("nowhere to go")
    assert sys.stdout is None


def test_a_trigger_past_the_teams_instance_limit_exits_1_naming_the_limit(flow45, tmp_path):  # noqa: F811
    deploy_text(tmp_path, PARAMS)  # two tasks a run
    use_settings(Settings(database_url=current_settings().database_url, max_open_instances=3))
    assert flow45("trigger", "acme/monthly", "--params", '{"month": "2026-02"}')[0] == 0
    code, out, err = flow45("trigger", "acme/monthly", "--params", '{"month": "2026-03"}')
    assert (code, out) == (1, "")
    assert err == ("flow45: team acme has 2 task instances in runs queued or running, and another of 2 tasks would "
                   "pass its limit of 3 (max_open_instances): let some finish, or cancel some, first\n")


def test_instance_says_when_a_running_attempt_times_out_and_why_it_ended(flow45, tmp_path):
    timed = PARAMS.replace("a: {function: fa, output: Blob}", "a: {function: fa, output: Blob, timeout: 90m}")
    deploy_text(tmp_path, timed)
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    grant = claim(run, "a", now=T0)
    _, out, _ = flow45("instance", str(grant.instance))
    assert out.splitlines()[0].endswith("function fa, times out 2026-03-01 13:30:00")
    _, out, _ = flow45("instance", str(grant.instance), "--json")
    assert json.loads(out)["timeout_at"] == "2026-03-01T13:30:00Z"

    for minute in range(4, 90, 4):  # the worker keeps reporting progress
        store.progress(grant.instance, grant.token, None, "busy", now=T0 + dt.timedelta(minutes=minute))
    store.expire_leases(now=T0 + dt.timedelta(minutes=91))
    _, out, _ = flow45("instance", str(grant.instance))
    assert "times out" not in out.splitlines()[0]
    assert "    error timed out at 2026-03-01 13:30:00 UTC: running longer than its task's timeout of 90m" in out


def test_an_urgent_trigger_raises_its_tasks_priority_and_the_ledger_says_so(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS.replace("b: {function: fb, output: Blob", "b: {function: fb, output: Blob, priority: 8"))
    code, out, err = flow45("trigger", "acme/monthly", "--param", "month=2026-02", "--priority", "6", "--json")
    assert code == 0, err
    run = json.loads(out)["run"]
    assert {i.task: i.priority for i in store.get_run(run).instances} == {"a": 6, "b": 8}  # at least 6
    assert Event.get((Event.run == run) & (Event.kind == "trigger")).detail["priority"] == 6
    code, _, err = flow45("trigger", "acme/monthly", "--param", "month=2026-03", "--priority", "10")
    assert code == 2 and "--priority: invalid choice: 10" in err


def test_show_and_instance_say_why_an_instance_was_skipped(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS)
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    grant = claim(run, "a", now=T0)
    store.skip(grant.instance, grant.token, "no sales that month", now=T0)
    _, out, _ = flow45("show", str(run))
    assert out.splitlines()[-1] == f"  a (instance {grant.instance}) skipped: no sales that month"
    _, out, _ = flow45("instance", str(grant.instance))
    assert out.splitlines()[0].endswith("function fa: no sales that month")


def test_instance_says_by_when_an_offer_must_be_claimed(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS.replace("output: Blob}", "output: Blob, start_within: 15m}", 1))
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    _, out, _ = flow45("instance", str(instance(run, "a").id))
    assert out.splitlines()[0].endswith("function fa, to be claimed by 2026-03-01 12:15:00")


def test_instance_shows_where_each_attempt_got_to(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS.replace("output: Blob}", "output: Blob, retries: 1}", 1))
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    grant = claim(run, "a", now=T0)
    store.progress(grant.instance, grant.token, 30, checkpoint={"next_page": 31, "of": "ledger-2026-02"}, now=T0)
    store.fail(grant.instance, grant.token, "timeout talking to the bank", now=T0)
    _, out, _ = flow45("instance", str(grant.instance))
    assert '    checkpoint {"next_page":31,"of":"ledger-2026-02"}' in out.splitlines()
    _, out, _ = flow45("instance", str(grant.instance), "--json")
    assert json.loads(out)["attempts"][0]["checkpoint"] == {"next_page": 31, "of": "ledger-2026-02"}


def test_deploy_says_how_many_queued_runs_a_raised_max_active_runs_started(flow45, tmp_path):
    one, three = tmp_path / "one.yaml", tmp_path / "three.yaml"
    one.write_text(textwrap.dedent(PARAMS.replace("    tasks:", "    max_active_runs: 1\n        tasks:")))
    three.write_text(one.read_text().replace("max_active_runs: 1", "max_active_runs: 3"))
    assert flow45("deploy", str(one))[0] == 0
    runs = [store.trigger("acme", "monthly", {"month": f"2026-0{n}"}, actor="cron", now=T0) for n in range(1, 5)]
    code, out, _ = flow45("deploy", str(three), "--dry-run")
    assert code == 0 and out.endswith("acme/monthly: would start 2 queued run(s), the oldest first\n")
    assert [store.get_run(r).status for r in runs] == ["running", "queued", "queued", "queued"]
    code, out, _ = flow45("deploy", str(three))
    assert code == 0 and out.endswith("max_active_runs: 1 -> 3\nacme/monthly: started 2 queued run(s), the oldest first\n")
    assert [store.get_run(r).status for r in runs] == ["running", "running", "running", "queued"]
    _, out, _ = flow45("deploy", str(three))  # unchanged: nothing to start
    assert "queued run" not in out


def test_deploy_says_what_changed_and_versions_lists_who_changed_what(flow45, tmp_path):
    first, second = tmp_path / "v1.yaml", tmp_path / "v2.yaml"
    first.write_text(textwrap.dedent(PARAMS))
    second.write_text(textwrap.dedent(PARAMS.replace("a: {function: fa, output: Blob}",
                                                     "a: {function: fa, output: Blob, lease: 90s}")))
    assert flow45("deploy", str(first))[0] == 0
    older = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    assert flow45("show", str(older))[1].splitlines()[0] == f"run {older}  acme/monthly v1  running"
    with time_machine.travel(at(1).replace(tzinfo=dt.timezone.utc), tick=False):
        code, out, _ = flow45("--as", "bob", "deploy", str(second))
    assert code == 0 and out.endswith("acme/monthly v2 changes:\n  tasks.a.lease: null -> 90s\n")
    _, out, _ = flow45("show", str(older))  # the run keeps its version; the header says a newer one is out
    assert out.splitlines()[0] == f"run {older}  acme/monthly v1 (current v2)  running"
    newer = store.trigger("acme", "monthly", {"month": "2026-03"}, actor="ann", now=T0)
    on = {n: [r["id"] for r in json.loads(flow45("runs", "--workflow", "monthly", "--version", n, "--json")[1])]
          for n in ("1", "2")}
    assert on == {"1": [older], "2": [newer]}
    code, _, err = flow45("runs", "--version", "1")
    assert code == 2 and "--version needs --workflow" in err
    code, out, _ = flow45("versions", "acme/monthly")
    assert code == 0 and out.splitlines() == [
        "acme/monthly: 2 version(s), current v2",
        f"v2  deployed 2026-03-02 12:00:00 by bob  hash {out.split('hash ')[1][:12]}  runs 1",
        "  tasks.a.lease: null -> 90s",
        f"v1  deployed {out.split('v1  deployed ')[1][:19]} by ops-ann  hash {out.split('hash ')[2][:12]}  runs 1",
        "  the first version",
    ]
    third = tmp_path / "v3.yaml"
    third.write_text(second.read_text().replace("lease: 90s", "lease: 2m"))
    code, out, _ = flow45("deploy", str(third), "--dry-run")
    assert code == 0 and out.splitlines()[0] == f"dry run: what deploying {third} would do; nothing was deployed"
    assert out.endswith("acme/monthly v3 changes:\n  tasks.a.lease: 90s -> 2m\n")
    assert flow45("versions", "acme/monthly", "--json")[1].count('"version":') == 2  # no v3
    code, _, err = flow45("versions", "acme/monthly", "--limit", "501")
    assert code == 2 and "--limit is at most 500, got 501" in err
    code, _, err = flow45("versions", "acme/monthy")
    assert code == 1 and "workflow acme/monthy is not deployed; did you mean acme/monthly?" in err


def test_notes_on_a_run_are_kept_in_its_ledger_and_shown_oldest_first(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS)
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    with time_machine.travel(at(1).replace(tzinfo=dt.timezone.utc), tick=False):
        assert flow45("note", str(run), "waiting for the bank's file")[:2] == (0, f"note added to run {run}\n")
    with time_machine.travel(at(2).replace(tzinfo=dt.timezone.utc), tick=False):
        assert flow45("--as", "bob", "note", str(run), "  file in; going on  ")[0] == 0
    code, _, err = flow45("note", str(run), "   ")
    assert (code, err) == (1, "flow45: a note needs some text\n")
    code, _, err = flow45("note", "999", "hello")
    assert (code, err) == (1, "flow45: run 999 not found\n")
    _, out, _ = flow45("show", str(run))
    assert [line for line in out.splitlines() if line.startswith("  note")] == [
        "  note by ops-ann 2026-03-02 12:00:00: waiting for the bank's file",
        "  note by bob 2026-03-03 12:00:00: file in; going on"]
    _, out, _ = flow45("show", str(run), "--json")
    assert [(n["actor"], n["text"]) for n in json.loads(out)["notes"]] == [
        ("ops-ann", "waiting for the bank's file"), ("bob", "file in; going on")]
    notes = Event.select().where((Event.run == run) & (Event.kind == "note"))
    assert [(e.from_state, e.to_state) for e in notes] == [(None, None)] * 2, "a note moves nothing"


def test_a_note_on_one_task_of_a_run_is_shown_with_the_run_and_with_its_instance(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS)
    run = store.trigger("acme", "monthly", {"month": "2026-02"}, actor="ann", now=T0)
    with time_machine.travel(at(1).replace(tzinfo=dt.timezone.utc), tick=False):
        assert flow45("note", str(run), "on the run")[0] == 0
        assert flow45("note", str(run), "bank file is late", "--task", "a")[:2] == (
            0, f"note added to run {run}, task a\n")
    code, _, err = flow45("note", str(run), "typo", "--task", "aa")
    assert (code, err) == (1, f"flow45: run {run} has no task 'aa'; did you mean a?\n")
    code, _, err = flow45("note", str(run), "nothing like it", "--task", "zzz")
    assert (code, err) == (1, f"flow45: run {run} has no task 'zzz'; its tasks: a, b\n")
    _, out, _ = flow45("show", str(run))
    assert [line for line in out.splitlines() if line.startswith("  note")] == [
        "  note by ops-ann 2026-03-02 12:00:00: on the run",
        "  note on a by ops-ann 2026-03-02 12:00:00: bank file is late"]
    a, b = instance(run, "a"), instance(run, "b")
    _, out, _ = flow45("instance", str(a.id))
    assert out.splitlines()[1] == "  note by ops-ann 2026-03-02 12:00:00: bank file is late"
    _, out, _ = flow45("instance", str(a.id), "--json")
    assert [(n["task"], n["text"]) for n in json.loads(out)["notes"]] == [("a", "bank file is late")]
    assert json.loads(flow45("instance", str(b.id), "--json")[1])["notes"] == []
    [event] = Event.select().where((Event.kind == "note") & (Event.instance == a.id))
    assert (event.run, event.detail) == (run, {"text": "bank file is late", "task": "a"})


def test_a_deploy_whose_broker_cannot_be_reached_is_deployed_and_says_the_queues_wait(flow45, tmp_path, db_url):
    use_settings(Settings(database_url=db_url, amqp_url="amqp://admin:secret@127.0.0.1:1/flow45"))  # nobody there
    code, out, err = flow45("deploy", str(EXAMPLES))
    assert code == 0 and "monthly_report" in out
    assert err.startswith("flow45: deployed; reports's queues are not declared yet (")
    assert err.endswith("the bridge declares each when it first has an offer for it\n") and "secret" not in err
    assert {w.name for w in store.list_workflows("reports")} == {"monthly_report", "nightly_sales"}


def test_a_trigger_with_a_key_runs_once_and_runs_finds_it_by_its_key(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS)
    args = ("trigger", "acme/monthly", "--param", "month=2026-02", "--key", "INV-2026-02")
    code, out, err = flow45(*args, "--json")
    assert code == 0, err
    first = json.loads(out)
    assert first == {"run": first["run"], "status": "running", "existing": False, "key": "INV-2026-02"}
    code, out, err = flow45(*args)
    assert (code, out) == (0, f"run {first['run']} of acme/monthly v1: running (triggered before with key "
                              "INV-2026-02; nothing new started)\n"), err
    code, out, err = flow45("trigger", "acme/monthly", "--param", "month=2026-03", "--key", "INV-2026-02")
    assert code == 1 and "a key names one run; give another key for another run" in err
    code, out, _ = flow45("runs", "--key", "INV-2026-02", "--json")
    assert [r["id"] for r in json.loads(out)] == [first["run"]]
    code, out, _ = flow45("show", str(first["run"]))
    assert f"by {store.get_run(first['run']).triggered_by} (manual), key INV-2026-02\n" in out
    code, _, err = flow45("trigger", "acme/monthly", "--param", "month=2026-03", "--key", "two\nlines")
    assert code == 2 and "argument --key: run key 'two\\nlines' must be 1-128 printable characters" in err


def test_show_and_instance_say_what_a_queued_instance_waits_for(flow45, tmp_path):
    deploy_text(tmp_path, PARAMS.replace("a: {function: fa, output: Blob}",
                                         "a: {function: fa, output: Blob, max_running: 1}"))
    first, second = (store.trigger("acme", "monthly", {"month": f"2026-0{n}"}, actor="ann", now=T0) for n in (1, 2))
    waiting = instance(second, "a").id
    code, out, err = flow45("show", str(second))
    assert code == 0, err
    assert (f"  a (instance {waiting}) queued, waiting for a free slot: at most 1 of a (max_running) offered or "
            "running at once\n") in out
    assert "  waiting for 1 instance(s) queued (max_running)\n" in out
    code, out, _ = flow45("runs", "--json")
    assert [r["waiting_for"] for r in json.loads(out)] == ["1 instance(s) queued (max_running)", None]
    code, out, _ = flow45("instance", str(waiting))
    assert out.splitlines()[0] == (f"instance {waiting}  a of run {second}  queued  attempt 0  function fa, "
                                   "waiting for a free slot: at most 1 of a (max_running) offered or running at once")
    store.cancel_run(first, actor="ann", now=T0)
    store.offer_queued(T0)
    code, out, _ = flow45("show", str(second))
    assert "queued, waiting for" not in out and instance(second, "a").state == "available"


def test_deploy_says_how_many_queued_instances_a_raised_max_running_let_go(flow45, tmp_path):
    one, three = tmp_path / "one.yaml", tmp_path / "three.yaml"
    one.write_text(textwrap.dedent(PARAMS.replace("{function: fa, output: Blob}", "{function: fa, output: Blob, "
                                                                                   "max_running: 1}")))
    three.write_text(one.read_text().replace("max_running: 1", "max_running: 3"))
    assert flow45("deploy", str(one))[0] == 0
    runs = [store.trigger("acme", "monthly", {"month": f"2026-0{n}"}, actor="cron", now=T0) for n in range(1, 5)]
    code, out, _ = flow45("deploy", str(three), "--dry-run")
    assert code == 0 and out.endswith("acme/monthly: would offer 2 queued task instance(s) a raised max_running made "
                                      "room for\n")
    assert [states(r)["a"] for r in runs] == ["available", "queued", "queued", "queued"]
    code, out, _ = flow45("deploy", str(three), "--json")
    assert code == 0 and json.loads(out)["workflows"][0]["offered_instances"] == 2
    assert [states(r)["a"] for r in runs] == ["available", "available", "available", "queued"]
