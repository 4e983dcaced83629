"""Spoiled configurations through the command line, on SQLite and PostgreSQL.

A team file using every key (schedules, params, human tasks, timers, connected workflows, conditions,
limits) is spoiled at random: a value replaced by a hostile one (a wrong type, a huge number, another
task's or type's name, an awkward date), a key removed, added or renamed. Then, as a user would:
`flow45 validate`, and for what validates `deploy`, then `graph`, `versions`, `trigger`, `show` of that
run and `stats` of each workflow, and the scheduler's tick on awkward days. Whatever the file says, nothing raises: each command exits 0, or 1
with an error that names the file (a config problem) or the thing refused, never a traceback.
"""

from __future__ import annotations

import copy
import datetime as dt
import json
import logging
import os
from pathlib import Path

import yaml
from hypothesis import HealthCheck, event, given, settings, strategies as st

from flow45.scheduler import tick

SEED = """\
team: acme
groups:
  ops: [ann, bob]
functions:
  load: {max_running: 4}
types:
  Params:
    fields:
      day: {type: date, optional: true}
      region: {type: enum, values: [emea, apac], optional: true}
  Part:
    fields: {name: string, ok: boolean}
  Blob:
    description: a file
    fields:
      uri: {type: string, max_length: 200, pattern: "^s3://"}
      size: {type: integer, ge: 0, le: 1000000}
      parts: {type: list, items: Part, optional: true}
      at: {type: datetime, optional: true}
      ratio: {type: number, le: 1.0, optional: true}
  Approval:
    fields: {approved: boolean, reviewer: string}
workflows:
  nightly:
    description: loads, a review, a report
    schedule: {cron: "30 2 * * *", timezone: Europe/Amsterdam, catchup: all, start: "2026-01-01", end: "2028-12-31"}
    max_active_runs: 2
    params: Params
    sla: 2h
    timeout: 1d
    export: [finance]
    tasks:
      load: {function: load, output: Blob, retries: 3, retry_delay: 30s, retry_backoff: 2, max_retry_delay: 10m,
             retry_jitter: 0.5, lease: 5m, timeout: 1h, start_within: 2h, priority: 3, depends_on_past: true}
      check: {function: check, output: Blob, inputs: {blob: load}, optional: true, max_running: 2,
              when: {blob.size: {gt: 0}, params.region: [emea, apac]}}
      review:
        function: review
        output: Approval
        human: true
        inputs: {blob: check}
        assignees: [ann, "@ops"]
        due: 1d
        reminders: [2h, 12h]
        overdue: {escalate: ["@ops"]}
      cool: {wait: 10m, after: [review]}
      morning: {wait_until: "06:00", after: [load]}
      report: {function: report, output: Blob, inputs: {blob: load, approval: review}, after: [cool, morning],
               undo: notify, when: {approval.approved: true}}
      cleanup: {function: clean, output: Blob, after: [report], trigger_rule: all_done}
  monthly:
    schedule: {cron: "0 6 1 * *", timezone: America/New_York, catchup: latest}
    max_active_runs: null
    "on": {workflow: acme/nightly, state: succeeded, params: {uri: report.uri}}
    params: Follow
    tasks:
      sum: {function: summarize, output: Blob}
      sign:
        function: sign
        output: Approval
        human: true
        inputs: {blob: sum}
        due: 3d
        overdue: {default: {approved: false, reviewer: nobody}}
"""
# `"on"` is quoted for PyYAML, which reads a bare `on` as true (YAML 1.1); Flow45's own loader does not.
# `monthly`'s params type, added apart so that spoiling `types` can also remove it.
SEED_TYPES = {"Follow": {"fields": {"uri": {"type": "string", "optional": True}}}}

KEYS = [  # every key a team file knows, and a few it does not
    "team", "groups", "functions", "types", "workflows", "fields", "type", "items", "values", "optional",
    "pattern", "max_length", "ge", "le", "gt", "lt", "description", "schedule", "cron", "timezone", "catchup",
    "start", "end", "max_active_runs", "params", "sla", "timeout", "export", "tasks", "function", "output",
    "inputs", "after", "retries", "retry_delay", "retry_backoff", "max_retry_delay", "retry_jitter", "lease",
    "start_within", "priority", "depends_on_past", "max_running", "trigger_rule", "human", "assignees", "due",
    "reminders", "overdue", "escalate", "default", "skip", "fail", "undo", "when", "wait", "wait_until", "on",
    "workflow", "state", "load", "check", "review", "cool", "report", "Blob", "Approval", "Part", "uri", "size",
    "blob.size", "params.region", "approval.approved", "x", "", "-", "über", "a" * 80, "__class__",
]
NAMES = ["load", "check", "review", "cool", "morning", "report", "cleanup", "sum", "sign", "nightly", "monthly",
         "Blob", "Part", "Approval", "Params", "Follow", "acme/nightly", "acme/monthly", "rival/nightly",
         "@ops", "@nobody", "ann", "report.uri", "load.uri", "sum.size", "blob.size"]
TEXTS = ["", " ", "x", "0 6 * * *", "0 6 31 2 *", "* * * * * *", "@daily", "0 0 29 2 *", "10m", "0s", "-5s",
         "36500d", "1.5h", "P1D", "06:00", "24:00", "23:59:59", "2026-02-29", "2028-02-29", "2026-13-01",
         "2026-03-29T02:30:00", "Europe/Nowhere", "Europe/Amsterdam", "UTC", "all", "latest", "none", "notify",
         "succeeded", "failed", "all_done", "all_success", "one_failed",
         "none_failed_min_one_success", "one_success", "all_skipped", "all_failed", "none_skipped",
         "^(a|b)+$", "(?=x)", "[", "\\", "\n", "\x00", "\u202e",
         "${HOME}", "{{ x }}", "'; drop table run; --", "é" * 300, "9" * 400]
