"""The `flow45` command as an operator uses it, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json
import sys


from tests import pinned
from tests.conftest import EXAMPLES
from tests.harness import commands


def test_validate_deploy_trigger_show(flow45):
    assert flow45("validate", str(EXAMPLES))[0] == 0
    code, out, _ = flow45("deploy", str(EXAMPLES), "--json")
    assert code == 0 and {w["change"] for w in json.loads(out)["workflows"]} == {"created"}
    code, out, _ = flow45("trigger", "reports/monthly_report", "--params", '{"month": "2026-10"}', "--json")
    run = json.loads(out)["run"]
    code, out, _ = flow45("show", str(run), "--json")
    shown = json.loads(out)
    assert code == 0 and shown["triggered_by"] == "ops-ann"
    assert [(i["task"], i["state"]) for i in shown["instances"]][:2] == [("extract", "available"), ("render", "pending")]


def test_trigger_takes_params_one_by_one_as_runs_filters_them(flow45):
    """`runs --param month=2026-10` finds runs; `trigger --param month=2026-10` was read as `--params`
    (an abbreviation) and refused as not JSON."""
    flow45("deploy", str(EXAMPLES))
    code, out, err = flow45("trigger", "reports/monthly_report", "--param", "month=2026-10", "--json")
    assert code == 0, err
    run = json.loads(out)["run"]
    code, out, _ = flow45("runs", "--param", "month=2026-10", "--json")
    assert [r["id"] for r in json.loads(out)] == [run] and json.loads(out)[0]["params"] == {"month": "2026-10"}
    code, _, err = flow45("trigger", "reports/monthly_report", "--param", "month=2026-10", "--params", '{"month": "x"}')
    assert code == 2 and "params.month given twice, as 'x' and '2026-10'" in err
    code, _, err = flow45("trigger", "reports/monthly_report", "--params", '["2026-10"]')
    assert code == 2 and """--params must be a JSON object such as '{"month": "2026-03"}'""" in err


def test_undo_dry_run_lists_the_affected_set(flow45):
    flow45("deploy", str(EXAMPLES))
    _, out, _ = flow45("trigger", "reports/nightly_sales", "--json")
    run = json.loads(out)["run"]
    _, out, _ = flow45("show", str(run), "--json")
    first = json.loads(out)["instances"][0]["id"]
    code, out, _ = flow45("undo", str(first), "--reason", "recheck", "--dry-run", "--json")
    plan = json.loads(out)
    assert code == 0 and plan["dry_run"] and [a["task"] for a in plan["affected"]] == ["load_emea"]


def test_undo_of_a_finished_night_says_it_waits_queued_while_the_next_runs(flow45):
    flow45("deploy", str(EXAMPLES))
    first, second = (json.loads(flow45("trigger", "reports/nightly_sales", "--json")[1])["run"] for _ in range(2))
    for row in json.loads(flow45("show", str(first), "--json")[1])["instances"]:
        assert flow45("skip", str(row["id"]), "--reason", "loaded by hand")[0] == 0
    assert json.loads(flow45("show", str(second), "--json")[1])["status"] == "running"  # max_active_runs: 1
    load = json.loads(flow45("show", str(first), "--json")[1])["instances"][0]["id"]
    code, out, _ = flow45("undo", str(load), "--reason", "recheck", "--dry-run")
    assert code == 0 and f"run {first} would wait queued for a slot (max_active_runs 1: run {second} running)" in out
    code, out, _ = flow45("undo", str(load), "--reason", "recheck")
    assert code == 0 and f"run {first} waits queued for a slot" in out
    assert json.loads(flow45("show", str(first), "--json")[1])["status"] == "queued"


def test_refusals_exit_1_with_one_line(flow45):
    flow45("deploy", str(EXAMPLES))
    code, _, err = flow45("trigger", "reports/monthly_report", "--params", '{"month": "last"}')
    assert code == 1 and "params.month: String should match pattern" in err
    code, _, err = flow45("show", "4242")
    assert code == 1 and err.strip() == "flow45: run 4242 not found"
    code, _, err = flow45("trigger", "reports/nope")
    assert code == 1 and "reports/nope is not deployed" in err


def test_usage_errors_exit_2(flow45):
    code, _, err = flow45("trigger", "reports/monthly_report", "--params", "{bad")
    assert code == 2 and "--params is not valid JSON" in err
    code, _, err = flow45("trigger", "no-slash")
    assert code == 2 and "expected TEAM/WORKFLOW" in err
    code, _, err = flow45("show", "abc")
    assert code == 2 and "expected a number" in err


def test_bad_config_names_file_and_path(flow45, tmp_path):
    bad = tmp_path / "team.yaml"
    bad.write_text("team: acme\nworkflows:\n  wf:\n    tasks:\n      a: {function: f, output: Nope}\n")
    code, _, err = flow45("deploy", str(bad))
    assert code == 1 and f"{bad}: workflows.wf.tasks.a.output: unknown type 'Nope'" in err


def test_human_submit_and_events(flow45):
    flow45("deploy", str(EXAMPLES))
    _, out, _ = flow45("trigger", "reports/monthly_report", "--json")
    run = json.loads(out)["run"]
    _, out, _ = flow45("show", str(run), "--json")
    approve = next(i for i in json.loads(out)["instances"] if i["task"] == "approve")
    code, _, err = flow45("submit", str(approve["id"]), "--output", '{"approved": true, "reviewer": "ann"}')
    assert code == 1 and "approve of run" in err and "is pending" in err
    code, out, _ = flow45("events", "--run", str(run), "--json")
    kinds = [json.loads(line)["kind"] for line in out.splitlines()]
    assert kinds[:2] == ["trigger", "ready"]


def _at(event: dict) -> dt.datetime:
    return dt.datetime.fromisoformat(event["at"].replace("Z", "+00:00"))


def test_events_are_the_ledgers_newest_unless_asked_from_an_id(flow45):
    """On a ledger of years, `flow45 events` printed its first 500 events: the oldest."""
    flow45("deploy", str(EXAMPLES))
    runs = [json.loads(flow45("trigger", "reports/monthly_report", "--json")[1])["run"] for _ in range(3)]
    code, out, _ = flow45("events", "--after", "0", "--json")
    every = [json.loads(line) for line in out.splitlines()]
    assert code == 0 and len(every) > 6 and [e["id"] for e in every] == sorted(e["id"] for e in every)
    code, out, _ = flow45("events", "--limit", "4", "--json")
    assert code == 0 and [json.loads(line) for line in out.splitlines()] == every[-4:]  # oldest first, as tail
    code, out, _ = flow45("events", "--after", "0", "--limit", "4", "--json")
    assert [json.loads(line) for line in out.splitlines()] == every[:4]
    code, out, _ = flow45("events", "--after", str(every[1]["id"]), "--limit", "2", "--json")
    assert [json.loads(line) for line in out.splitlines()] == every[2:4]
    code, out, _ = flow45("events", "--run", str(runs[0]), "--limit", "2", "--json")
    assert [json.loads(line) for line in out.splitlines()] == [e for e in every if e["run"] == runs[0]][-2:]
    code, out, _ = flow45("events", "--team", "reports", "--limit", "3")
    assert [line.split()[0] for line in out.splitlines()] == [str(e["id"]) for e in every[-3:]]
    middle = every[len(every) // 2]["at"]  # the events' own times: the test needs no clock
    code, out, _ = flow45("events", "--since", middle, "--json")
    assert [json.loads(line) for line in out.splitlines()] == [e for e in every if _at(e) >= _at({"at": middle})]
    code, out, _ = flow45("events", "--until", middle, "--after", "0", "--limit", "2", "--json")
    assert [json.loads(line) for line in out.splitlines()] == [e for e in every if _at(e) < _at({"at": middle})][:2]
    code, _, err = flow45("events", "--since", "yesterday")
    assert code == 2 and "argument --since: expected a date such as 2026-03-01" in err
    code, out, err = flow45("events", "--run", "4242")
    assert code == 1 and out == "" and err.strip() == "flow45: run 4242 not found"
    code, out, err = flow45("events", "--instance", "4242")
    assert code == 1 and err.strip() == "flow45: task instance 4242 not found"
    for command in ("events", "runs"):  # a window no time is in: said, not answered with nothing
        code, _, err = flow45(command, "--since", "2026-03-02", "--until", "2026-03-01")
        assert code == 2 and f"flow45 {command}: error: --since 2026-03-02 00:00:00 is not before --until " \
                              "2026-03-02 00:00:00 (the end of the day it names)" in err


def test_workflows_graph_and_schema(flow45):
    flow45("deploy", str(EXAMPLES))
    code, out, _ = flow45("workflows", "--json")
    assert code == 0 and {w["name"] for w in json.loads(out)} == {"monthly_report", "nightly_sales"}
    code, out, _ = flow45("graph", "reports/monthly_report")
    assert code == 0 and "render -->|document| approve" in out
    code, out, _ = flow45("schema")
    schema = json.loads(out)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema" and "Offer" in schema["$defs"]
    assert schema["$defs"]["reports.render_pdf.output"] == {"$ref": "#/$defs/reports.Document"}
    assert schema["$defs"]["reports.Document"]["required"] == ["uri", "pages"]
    code, out, err = flow45("runs", "--workflow", "montly_report")
    assert code == 0 and out.startswith("RUN")
    assert "no workflow named montly_report is deployed; did you mean monthly_report?" in err
    code, out, err = flow45("runs", "--workflow", "monthly_report")
    assert code == 0 and err == "", "deployed, no runs yet: nothing to say"
    code, out, err = flow45("runs", "--workflow", "acme/x", "--team", "reports")
    assert "no workflow named acme/x is deployed in team reports" in err
    assert "(--workflow takes a name; give the team with --team)" in err
    code, out, err = flow45("runs", "--team", "reprots")
    assert code == 0 and out.startswith("RUN")
    assert "team reprots has no workflows deployed (that you may see); did you mean reports?" in err
    code, out, err = flow45("workflows", "--team", "reprots", "--json")
    assert code == 0 and json.loads(out) == [] and "team reprots has no workflows deployed" in err
    code, out, err = flow45("runs", "--team", "reports")
    assert code == 0 and err == "", "a team with workflows, no runs yet: nothing to say"
    code, out, err = flow45("events", "--team", "reprots")
    assert code == 0 and out == "" and "team reprots has no workflows deployed" in err
    code, out, err = flow45("inbox", "--team", "reprots")
    assert code == 0 and "no human tasks waiting" in out and "did you mean reports?" in err
    code, out, err = flow45("inbox", "--team", "reports")
    assert code == 0 and err == ""
    code, out, err = flow45("schema", "--team", "reprots")
    names = json.loads(out)["$defs"]
    assert code == 0 and "Offer" in names and not any(name.startswith("reports.") for name in names)
    assert "team reprots has no functions deployed" in err


def test_console_script_runs_on_a_fresh_sqlite_file(tmp_path):
    env = {"PATH": "/usr/bin:/bin", "FLOW45_DATABASE_URL": f"sqlite:///{tmp_path / 'f.db'}", "HOME": str(tmp_path)}
    done = commands.run(pinned.command([sys.executable, "-m", "flow45", "deploy", str(EXAMPLES)]), env=env)
    assert done.returncode == 0, done.stderr
    done = commands.run(pinned.command([sys.executable, "-m", "flow45", "runs"]), env=env)
    assert done.returncode == 0 and done.stdout.startswith("RUN")


def test_human_submit_and_params_are_strict_json(flow45, tmp_path):
    config = tmp_path / "team.yaml"
    config.write_text(
        "team: acme\ntypes:\n  Ok: {fields: {approved: boolean, at: {type: datetime, optional: true}}}\n"
        "  P: {fields: {n: number}}\n"
        "workflows:\n  wf:\n    params: P\n    tasks:\n      ask: {function: ask, output: Ok, human: true}\n"
    )
    assert flow45("deploy", str(config))[0] == 0
    code, _, err = flow45("trigger", "acme/wf", "--params", '{"n": NaN}')
    assert code == 2 and "--params is not valid JSON: NaN is not a JSON number" in err
    code, _, err = flow45("trigger", "acme/wf", "--params", '{"n": "0.5"}')
    assert code == 1 and "params.n: Input should be a valid number" in err
    code, out, _ = flow45("trigger", "acme/wf", "--params", '{"n": 1e3}', "--json")
    run = json.loads(out)["run"]
    _, out, _ = flow45("show", str(run), "--json")
    ask = json.loads(out)["instances"][0]["id"]
    code, _, err = flow45("submit", str(ask), "--output", '{"approved": "yes"}')
    assert code == 1 and "output.approved: Input should be a valid boolean" in err
    code, _, err = flow45("submit", str(ask), "--output", '{"approved": true, "at": "2026-03-01T12:00:00"}')
    assert code == 1 and "output.at: the datetime '2026-03-01T12:00:00' has no offset" in err
    assert flow45("submit", str(ask), "--output", '{"approved": true, "at": "2026-03-01T13:00:00+01:00"}')[0] == 0
    code, out, _ = flow45("instance", str(ask), "--json")
    assert json.loads(out)["attempts"][-1]["output"] == {"approved": True, "at": "2026-03-01T12:00:00Z"}
