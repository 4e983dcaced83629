"""Hostile command lines through `flow45`'s own parser and commands, on SQLite and PostgreSQL.

Each example is one command of the operator's tools (reads, changes, human tasks, callbacks, bulk,
backfill, prune), its arguments drawn from what its parser declares: each option and positional may be
left out, given twice, or given a hostile value (another team's workflow, an id that does not exist or
is huge, a date that never was, a JSON that is not one, text far too long), and unknown options slip
in. Against a store with a run waiting for a human decision, a failed one and a cancelled one, whatever
the arguments: the command exits 0, 1 (refused, saying why) or 2 (a usage error, with the command's
usage), or `wait`'s codes of a run's outcome, never a traceback.
"""

from __future__ import annotations

import argparse
import os

import pytest
from hypothesis import HealthCheck, event, given, settings, strategies as st

from flow45.cli import build_parser
from tests.cli.test_config_fuzz import write_seed

# Commands that serve, follow or draw until stopped, or read files given by path, are left out.
LEFT_OUT = {"tui", "demo", "serve", "bridge", "scheduler", "notify", "deploy", "validate", "db"}
FLAGS_LEFT_OUT = frozenset({"--follow", "--wait", "--export", "-h", "--help"})
COMMANDS = sorted(set(build_parser().commands) - LEFT_OUT)

IDS = ["1", "2", "3", "7", "0", "-1", "99999999", "9" * 30, "1e3", "0x10", " 1", "١"]
NAMES = ["acme/nightly", "acme/monthly", "reports/nightly", "reports/monthly", "rival/nightly", "acme/", "/nightly", "acme", "acme/nightly/x",
         "ACME/NIGHTLY", "acme/nightly ", "load", "review", "ann", "@ops", "bob"]
TIMES = ["2026-02-29", "2028-02-29", "2028-02-29T02:30", "2026-03-29T02:30:00+01:00", "2026-12-31T23:59:60",
         "2027-01-01", "1d", "90m", "-1d", "0s", "99999999d", "now", "yesterday", "2026-13-01", "0001-01-01",
         "9999-12-31T23:59:59"]
JSONS = ['{"uri": "s3://x", "size": 1}', '{"approved": true, "reviewer": "ann"}', "{}", "[]", "null", "{",
         '{"uri": 1e400}', '{"size": NaN}', '{"a": {"a": {"a": {"a": {"a": 1}}}}}', '{"password": "hunter2"}',
         '"just text"', '{"uri": "' + "x" * 70_000 + '"}']
PAIRS = ["month=2026-02", "day=2028-02-29", "region=emea", "=x", "x", "a==b", "day=", "region=mars"]
TEXTS = ["", " ", "why not", "é" * 5000, "\u202egnp.exe", "line\nbreak", "--reason", "-x", "%s%n", "${HOME}"]
VALUES = st.sampled_from(IDS + NAMES + TIMES + JSONS + PAIRS + TEXTS)


KINDS = {  # values of the kind an argument takes, by its name: mostly those, so that most get past the parser
    "run": IDS, "instance": IDS, "limit": IDS, "after": IDS, "runs": IDS, "priority": IDS, "version": IDS,
    "since": TIMES, "until": TIMES, "logical_time": TIMES, "start": TIMES, "end": TIMES, "finished_before": TIMES,
    "as_of": TIMES + IDS, "workflow": NAMES, "team": NAMES, "task": NAMES, "user": NAMES, "for_user": NAMES,
    "actor": NAMES, "output": JSONS, "params": JSONS, "param": PAIRS, "reason": TEXTS, "text": TEXTS,
    "comment": TEXTS, "key": TEXTS + NAMES,
}


def _argument(action: argparse.Action) -> st.SearchStrategy:
    if action.choices:  # mostly a choice it declares, sometimes one it does not
        return st.one_of(st.sampled_from(sorted(map(str, action.choices))), VALUES)
    kind = KINDS.get(action.dest)
    return st.one_of(st.sampled_from(kind), st.sampled_from(kind), st.sampled_from(kind), VALUES) if kind else VALUES


@st.composite
def command_lines(draw, name: str, left_out: frozenset[str] = frozenset()) -> list[str]:
    """`name`'s arguments, drawn from its parser; the options in `left_out` never given."""
    parser = build_parser().commands[name]
    left_out = FLAGS_LEFT_OUT | left_out
    argv = [name]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):  # `callback complete|fail`
            action_name = draw(st.sampled_from(sorted(action.choices)))
            argv.append(action_name)
            for inner in action.choices[action_name]._actions:
                argv += draw(_given(inner, left_out))
        else:
            argv += draw(_given(action, left_out))
    if draw(st.integers(0, 9)) == 0:
        argv.append(draw(st.sampled_from(["--nope", "--json=maybe", "extra", "--as"])))
    if name == "wait":  # the last --timeout counts: a running run is waited for a moment only
        argv += ["--timeout", "0.3"]
    return argv


@st.composite
def _given(draw, action: argparse.Action, left_out: frozenset[str]) -> list[str]:
    if any(flag in left_out for flag in action.option_strings) or action.dest == "help":
        return []
    if not action.option_strings:  # a positional: given, mostly
        return [draw(_argument(action))] if draw(st.integers(0, 7)) else []
    if draw(st.integers(0, 2)) == 0 and not action.required:
        return []
    flag = action.option_strings[-1]
    times = draw(st.sampled_from([1, 1, 1, 2]))
    if action.nargs == 0:
        return [flag] * times
    return [part for _ in range(times) for part in (flag, draw(_argument(action)))]


def fill_store(tmp_path, team: str) -> None:
    """The team's seed workflows deployed, with runs: one whose human task waits, one failed, one cancelled."""
    from flow45 import store
    from flow45.config import load_config
    from tests.store.helpers import instance

    store.deploy(load_config(write_seed(tmp_path / f"{team}.yaml", team)), actor="ann")
    runs = [store.trigger(team, "monthly", actor="ann") for _ in range(3)]
    total = instance(runs[0], "sum")
    granted = store.claim(total.id, total.token, "w")
    store.submit(granted.instance, granted.token, {"uri": "s3://sum", "size": 3})
    failing = instance(runs[1], "sum")
    granted = store.claim(failing.id, failing.token, "w")
    store.fail(granted.instance, granted.token, "no data", retryable=False)
    store.cancel_run(runs[2], actor="ann", reason="not needed")


@pytest.fixture
def busy_store(flow45, tmp_path):
    fill_store(tmp_path, "acme")
    return flow45


@pytest.mark.parametrize("command", COMMANDS)  # each command its share of examples
@settings(max_examples=int(os.environ.get("FLOW45_FUZZ_EXAMPLES", "8")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_command_line_is_done_or_refused_plainly(busy_store, command, data):
    assert_done_or_refused_plainly(busy_store, command, data.draw(command_lines(command), label="argv"))


def assert_done_or_refused_plainly(flow45, command: str, argv: list[str]) -> None:
    code, out, err = flow45(*argv)
    event(f"exit {code}")
    said = f"flow45 {argv!r}: exit {code}\n{out[-2000:]}\n{err[-2000:]}"
    assert code in ((0, 1, 2, 3, 4, 5) if command == "wait" else (0, 1, 2)), said  # wait: 3-5 say the outcome
    assert "Traceback" not in out + err, said
    if code == 1:
        assert err.startswith("flow45: ") and err.strip() != "flow45:", said
    if code == 2:
        assert f"flow45 {argv[0]}" in err and "error: " in err, said