VALUES = st.one_of(
    st.none(), st.booleans(), st.sampled_from([0, 1, -1, 2, 100, 101, 2**31, 2**63, 10**30]),
    st.sampled_from([0.5, -0.0, 1e308, float("inf"), float("nan")]),
    st.sampled_from(TEXTS), st.sampled_from(NAMES),
    st.sampled_from([dt.date(2028, 2, 29), dt.datetime(2026, 12, 31, 23, 59, 59), dt.date(1, 1, 1)]),
    st.lists(st.sampled_from(NAMES + TEXTS[:12]), max_size=3),
    st.dictionaries(st.sampled_from(KEYS), st.sampled_from(NAMES + [1, True, None]), max_size=2),
)


def seed_document() -> dict:
    document = yaml.safe_load(SEED)
    document["types"].update(copy.deepcopy(SEED_TYPES))
    return document


def write_seed(path: Path, team: str = "acme") -> Path:
    """The seed, whole, as `team`'s file at `path`."""
    path.write_text(yaml.safe_dump(seed_document(), sort_keys=False).replace("acme", team))
    return path


def _paths(node, here=()):
    """Every place in the document: (path, value)."""
    yield here, node
    children = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
    for key, child in children:
        yield from _paths(child, (*here, key))


def _at(document, path):
    for key in path:
        document = document[key]
    return document


@st.composite
def spoiled(draw) -> tuple[str, list[str]]:
    """The seed file spoiled one to four times; its YAML text and what was done, for the failure message."""
    document = seed_document()
    done = []
    for _ in range(draw(st.integers(1, 4))):
        places = list(_paths(document))
        path, node = places[draw(st.integers(0, len(places) - 1))]
        how = draw(st.sampled_from(["replace", "replace", "remove", "add", "rename"]))
        if how == "replace" and path:
            _at(document, path[:-1])[path[-1]] = value = draw(VALUES)
            done.append(f"{'.'.join(map(str, path))} = {value!r}")
        elif how == "remove" and path and isinstance(_at(document, path[:-1]), dict):
            del _at(document, path[:-1])[path[-1]]
            done.append(f"removed {'.'.join(map(str, path))}")
        elif how == "add" and isinstance(node, dict):
            key, value = draw(st.sampled_from(KEYS)), draw(VALUES)
            node[key] = value
            done.append(f"{'.'.join(map(str, path))}.{key} = {value!r}")
        elif how == "rename" and path and isinstance(_at(document, path[:-1]), dict):
            parent, new = _at(document, path[:-1]), draw(st.sampled_from(KEYS))
            parent[new] = parent.pop(path[-1])
            done.append(f"renamed {'.'.join(map(str, path))} to {new!r}")
    return yaml.safe_dump(document, allow_unicode=True, sort_keys=False), done


def _refused_plainly(code: int, out: str, err: str, command: str, done: list[str]) -> None:
    said = f"{command} after {done}: exit {code}\n{out}\n{err}"
    assert code in (0, 1), said
    assert "Traceback" not in out + err and "internal error" not in err.lower(), said
    if code == 1:
        assert err.startswith("flow45: ") and len(err.strip()) > len("flow45:"), said


@settings(max_examples=int(os.environ.get("FLOW45_FUZZ_EXAMPLES", "40")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(case=spoiled())
def test_a_spoiled_config_is_refused_by_name_or_deployed_and_run(flow45, tmp_path, caplog, case):
    text, done = case
    path = tmp_path / "team.yaml"
    path.write_text(text)
    code, out, err = flow45("validate", str(path))
    _refused_plainly(code, out, err, "validate", done)
    if code == 1:
        assert "team.yaml" in err, f"the problem does not name the file, after {done}:\n{err}"
        return event("refused by validate")
    code, out, err = flow45("deploy", str(path))
    _refused_plainly(code, out, err, "deploy", done)
    if code == 1:
        return event("refused by deploy")
    event("deployed")
    workflows = yaml.safe_load(text).get("workflows") or {}
    for name in workflows:  # each shown as an operator would look at it: its graph, versions (each one's
        # change from the spoiled one before), a run of it, its stats
        for command in (["graph"], ["versions"], ["trigger", "--json"], ["stats"]):
            code, out, err = flow45(*command, f"acme/{name}")
            _refused_plainly(code, out, err, f"{command[0]} {name}", done)
            if command[0] == "trigger" and code == 0:
                _refused_plainly(*flow45("show", str(json.loads(out)["run"])), f"show a run of {name}", done)
    with caplog.at_level(logging.ERROR):
        for day in (dt.datetime(2028, 2, 29, 1, 59), dt.datetime(2026, 3, 29, 0, 59), dt.datetime(2026, 12, 31, 23)):
            tick(day)  # the scheduler's own: February's 29th, a DST change, New Year's Eve
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], f"the tick logged errors after {done}"


def test_the_seed_itself_deploys_and_runs(flow45, tmp_path):
    """The fuzzer's starting point is a valid team file: spoiling it tests refusals, not a typo."""
    path = write_seed(tmp_path / "team.yaml")
    assert flow45("validate", str(path))[0] == 0
    code, out, err = flow45("deploy", str(path))
    assert code == 0, err
    assert "nightly" in out and "monthly" in out
    code, out, err = flow45("trigger", "acme/nightly")
    assert code == 0, err
