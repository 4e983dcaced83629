"""Random sequences of worker and operator actions against the store, on SQLite and PostgreSQL.

A hypothesis state machine drives a fan-out/fan-in workflow (a -> b, a -> c, (b, c) -> d; c is
`optional`: failed for good, it is skipped at once; e, after b and d, is a teardown, `trigger_rule:
all_done`, that goes once they have ended, failed too, or never will run; r, after a and b, is a
compensation, `trigger_rule: one_failed`, that goes once one of them has failed for good, and is skipped
once both are done; j, after c and h, is a join, `trigger_rule: none_failed_min_one_success`, skipped
when both were; k, after b and c, goes with the first of them to succeed, `trigger_rule: one_success`,
and is upstream of the teardown; s, after c and h, is their fallback, `trigger_rule: all_skipped`,
offered only when both were skipped; f, after b and d, is an alert, `trigger_rule: all_failed`, that
waits for both to end and goes only when both failed for good or never run; n, after b and c, goes once
both have ended, `trigger_rule: none_skipped`, and only when neither was skipped) through
claims (named and polling) with current, stale and bogus tokens, progress, valid and invalid submits,
message replays, failures, worker and operator skips, undo (with and without hold, and dry runs),
hold/release, retry, cancel, lease expiry and due retries, a human task after a (taken, taken
over, handed back and decided by allowed and refused people, reminded, and submitted with its default
output when overdue), a timer (`t`, `wait: 60s`) that fires when due, and callbacks (a worker parks
its attempt, with or without a deadline; a key's holder completes or fails it, with current, ended,
bogus and other teams' keys), and a connected workflow (`follow`, started by each fan run that succeeds,
its params from d's output; undo of a fan run with and without cancelling the runs it started),
on a fake clock. Worker messages go
through the per-message verbs or the bridge's set-based batch path (`apply_worker_batch`, taking the
runs kept from its earlier batches as a bridge does, `flow45.store.run_cache`), alone or several to a
batch. Each action's outcome is predicted from the tables as they were before it (which refusal, or
which new state), and after every action the tables are checked straight:

- at most one running attempt per instance, only while it is running, under its current token;
- a callback key only on a running attempt, new only from a `park`, gone once the attempt ends;
  a timer waits exactly `wait` from when it became ready, and only fires when due;
- terminal states (succeeded/failed/skipped) change only through undo or retry (or an operator
  skipping a failed instance); cancelled never changes;
- available/running only when every upstream instance of the run is succeeded or skipped (for the
  teardown, ended; for the compensation, one failed), and nothing ready is left pending in a started run;
  the compensation is let go only after a failure and skipped only without one (unless an operator asks);
  an operator's retry, skip or output of a failure takes back the teardown or compensation it let go while
  only offered (the compensation skipped if nothing failed now), and is refused once it has started;
- the run's status agrees with its instances;
- a connected run starts exactly when a fan run reaches succeeded, in that action, one per success,
  with d's output uri as its param; an undo's plan lists the runs the run started, and cancels the
  unfinished ones when asked (in the same action), leaving them alone otherwise;
- the ledger only grows, ids increase, and every state change of an instance or run is a chain of
  events whose moves are in the transition table;
- one offer row for each time an instance became available, with its attempt, token and inputs;
  undo notices exactly for the `undo: notify` outputs an undo superseded;
- a refused action, a dry run or a replayed message changes nothing at all;
- the run as it was (`flow45 show --as-of`): after each action, each run's state rebuilt from the
  ledger up to the newest event equals the live one, and at the end of the example every recorded
  state is rebuilt again through `store.run_as_of` at its event id.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, precondition, rule, run_state_machine_as_test

from flow45 import messages as m
from flow45 import states as S
from flow45 import store
from flow45.config import load_config
from flow45.db import database
from flow45.errors import IllegalTransition, InvalidOutput, NotAllowed, NotFound, StaleToken
from flow45.models import Outbox, ProcessedMessage, TaskInstance
from flow45.store.asof import replay, run_events
from flow45.store.batch import Item, apply_taking_kept
from flow45.store.run_cache import RunCache
from tests.store.helpers import T0, fresh_store
from tests.store.machine import failure_upstream, read_tables as machine_tables, ready, rows_of, run_status

CONFIG = """\
team: acme
types:
  Blob:
    fields: {uri: string, size: {type: integer, ge: 0}}
workflows:
  fan:
    max_active_runs: 1
    tasks:
      a: {function: fa, output: Blob, retries: 2, retry_delay: 10s, lease: 30s}
      b: {function: fb, output: Blob, inputs: {src: a}, retries: 1, retry_delay: 0s, lease: 60s}
      c: {function: fc, output: Blob, inputs: {src: a}, retries: 1, retry_delay: 20s, undo: notify, optional: true}
      t: {wait: 60s, after: [a]}
      d: {function: fd, output: Blob, inputs: {left: b, right: c}, after: [t], lease: 45s}
"""

# The machine's workflow adds a teardown and a human task, and a workflow connected to fan; the regression
# examples below use CONFIG alone.
MACHINE_CONFIG = CONFIG.replace("team: acme\n", "team: acme\ngroups:\n  ops: [bob]\n").replace(
    "workflows:\n", "  Found:\n    fields: {uri: {type: string, optional: true}}\nworkflows:\n") + """\
      e: {function: fe, output: Blob, inputs: {src: b}, after: [d, k], trigger_rule: all_done, lease: 40s}
      r: {function: fr, output: Blob, inputs: {src: b}, after: [a], trigger_rule: one_failed, lease: 40s}
      j: {function: fj, output: Blob, inputs: {src: c}, after: [h], trigger_rule: none_failed_min_one_success}
      k: {function: fk, output: Blob, inputs: {src: b}, after: [c], trigger_rule: one_success}
      s: {function: fs, output: Blob, after: [c, h], trigger_rule: all_skipped}
      f: {function: ff, output: Blob, after: [b, d], trigger_rule: all_failed}
      n: {function: fn, output: Blob, after: [b, c], trigger_rule: none_skipped}
      h: {function: fh, output: Blob, human: true, inputs: {src: a}, assignees: [ann, "@ops"], due: 10m,
          reminders: [5m], overdue: {default: {uri: "s3://default", size: 0}}}
  follow:
    params: Found
    on: {workflow: acme/fan, state: succeeded, params: {uri: d.uri}}
    tasks:
      z: {function: fz, output: Blob}
"""

# The model's own copy of the workflow, independent of the store's parsing.
INPUTS = {"a": {}, "b": {"src": "a"}, "c": {"src": "a"}, "t": {}, "d": {"left": "b", "right": "c"}, "e": {"src": "b"},
          "h": {"src": "a"}, "r": {"src": "b"}, "j": {"src": "c"}, "k": {"src": "b"}, "s": {}, "f": {}, "n": {},
          "z": {}}
AFTER = {"t": ["a"], "d": ["t"], "e": ["d", "k"], "r": ["a"], "j": ["h"], "k": ["c"], "s": ["c", "h"], "f": ["b", "d"],
         "n": ["b", "c"]}
UPSTREAM = {task: sorted(set(inputs.values()) | set(AFTER.get(task, []))) for task, inputs in INPUTS.items()}
DOWNSTREAM = {task: [t for t, ups in UPSTREAM.items() if task in ups] for task in INPUTS}
RETRIES = {"a": 2, "b": 1, "c": 1, **dict.fromkeys(["t", "d", "e", "h", "r", "j", "k", "s", "f", "n", "z"], 0)}
RETRY_DELAY = {"a": 10, "b": 0, "c": 20, "d": 30, **dict.fromkeys(["t", "e", "h", "r", "j", "k", "s", "f", "n", "z"], 0)}
NOTIFY = {"c"}
OPTIONAL = {"c"}  # failed for good, skipped at once
ALL_DONE = frozenset({"e"})  # goes once its upstream has ended, failed too
ALL_FAILED = frozenset({"f"})  # waits as the teardown does; offered only when every upstream failed or never runs
NONE_SKIPPED = frozenset({"n"})  # waits as the teardown does; skipped when an upstream was skipped
ENDED = ALL_DONE | ALL_FAILED | NONE_SKIPPED  # wait for every upstream to end, failed too
ONE_FAILED = frozenset({"r"})  # goes once an upstream has failed for good; skipped once all are done
MIN_ONE_SUCCESS = frozenset({"j"})  # as all_success, but skipped when every upstream was skipped
ONE_SUCCESS = frozenset({"k"})  # goes once one upstream has succeeded; skipped when every upstream was skipped
ALL_SKIPPED = frozenset({"s"})  # as all_success, but offered only when every upstream was skipped
FUNCTIONS = {"a": "fa", "b": "fb", "c": "fc", "t": "", "d": "fd", "e": "fe", "h": "fh", "r": "fr", "j": "fj",
             "k": "fk", "s": "fs", "f": "ff", "n": "fn", "z": "fz"}
DECIDERS = {"ann", "bob"}  # h's assignees, @ops expanded
HUMAN_DUE, HUMAN_REMINDER = dt.timedelta(minutes=10), dt.timedelta(minutes=5)
TIMERS = {"t": dt.timedelta(seconds=60)}

TERMINAL = {S.SUCCEEDED, S.FAILED, S.SKIPPED}
DONE = {S.SUCCEEDED, S.SKIPPED}
FINISHED = {S.SUCCEEDED, S.FAILED, S.CANCELLED}


def _upstream(task: str, siblings: dict[str, dict]) -> set[str]:
    return {siblings[up]["state"] for up in UPSTREAM[task]}


def _failure(task: str, siblings: dict[str, dict]) -> bool:
    return failure_upstream(task, siblings, UPSTREAM, ENDED | ONE_FAILED, ONE_SUCCESS)


# For each task with a trigger rule that skips: when it may be skipped for its rule, and when it may be
# offered as it becomes ready (its upstream ended; each, given the task and its run's instances by task).
# The all-ended rules are ready only once every upstream ended, so what is not done failed or never runs.
RULE_WORDS = {
    "r": (lambda t, run: not _failure(t, run), _failure),  # one_failed
    "j": (lambda t, run: _upstream(t, run) == {S.SKIPPED}, lambda t, run: _upstream(t, run) != {S.SKIPPED}),
    "k": (lambda t, run: _upstream(t, run) == {S.SKIPPED}, lambda t, run: S.SUCCEEDED in _upstream(t, run)),
    "s": (lambda t, run: S.SUCCEEDED in _upstream(t, run), lambda t, run: _upstream(t, run) == {S.SKIPPED}),
    "f": (lambda t, run: bool(DONE & _upstream(t, run)), lambda t, run: not DONE & _upstream(t, run)),
    "n": (lambda t, run: S.SKIPPED in _upstream(t, run), lambda t, run: S.SKIPPED not in _upstream(t, run)),
}
REFUSALS = (StaleToken, IllegalTransition, NotFound, InvalidOutput, NotAllowed)
KEY = st.sampled_from(["current", "current", "current", "ended", "bogus", "rival"])

# Sized for the suite's ten minutes on a 2-core machine (README); raise them to hunt harder.
MAX_EXAMPLES = int(os.environ.get("FLOW45_PROPERTY_EXAMPLES", "16"))
STEPS = int(os.environ.get("FLOW45_PROPERTY_STEPS", "60"))

PICK = st.integers(0, 63)
PREFER = st.sampled_from([True, True, True, False])  # mostly an instance the action fits
TOKEN = st.sampled_from(["current", "current", "current", "current", "stale", "bogus"])
TEAM = st.sampled_from(["acme", "acme", "acme", "acme", "rival", "acme", "acme", "acme", None, "acme"])
NEW_MESSAGE = st.sampled_from([False, False, True])
VIA = st.sampled_from(["verb", "batch"])  # the per-message verbs, or the bridge's batch path


def siblings_states(siblings: dict[str, dict]) -> dict[str, str]:
    return {task: row["state"] for task, row in sorted(siblings.items())}


def descendants(task: str) -> set[str]:
    found: set[str] = set()
    frontier = list(DOWNSTREAM[task])
    while frontier:
        name = frontier.pop()
        if name not in found:
            found.add(name)
            frontier += DOWNSTREAM[name]
    return found


def worker_message(kind: str, iid: int, token: str, args: dict):
    common = {"instance": iid, "token": token}
    if kind == "claim":
        return m.Claim(type="claim", worker="worker", **common)
    if kind == "progress":
        return m.Progress(type="progress", percent=args["percent"], message="working", **common)
    if kind == "submit":
        return m.Submit(type="submit", output=args["output"], **common)
    if kind == "fail":
        return m.Fail(type="fail", error="boom", retryable=args["retryable"], **common)
    if kind == "park":
        return m.Park(type="park", deadline_seconds=args["deadline"], **common)
    return m.Skip(type="skip", reason="nothing to do", **common)


def read_tables() -> dict:
    """Everything the checks need, straight from the tables."""
    return {
        **machine_tables(),
        "outbox": rows_of(Outbox),
        "messages": ProcessedMessage.select().count(),
    }


class Expect:
    """What an action should do: be refused with `refusal`, or succeed; `states` maps instance ids
    to the state each must have afterwards."""

    def __init__(self, refusal=None, states=None):
        self.refusal = refusal
        self.states = states or {}


class StoreMachine(RuleBasedStateMachine):
    url: str
    backend: str
    config: list
    workdir: Path
    examples = 0

    def __init__(self):
        super().__init__()
        cls = type(self)
        cls.examples += 1
        self.db_file = self.workdir / f"example-{cls.examples}.db"
        fresh_store(self.backend, self.url, self.db_file)
        store.deploy(self.config, actor="tester", now=T0)
        self.now = T0
        self.tokens: dict[int, list[str]] = {}
        self.messages: list[dict] = []  # worker messages sent with a message_id, for replays
        self.applied: set[str] = set()  # message keys whose change took effect
        self.counter = 0
        self.kept = RunCache()  # the batch path's runs kept between batches, as a bridge keeps them
        self.keys: list[str] = []  # callback keys handed out, current or ended
        self.steps = 0  # actions so far: gates the disruptive operator rules to some steps only
        self.tables = read_tables()
        self.as_was: dict[tuple[int, int], tuple] = {}  # (run, ledger event id) -> the live state then
        self.last_live: dict[int, tuple] = {}  # run -> its live state at its last replay check
        self.act("trigger", None, lambda: store.trigger("acme", "fan", actor="ann", now=self.now), Expect())

    def teardown(self):
        try:
            self.check_as_of_everywhere()
        finally:
            database.close()
            self.cleanup()

    def cleanup(self):
        if self.backend == "sqlite":
            for suffix in ("", "-wal", "-shm"):
                Path(f"{self.db_file}{suffix}").unlink(missing_ok=True)

    # ---- helpers -------------------------------------------------------------------------------

    @property
    def instances(self) -> dict[int, dict]:
        return self.tables["instances"]

    def run_of(self, iid: int) -> dict:
        return self.tables["runs"][self.instances[iid]["run"]]

    def by_task(self, run_id: int) -> dict[str, dict]:
        return {i["task"]: i for i in self.instances.values() if i["run"] == run_id}

    def waits_for_slot(self, run_id: int, changed: dict[int, str]) -> bool:
        """Whether an operator's change (`changed`: instance -> its state after) gives a finished fan run
        work again while fan's one slot (max_active_runs: 1) is taken: it then waits queued."""
        runs, run = self.tables["runs"], self.tables["runs"][run_id]
        if run["trigger"] == "connected" or run["status"] not in (S.SUCCEEDED, S.FAILED):
            return False
        not_done = [changed.get(i, r["state"]) for i, r in self.instances.items() if r["run"] == run_id]
        not_done = [state for state in not_done if state not in DONE]
        return bool(not_done) and S.FAILED not in not_done and any(
            r["status"] == S.RUNNING and r["trigger"] != "connected" for r in runs.values())

    def upstream_done(self, iid: int) -> bool:
        row = self.instances[iid]
        return ready(row["task"], self.by_task(row["run"]), UPSTREAM, ENDED, ONE_FAILED, ONE_SUCCESS)

    def unfailed(self, iid: int, becomes: str) -> dict[int, str] | None:
        """An operator's retry or skip of failed `iid`, as `becomes`: the teardown or compensation its failure
        let go goes back to pending if only offered and it must now wait, or the compensation is skipped when
        nothing failed now (instance -> its state after); None, refused, if it has started."""
        row = self.instances[iid]
        siblings = self.by_task(row["run"])
        after = {**siblings, row["task"]: {**row, "state": becomes}}
        moved = {}
        for task in (ENDED | ONE_FAILED) & descendants(row["task"]):
            teardown = siblings[task]
            if teardown["state"] in (S.PENDING, S.HELD, S.CANCELLED) or self.offered_after(task, after):
                continue
            if teardown["state"] not in (S.AVAILABLE, S.QUEUED, S.WAITING):
                return None
            moved[teardown["id"]] = S.SKIPPED if ready(task, after, UPSTREAM, ENDED, ONE_FAILED, ONE_SUCCESS) else S.PENDING
        return moved

    @staticmethod
    def offered_after(task: str, siblings: dict[str, dict]) -> bool:
        """Whether a task whose upstream ended as `siblings` say is offered (not skipped for its trigger rule)."""
        return ready(task, siblings, UPSTREAM, ENDED, ONE_FAILED, ONE_SUCCESS) and (
            task not in ONE_FAILED or failure_upstream(task, siblings, UPSTREAM, ENDED | ONE_FAILED, ONE_SUCCESS)) and (
            task not in ONE_SUCCESS or any(siblings[up]["state"] == S.SUCCEEDED for up in UPSTREAM[task])) and (
            task not in ALL_FAILED or not any(siblings[up]["state"] in DONE for up in UPSTREAM[task])) and (
            task not in NONE_SKIPPED or not any(siblings[up]["state"] == S.SKIPPED for up in UPSTREAM[task]))

    def choose(self, pick: int, prefer: bool, fits) -> int:
        ids = sorted(self.instances)
        fitting = [i for i in ids if fits(self.instances[i])]
        pool = fitting if prefer and fitting else ids
        return pool[pick % len(pool)]

    def token_for(self, iid: int, which: str, pick: int) -> str:
        current = self.instances[iid]["token"]
        if which == "current" and current:
            return current
        stale = [t for t in self.tokens.get(iid, []) if t != current]
        if which == "stale" and stale:
            return stale[pick % len(stale)]
        return "bogus-token"

    def message_id(self, new: bool) -> str | None:
        if not new:
            return None
        self.counter += 1
        return f"msg-{self.counter}"

    def advance(self, seconds: int) -> None:
        self.now += dt.timedelta(seconds=seconds)

    # ---- the one way an action runs: predicted, applied, checked ------------------------------

    def act(self, kind: str, target: int | None, call, expect: Expect, *, duplicate: bool = False,
            affected: set[int] | None = None):
        self.steps += 1
        before = self.tables
        try:
            result, refused = call(), None
        except REFUSALS as exc:
            result, refused = None, exc
        after = read_tables()
        where = f"{kind} on {target} at {self.now:%H:%M:%S}"
        if expect.refusal is None:
            assert refused is None, f"{where}: expected success, got {type(refused).__name__}: {refused}"
        else:
            assert isinstance(refused, expect.refusal), f"{where}: expected {expect.refusal.__name__}, got {refused!r}"
        if refused is not None or duplicate:
            assert after == before, f"{where}: a refused or duplicate action changed the tables"
        if duplicate:
            assert result is not None and result.duplicate, f"{where}: a replay was not answered as a duplicate"
        for iid, state in expect.states.items():
            assert after["instances"][iid]["state"] == state, (
                f"{where}: instance {iid} is {after['instances'][iid]['state']}, expected {state}"
            )
        self.check(before, after, kind, target, refused is None, affected or set(), where)
        self.check_replay(after, where)
        self.tables = after
        for iid, row in after["instances"].items():
            if row["token"] and row["token"] not in self.tokens.setdefault(iid, []):
                self.tokens[iid].append(row["token"])
        return result, refused

    # ---- the checks ---------------------------------------------------------------------------

    def check(self, before, after, kind, target, applied, affected, where):
        runs, instances, attempts = after["runs"], after["instances"], after["attempts"]

        # Attempts: at most one running per instance, only while it runs, under its token.
        running: dict[int, list[dict]] = {}
        numbers = set()
        for a in attempts.values():
            assert (a["instance"], a["number"]) not in numbers, f"{where}: attempt number reused: {a}"
            numbers.add((a["instance"], a["number"]))
            assert a["number"] <= instances[a["instance"]]["attempt"], f"{where}: attempt ahead of instance: {a}"
            if a["status"] == "running":
                running.setdefault(a["instance"], []).append(a)
        for iid, row in instances.items():
            live = running.get(iid, [])
            if row["state"] == S.RUNNING:
                assert len(live) == 1, f"{where}: running instance {iid} has {len(live)} running attempts"
                assert live[0]["token"] == row["token"] and live[0]["number"] == row["attempt"], where
                assert not live[0]["archived"], where
                assert row["lease_expires_at"] is not None or row["callback_key"], f"{where}: no lease, not parked"
            else:
                assert not live, f"{where}: {row['state']} instance {iid} has a running attempt"
            if row["state"] in (S.AVAILABLE, S.RUNNING, S.WAITING):
                assert row["token"], f"{where}: {row['state']} instance {iid} has no token"
            # Callback keys: only on a running attempt; a new one only from `park`.
            old = before["instances"].get(iid)
            if row["callback_key"] is not None:
                assert row["state"] == S.RUNNING, f"{where}: {row['state']} instance {iid} keeps a callback key"
                if old is None or old["callback_key"] != row["callback_key"]:
                    assert kind == "park" and applied and iid == target, f"{where}: instance {iid} got a key"
                    assert old["callback_key"] is None, f"{where}: instance {iid} parked twice"
            # A timer waits `wait` from when it became ready; it is not offered to workers.
            if row["state"] == S.WAITING and (old is None or (old["state"], old["attempt"]) != (S.WAITING, row["attempt"])):
                assert row["not_before"] == self.now + TIMERS[row["task"]], f"{where}: timer {iid} due {row['not_before']}"
            outputs = [a for a in attempts.values()
                       if a["instance"] == iid and a["status"] == "succeeded" and not a["archived"]]
            assert len(outputs) == (1 if row["state"] == S.SUCCEEDED else 0), (
                f"{where}: {row['state']} instance {iid} has {len(outputs)} current outputs"
            )

        # Terminal states change only through undo, retry, or an operator skipping a failed instance.
        for iid, old in before["instances"].items():
            was, now = old["state"], instances[iid]["state"]
            if was == now:
                continue
            assert was != S.CANCELLED, f"{where}: cancelled instance {iid} became {now}"
            if was in TERMINAL:
                allowed = (
                    (kind == "undo" and applied and iid in affected)
                    or (kind == "retry" and applied and iid == target and was == S.FAILED
                        and now in (S.AVAILABLE, S.PENDING))
                    or (kind == "op_skip" and applied and iid == target and was == S.FAILED and now == S.SKIPPED)
                )
                assert allowed, f"{where}: instance {iid} went {was} -> {now}"

        # Upstream: offered or running only when every upstream is done; nothing ready left pending.
        for iid, row in instances.items():
            run = runs[row["run"]]
            siblings = {i["task"]: i for i in instances.values() if i["run"] == row["run"]}
            goes = ready(row["task"], siblings, UPSTREAM, ENDED, ONE_FAILED, ONE_SUCCESS)
            if row["state"] in (S.AVAILABLE, S.RUNNING, S.WAITING):
                assert goes, f"{where}: instance {iid} ({row['task']}) is {row['state']} before its upstream is done"
                # Running in a queued run: an attempt of a failed run given work again while the slot was taken.
                assert run["status"] != S.CANCELLED and (run["status"] != S.QUEUED or row["state"] == S.RUNNING), (
                    f"{where}: {row['state']} in a {run['status']} run")
            if row["state"] == S.PENDING and run["status"] in (S.RUNNING, S.FAILED, S.SUCCEEDED):
                assert not goes, f"{where}: instance {iid} ({row['task']}) is ready but left pending"

        # Each trigger rule's own words: an instance is skipped for its rule, or offered as it becomes ready,
        # only when its upstream ended as the rule says (RULE_WORDS). A worker's or an operator's skip, or an
        # operator's undo, are theirs.
        for e in after["events"][len(before["events"]):]:
            row = instances.get(e["instance"])
            if row is None or row["task"] not in RULE_WORDS:
                continue
            skipped = e["to_state"] == S.SKIPPED and "trigger_rule" in (e["detail"] or {})
            offered = e["to_state"] == S.AVAILABLE and e["kind"] in ("ready", "release")
            if skipped or offered:
                siblings = {i["task"]: i for i in instances.values() if i["run"] == row["run"]}
                may_skip, may_offer = RULE_WORDS[row["task"]]
                assert (may_skip if skipped else may_offer)(row["task"], siblings), (
                    f"{where}: {row['id']} ({row['task']}) {'skipped for its rule' if skipped else 'offered'}: "
                    f"{siblings_states(siblings)}")

        # The run's status agrees with its instances.
        for rid, run in runs.items():
            mine = [i["state"] for i in instances.values() if i["run"] == rid]
            status = run["status"]
            if status == S.CANCELLED:
                assert all(s in TERMINAL | {S.CANCELLED} for s in mine), f"{where}: cancelled run {rid}: {mine}"
            elif status == S.QUEUED:
                # Nothing offered; done before, or attempts running then (and what they came to), if it ran before.
                offered = {S.AVAILABLE, S.WAITING, S.QUEUED}
                assert not offered & set(mine), f"{where}: queued run {rid}: {mine}"
                assert run["started_at"] is not None or set(mine) <= {S.PENDING, S.HELD, S.SKIPPED}, (
                    f"{where}: queued run {rid}, never started: {mine}")
                assert any(r["status"] == S.RUNNING for r in runs.values()), f"{where}: run {rid} queued, none running"
            else:
                assert S.CANCELLED not in mine, f"{where}: {status} run {rid} has cancelled instances"
                expected = run_status(mine, before["runs"].get(rid, {}).get("status"))
                assert status == expected, f"{where}: run {rid} is {status} but its instances say {expected}: {mine}"
            finished = status in (S.SUCCEEDED, S.FAILED, S.CANCELLED)
            assert (run["finished_at"] is not None) == finished, f"{where}: run {rid} finished_at vs {status}"

        # Connected runs: one started with each fan run's success, in that action, and no other way.
        started = {rid: run for rid, run in runs.items() if rid not in before["runs"] and run["upstream_run"]}
        succeeded = [e["run"] for e in after["events"][len(before["events"]):]
                     if e["instance"] is None and e["to_state"] == S.SUCCEEDED and e["run"] not in started
                     and runs[e["run"]]["trigger"] != "connected"]
        assert sorted(r["upstream_run"] for r in started.values()) == sorted(succeeded), (
            f"{where}: runs {sorted(succeeded)} succeeded, connected runs started for {started}")
        for rid, run in started.items():
            d = self.siblings_in(instances, run["upstream_run"])["d"]
            uri = next((a["output"]["uri"] for a in attempts.values() if a["instance"] == d["id"]
                        and a["status"] == "succeeded" and not a["archived"]), None)
            assert run["trigger"] == "connected" and run["params"] == {"uri": uri}, (  # null: d did not succeed
                f"{where}: connected run {rid}: {run['trigger']} {run['params']}, d gave {uri}")

        # The ledger only grows, with increasing ids; every change is a chain of legal moves.
        old_events = before["events"]
        assert after["events"][: len(old_events)] == old_events, f"{where}: the ledger was rewritten"
        new_events = after["events"][len(old_events):]
        last = old_events[-1]["id"] if old_events else 0
        for e in new_events:
            assert e["id"] > last, f"{where}: event ids do not increase"
            last = e["id"]
        for iid, row in instances.items():
            was = before["instances"][iid]["state"] if iid in before["instances"] else S.PENDING
            moves = [e for e in new_events if e["instance"] == iid and e["to_state"] is not None]
            for e in moves:
                assert e["from_state"] == was, f"{where}: instance {iid} event {e['id']} from {e['from_state']}, was {was}"
                assert e["to_state"] in S.INSTANCE_MOVES[was], f"{where}: illegal move {was} -> {e['to_state']}"
                was = e["to_state"]
            assert was == row["state"], f"{where}: instance {iid} is {row['state']}, its events end at {was}"
        for rid, run in runs.items():
            was = before["runs"][rid]["status"] if rid in before["runs"] else None
            for e in new_events:
                if e["run"] == rid and e["instance"] is None and e["to_state"] is not None:
                    assert e["from_state"] == was, f"{where}: run {rid} event from {e['from_state']}, was {was}"
                    if was is not None:
                        assert e["to_state"] in S.RUN_MOVES[was], f"{where}: illegal run move {was} -> {e['to_state']}"
                    was = e["to_state"]
            assert was == run["status"], f"{where}: run {rid} is {run['status']}, its events end at {was}"

        # One offer for each time an instance became available, with that attempt, token and inputs.
        old_outbox = before["outbox"]
        assert after["outbox"][: len(old_outbox)] == old_outbox, f"{where}: the outbox was rewritten"
        new_rows = after["outbox"][len(old_outbox):]
        outputs = {a["instance"]: a["output"] for a in attempts.values() if a["status"] == "succeeded" and not a["archived"]}
        for iid, row in instances.items():
            offers = [o for o in new_rows if o["kind"] == "offer" and o["instance"] == iid]
            became = [e for e in new_events if e["instance"] == iid and e["to_state"] == S.AVAILABLE
                      and not row["human"]]  # people are not offered human tasks
            if row["human"] and row["state"] == S.AVAILABLE:  # due counts from when it became available
                assert row["due_at"] == row["offered_at"] + HUMAN_DUE, f"{where}: human task {iid} due {row['due_at']}"
                assert row["taken_by"] in DECIDERS | {None}, f"{where}: human task {iid} taken by {row['taken_by']}"
            assert len(offers) == len(became), f"{where}: instance {iid} became available {len(became)}x, {len(offers)} offers"
            for o in offers:
                assert row["state"] == S.AVAILABLE, f"{where}: offer for instance {iid} that is {row['state']}"
                body = o["body"]
                assert (body["attempt"], body["token"]) == (row["attempt"], row["token"]), f"{where}: offer body {body}"
                siblings = self.siblings_in(instances, row["run"])
                want = {param: outputs.get(siblings[up]["id"]) for param, up in INPUTS[row["task"]].items()}
                assert body["inputs"] == want, f"{where}: offer inputs {body['inputs']} != {want}"
                assert o["routing_key"] == f"acme.{FUNCTIONS[row['task']]}", where

        # Undo notices exactly for the `undo: notify` outputs the undo superseded, with that output.
        notices = {o["instance"]: o for o in new_rows if o["kind"] == "undo"}
        expected_notices = {}
        if kind == "undo" and applied:
            old_outputs = {a["instance"]: a["output"] for a in before["attempts"].values()
                           if a["status"] == "succeeded" and not a["archived"]}
            for iid in affected:
                old = before["instances"][iid]
                if old["state"] == S.SUCCEEDED and old["task"] in NOTIFY:
                    expected_notices[iid] = old_outputs[iid]
            for a in attempts.values():
                if a["instance"] in affected and a["id"] in before["attempts"]:
                    assert a["archived"], f"{where}: attempt {a['id']} of an undone instance not archived"
        assert {i: n["body"]["output"] for i, n in notices.items()} == expected_notices, f"{where}: undo notices"

    # ---- the run as it was ------------------------------------------------------------------------

    @staticmethod
    def live_state(tables, rid) -> tuple:
        run = tables["runs"][rid]
        mine = {iid: i for iid, i in tables["instances"].items() if i["run"] == rid}
        current = {(a["instance"], a["number"]): a for a in tables["attempts"].values() if not a["archived"]}
        times = {}
        for iid, i in mine.items():
            attempt = current.get((iid, i["attempt"]), {})
            times[iid] = (i["offered_at"], attempt.get("claimed_at"), attempt.get("finished_at"))
        return ((run["status"], run["started_at"], run["finished_at"]),
                {iid: (i["state"], i["attempt"], i["worker"], i["progress_pct"], times[iid]) for iid, i in mine.items()})

    @staticmethod
    def same(live: tuple, run_status: tuple, instances: dict, where: str) -> None:
        """`instances`: id -> (state, attempt, worker, progress or None, progress known, (offered, started, finished))."""
        assert run_status == live[0], f"{where}: replayed run (status, started, finished) {run_status} != live {live[0]}"
        for iid, (state, attempt, worker, pct, times) in live[1].items():
            r_state, r_attempt, r_worker, r_pct, known, r_times = instances[iid]
            assert (r_state, r_attempt, r_worker) == (state, attempt, worker), (
                f"{where}: instance {iid} replayed as {(r_state, r_attempt, r_worker)}, live {(state, attempt, worker)}")
            assert r_times == times, f"{where}: instance {iid} (offered, started, finished) replayed as {r_times}, live {times}"
            if known:
                assert r_pct == pct, f"{where}: instance {iid} progress replayed as {r_pct}, live {pct}"

    def check_replay(self, after, where):
        """Each run rebuilt from its ledger (read from the store) up to the newest event equals the live run."""
        if not after["events"]:
            return
        newest = after["events"][-1]["id"]
        touched = {e["run"] for e in after["events"][len(self.tables["events"]):]}
        for rid in after["runs"]:
            live = self.live_state(after, rid)
            if rid not in touched and self.last_live.get(rid) == live:
                continue  # no event of the run since its last check, and nothing changed: the same replay
            self.last_live[rid] = live
            ids = [iid for iid, i in after["instances"].items() if i["run"] == rid]
            state = replay(ids, run_events(rid, upto=newest))
            self.same(live, (state.status, state.started_at, state.finished_at),
                      {iid: (i.state, i.attempt, i.worker, i.progress_pct, i.progress_known,
                             (i.offered_at, i.started_at, i.finished_at))
                       for iid, i in state.instances.items()}, f"{where}, replay at event {newest}")
            self.as_was[(rid, newest)] = live

    def check_as_of_everywhere(self):
        """States recorded along the way (a dozen, spread over the example, and the last), rebuilt
        afterwards through the operator's read."""
        recorded = list(self.as_was.items())
        for (rid, event), live in recorded[:: max(1, len(recorded) // 12)] + recorded[-1:]:
            view = store.run_as_of(rid, event=event)
            known = {i.id: (i.state, i.attempt, i.worker, i.progress_pct, i.progress_pct is not None,
                            (i.offered_at, i.started_at, i.finished_at)) for i in view.instances}
            self.same(live, (view.status, view.started_at, view.finished_at), known, f"run {rid} as of event {event}")

    @staticmethod
    def siblings_in(instances, run_id):
        return {i["task"]: i for i in instances.values() if i["run"] == run_id}

    # ---- worker actions -------------------------------------------------------------------------

    def worker_call(self, kind: str, iid: int, token: str, team: str | None, message_id: str | None,
                    call, success_state):
        """Predict and apply a worker message; `success_state(row)` is the state it leads to."""
        row, run = self.instances[iid], self.run_of(iid)
        key = f"{team or '*'}/{message_id}"
        if message_id is not None and key in self.applied:
            self.act(kind, iid, call, Expect(), duplicate=True)
            return
        wanted = S.AVAILABLE if kind == "claim" else S.RUNNING
        if team not in (None, "acme"):
            expect = Expect(NotFound)
        elif row["state"] != wanted or row["token"] != token:
            expect = Expect(StaleToken)
        else:
            expect = success_state(row, run)
        _, refused = self.act(kind, iid, call, expect)
        if refused is None and message_id is not None:
            self.applied.add(key)

    def send(self, kind: str, iid: int, token: str, team: str | None, message_id: str | None, via: str, **args):
        """One worker message; remembered when it carries a message id, so it can be replayed."""
        if message_id is not None:
            self.messages.append({"kind": kind, "iid": iid, "token": token, "team": team, "id": message_id, **args})
        self.deliver(kind, iid, token, team, message_id, via, **args)

    def deliver(self, kind, iid, token, team, message_id, via, **args):
        valid = kind != "submit" or (args["output"].get("size", 0) >= 0 and set(args["output"]) == {"uri", "size"})
        outcome = {
            "claim": lambda row, run: Expect(states={iid: S.RUNNING}),
            "progress": lambda row, run: Expect(states={iid: S.RUNNING}),
            "submit": lambda row, run: Expect(states={iid: S.SUCCEEDED}) if valid else Expect(InvalidOutput),
            "fail": lambda row, run: Expect(states={iid: self.after_failure(row, args["retryable"])}),
            "skip": lambda row, run: Expect(states={iid: S.SKIPPED}),
            "park": lambda row, run: (Expect(IllegalTransition) if row["callback_key"] is not None
                                      else Expect(states={iid: S.RUNNING})),
        }[kind]
        call = self.request(kind, iid, token, team, message_id, via, args)
        self.worker_call(kind, iid, token, team, message_id, call, outcome)

    def request(self, kind, iid, token, team, message_id, via, args):
        """The call delivering a worker message: the per-message verb, or the bridge's set-based
        batch path (a batch of one; the batch path always knows the sender's team)."""
        now = self.now
        if via == "batch" and team is not None:
            message = worker_message(kind, iid, token, args)
            key = message_id or self.message_id(True)

            def batch():
                (item,), _, _ = apply_taking_kept(lambda: [Item(team, key, message)], now, self.kept)
                if item.error is not None:
                    raise item.error
                return item.result

            return batch
        common = {"now": now, "team": team, "message_id": message_id}
        return {
            "claim": lambda: store.claim(iid, token, "worker", **common),
            "progress": lambda: store.progress(iid, token, args["percent"], "working", **common),
            "submit": lambda: store.submit(iid, token, args["output"], **common),
            "fail": lambda: store.fail(iid, token, "boom", retryable=args["retryable"], **common),
            "skip": lambda: store.skip(iid, token, "nothing to do", **common),
            "park": lambda: store.park(iid, token, args["deadline"], **common),
        }[kind]

    @staticmethod
    def offered(task: str) -> str:
        """What a ready instance becomes: offered to workers, or a timer waiting."""
        return S.WAITING if task in TIMERS else S.AVAILABLE

    def after_failure(self, row: dict, retryable: bool) -> str:
        task = row["task"]
        if retryable and row["failures"] + 1 <= RETRIES[task]:
            return S.RETRY_WAIT if RETRY_DELAY[task] > 0 else self.reoffered(row)
        return S.SKIPPED if task in OPTIONAL else S.FAILED

    def reoffered(self, row: dict) -> str:
        """What an instance offered again becomes: available, or pending while its run waits queued
        (a failed run given work again while the slot was taken; its attempt ran on)."""
        return S.PENDING if self.tables["runs"][row["run"]]["status"] == S.QUEUED else S.AVAILABLE

    @precondition(lambda self: self.some(S.AVAILABLE))
    @rule(pick=PICK, prefer=PREFER, which=TOKEN, team=TEAM, new=NEW_MESSAGE, via=VIA, seconds=st.integers(0, 5))
    def claim(self, pick, prefer, which, team, new, via, seconds):
        self.advance(seconds)
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.AVAILABLE)
        self.send("claim", iid, self.token_for(iid, which, pick), team, self.message_id(new), via)

    @rule(  # always possible: finding nothing to claim is fine
        functions=st.lists(st.sampled_from(sorted(FUNCTIONS.values())), min_size=1, max_size=4, unique=True),
        worker=st.sampled_from(["poller-1", "poller-2"]), seconds=st.integers(0, 5),
    )
    def claim_next(self, functions, worker, seconds):
        """A polling worker takes the most urgent available instance of its functions."""
        self.advance(seconds)
        candidates = sorted(
            (-r["priority"], iid) for iid, r in self.instances.items()
            if r["state"] == S.AVAILABLE and r["function"] in functions and not r["human"]
        )
        expect = Expect(states={candidates[0][1]: S.RUNNING}) if candidates else Expect()
        result, _ = self.act("claim_next", None, lambda: store.claim_next("acme", functions, worker, now=self.now),
                             expect)
        assert (result.instance if result else None) == (candidates[0][1] if candidates else None)

    @precondition(lambda self: self.some(S.RUNNING))
    @rule(pick=PICK, prefer=PREFER, which=TOKEN, team=TEAM, new=NEW_MESSAGE, via=VIA, seconds=st.integers(0, 50),
          percent=st.integers(0, 100))
    def progress(self, pick, prefer, which, team, new, via, seconds, percent):
        self.advance(seconds)
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.RUNNING)
        self.send("progress", iid, self.token_for(iid, which, pick), team, self.message_id(new), via, percent=percent)

    @precondition(lambda self: self.some(S.RUNNING))
    @rule(pick=PICK, prefer=PREFER, which=TOKEN, team=TEAM, new=NEW_MESSAGE, via=VIA, seconds=st.integers(0, 20),
          size=st.sampled_from([1, 2, 3, 4, -1]), extra=st.sampled_from([False] * 5 + [True]))
    def submit(self, pick, prefer, which, team, new, via, seconds, size, extra):
        self.advance(seconds)
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.RUNNING)
        output = {"uri": f"s3://out/{iid}/{size}", "size": size, **({"extra": 1} if extra else {})}
        self.send("submit", iid, self.token_for(iid, which, pick), team, self.message_id(new), via, output=output)

    @precondition(lambda self: self.some(S.RUNNING))
    @rule(pick=PICK, new=NEW_MESSAGE, via=VIA)
    def finish(self, pick, new, via):
        """The common case, so that runs get done: the worker of a running instance submits."""
        iid = self.choose(pick, True, lambda r: r["state"] == S.RUNNING)
        output = {"uri": f"s3://out/{iid}", "size": 7}
        self.send("submit", iid, self.token_for(iid, "current", pick), "acme", self.message_id(new), via, output=output)

    @precondition(lambda self: self.some(S.RUNNING))
    @rule(pick=PICK, prefer=PREFER, which=TOKEN, team=TEAM, new=NEW_MESSAGE, via=VIA, retryable=st.booleans())
    def fail(self, pick, prefer, which, team, new, via, retryable):
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.RUNNING)
        self.send("fail", iid, self.token_for(iid, which, pick), team, self.message_id(new), via, retryable=retryable)

    @precondition(lambda self: self.some(S.RUNNING))
    @rule(pick=PICK, prefer=PREFER, which=TOKEN, team=TEAM, new=NEW_MESSAGE, via=VIA)
    def worker_skip(self, pick, prefer, which, team, new, via):
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.RUNNING)
        self.send("skip", iid, self.token_for(iid, which, pick), team, self.message_id(new), via)

    @precondition(lambda self: self.messages)
    @rule(pick=PICK, via=VIA)
    def replay(self, pick, via):
        """The broker redelivers a message already sent (its change, if any, must not happen twice)."""
        sent = self.messages[pick % len(self.messages)]
        args = {k: v for k, v in sent.items() if k not in ("kind", "iid", "token", "team", "id")}
        self.deliver(sent["kind"], sent["iid"], sent["token"], sent["team"], sent["id"], via, **args)

    @precondition(lambda self: self.steps % 3 == 1)  # else it crowds out the single messages
    @rule(
        burst=st.lists(
            st.tuples(st.sampled_from(["claim", "claim", "submit", "submit", "progress", "fail", "skip"]), PICK, TOKEN),
            min_size=2, max_size=5,
        ),
        again=st.booleans(),
    )
    def batch(self, burst, again):
        """Several worker messages applied together by the bridge's batch path, in order, with the
        tokens they had when sent (so a claim and the submit after it can share a batch); `again`
        repeats the first message inside the batch. Every outcome must be a clean refusal or a change
        that keeps every invariant."""
        sent = []
        for kind, pick, which in burst:
            wanted = S.AVAILABLE if kind == "claim" else S.RUNNING
            iid = self.choose(pick, True, lambda r: r["state"] in (wanted, S.AVAILABLE))
            args = {"percent": 50, "output": {"uri": f"s3://batch/{iid}", "size": 5}, "retryable": pick % 2 == 0}
            sent.append(Item("acme", self.message_id(True), worker_message(kind, iid, self.token_for(iid, which, pick), args)))
        if again:
            sent.append(Item("acme", sent[0].message_id, sent[0].message))
        now = self.now

        def apply():
            applied, _, _ = apply_taking_kept(lambda: [Item(i.team, i.message_id, i.message) for i in sent], now,
                                              self.kept)
            sent[:] = applied

        self.act("batch", None, apply, Expect())
        for item in sent:
            assert (item.result is None) != (item.error is None), f"batch: {item}"
            assert item.error is None or isinstance(item.error, REFUSALS), f"batch: unexpected {item.error!r}"
        if again:
            first, copy = sent[0], sent[-1]
            assert type(copy.error) is type(first.error)
            assert copy.result is None or (copy.result.duplicate and copy.result.state == first.result.state)

    # ---- operator actions -----------------------------------------------------------------------

    def some(self, state: str) -> bool:
        return any(r["state"] == state for r in self.instances.values())

    def cancelled(self, iid: int) -> bool:
        return self.run_of(iid)["status"] == S.CANCELLED

    @precondition(lambda self: self.steps % 3 == 2)
    @rule(pick=PICK, prefer=PREFER)
    def op_skip(self, pick, prefer):
        skippable = {S.PENDING, S.AVAILABLE, S.RUNNING, S.RETRY_WAIT, S.WAITING, S.HELD, S.FAILED}
        first = {S.FAILED} if self.some(S.FAILED) else skippable  # skipping a failure is the operator's way on
        iid = self.choose(pick, prefer, lambda r: r["state"] in first)
        ok = not self.cancelled(iid) and self.instances[iid]["state"] in skippable
        taken_back = self.unfailed(iid, S.SKIPPED) if ok and self.instances[iid]["state"] == S.FAILED else {}
        ok = ok and taken_back is not None
        expect = Expect(states={iid: S.SKIPPED, **taken_back}) if ok else Expect(IllegalTransition)
        self.act("op_skip", iid, lambda: store.skip_instance(iid, "not needed", actor="op", now=self.now), expect)

    @precondition(lambda self: self.steps % 3 == 0)  # undo sets the run back: not at every step
    @rule(pick=PICK, prefer=PREFER, hold=st.sampled_from([False, False, True]),
          dry_run=st.sampled_from([False, False, False, True]), cancel=st.booleans())
    def undo(self, pick, prefer, hold, dry_run, cancel):
        iid = self.choose(pick, prefer, lambda r: r["state"] != S.PENDING and r["state"] != S.CANCELLED)
        row, run = self.instances[iid], self.run_of(iid)
        call = lambda: store.undo(iid, "wrong output", actor="op", hold=hold, dry_run=dry_run, now=self.now,  # noqa: E731
                                  cancel_connected=cancel)
        if run["status"] == S.CANCELLED or row["state"] == S.PENDING:
            self.act("undo", iid, call, Expect(IllegalTransition))
            return
        siblings = self.by_task(row["run"])
        downstream = {siblings[t]["id"] for t in descendants(row["task"]) if siblings[t]["state"] != S.PENDING}
        if hold:
            becomes = S.HELD
        elif run["status"] != S.QUEUED and self.upstream_done(iid):
            becomes = self.offered(row["task"])
        else:
            becomes = S.PENDING
        plan_states = {iid: becomes, **{d: S.PENDING for d in downstream}}
        if becomes != S.HELD and self.waits_for_slot(row["run"], plan_states):
            plan_states[iid] = S.PENDING  # the run waits queued: X with it
        settled = dict(plan_states)  # then what the undo left ready is offered: a teardown whose upstream
        # ended for good (a failure, or what waits behind one) goes again at once, with a new token
        if run["status"] != S.QUEUED and not self.waits_for_slot(row["run"], plan_states):
            after = {t: {**r, "state": plan_states.get(r["id"], r["state"])} for t, r in siblings.items()}
            for task in sorted((ENDED | ONE_FAILED | ONE_SUCCESS) & descendants(row["task"])):
                if siblings[task]["id"] in downstream and ready(task, after, UPSTREAM, ENDED, ONE_FAILED, ONE_SUCCESS):
                    settled[siblings[task]["id"]] = self.offered(task) if self.offered_after(task, after) else S.SKIPPED
        before = dict(self.instances)
        runs_before = self.tables["runs"]
        connected = {rid: r["status"] for rid, r in runs_before.items() if r["upstream_run"] == run["id"]}
        if dry_run:
            tables = self.tables
            plan, _ = self.act("undo_dry_run", iid, call, Expect())
            assert self.tables == tables, "a dry run changed the tables"
        else:
            plan, _ = self.act("undo", iid, call, Expect(states=settled), affected={iid} | downstream)
            assert all(self.instances[i]["failures"] == 0 for i in plan_states), "undone instances start afresh"
        assert {a.instance: a.becomes for a in plan.affected} == settled, "the plan says what the undo does"
        assert plan.affected[0].instance == iid
        for a in plan.affected:  # the plan names each instance's state before, and whether it notifies
            was = before[a.instance]
            assert (a.task, a.state) == (was["task"], was["state"])
            assert a.notify == (was["state"] == S.SUCCEEDED and was["task"] in NOTIFY)
        # The runs it started (connected): listed, and cancelled with it when asked and unfinished.
        assert {(c.run, c.status, c.cancel) for c in plan.connected} == {
            (rid, status, status not in FINISHED) for rid, status in connected.items()}
        assert plan.cancel_connected == cancel
        for rid, status in connected.items():
            cancelled = cancel and not dry_run and status not in FINISHED
            assert self.tables["runs"][rid]["status"] == (S.CANCELLED if cancelled else status), (
                f"undo of {iid} (cancel_connected={cancel}, dry run={dry_run}): connected run {rid} was {status}, "
                f"is {self.tables['runs'][rid]['status']}")

    @precondition(lambda self: self.steps % 4 == 1)  # rarer than work: a held instance stops its branch
    @rule(pick=PICK, prefer=PREFER)
    def hold(self, pick, prefer):
        holdable = {S.PENDING, S.AVAILABLE, S.RETRY_WAIT, S.WAITING}
        iid = self.choose(pick, prefer, lambda r: r["state"] in holdable)
        ok = not self.cancelled(iid) and self.instances[iid]["state"] in holdable
        expect = Expect(states={iid: S.HELD}) if ok else Expect(IllegalTransition)
        self.act("hold", iid, lambda: store.hold(iid, actor="op", now=self.now), expect)

    @precondition(lambda self: self.some(S.HELD))
    @rule(pick=PICK, prefer=PREFER)
    def release(self, pick, prefer):
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.HELD)
        if self.instances[iid]["state"] != S.HELD:
            expect = Expect(IllegalTransition)
        elif self.run_of(iid)["status"] != S.QUEUED and self.upstream_done(iid):
            task = self.instances[iid]["task"]  # the compensation, with nothing failed: skipped
            goes = self.offered_after(task, self.by_task(self.instances[iid]["run"]))
            expect = Expect(states={iid: self.offered(task) if goes else S.SKIPPED})
        else:
            expect = Expect(states={iid: S.PENDING})
        self.act("release", iid, lambda: store.release(iid, actor="op", now=self.now), expect)

    @precondition(lambda self: self.some(S.FAILED))
    @rule(pick=PICK, prefer=PREFER)
    def retry(self, pick, prefer):
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.FAILED)
        ok = not self.cancelled(iid) and self.instances[iid]["state"] == S.FAILED
        taken_back = self.unfailed(iid, S.AVAILABLE) if ok else None
        ok = taken_back is not None
        row = self.instances[iid]
        becomes = S.PENDING if ok and self.waits_for_slot(row["run"], {iid: S.AVAILABLE}) else self.reoffered(row)
        expect = Expect(states={iid: becomes, **taken_back}) if ok else Expect(IllegalTransition)
        self.act("retry", iid, lambda: store.retry_instance(iid, actor="op", now=self.now), expect)
        if ok:
            assert self.instances[iid]["failures"] == 0, "a retried instance gets its retries afresh"

    def fan_runs(self) -> list[dict]:
        return [r for r in self.tables["runs"].values() if r["trigger"] != "connected"]

    @precondition(lambda self: len(self.fan_runs()) < 2 or (
        len(self.fan_runs()) < 4 and all(r["status"] in FINISHED for r in self.fan_runs())))
    @rule()
    def trigger_another_run(self):
        self.act("trigger", None, lambda: store.trigger("acme", "fan", actor="ann", now=self.now), Expect())

    @precondition(lambda self: self.steps % 25 == 24)  # rare: a cancelled run stops the story
    @rule(pick=PICK)
    def cancel_run(self, pick):
        rid = sorted(self.tables["runs"])[pick % len(self.tables["runs"])]
        expect = Expect(IllegalTransition) if self.tables["runs"][rid]["status"] in (S.CANCELLED, S.SUCCEEDED) else Expect()
        self.act("cancel", None, lambda: store.cancel_run(rid, actor="op", now=self.now), expect)

    # ---- human tasks ------------------------------------------------------------------------------

    def human(self, pick: int) -> int:
        ids = sorted(i for i, r in self.instances.items() if r["human"])
        return ids[pick % len(ids)]

    def human_refusal(self, iid: int, who: str):
        row = self.instances[iid]
        if row["state"] != S.AVAILABLE:
            return IllegalTransition
        return NotAllowed if who not in DECIDERS else None

    def human_open(self) -> bool:
        return any(r["human"] and r["state"] == S.AVAILABLE for r in self.instances.values())

    @precondition(lambda self: self.human_open())
    @rule(pick=PICK, who=st.sampled_from(["ann", "bob", "eve"]), reason=st.sampled_from([None, "", "on call"]))
    def take(self, pick, who, reason):
        iid = self.human(pick)
        holder = self.instances[iid]["taken_by"]
        refusal = self.human_refusal(iid, who)
        if refusal is None and holder not in (None, who) and not reason:
            refusal = NotAllowed
        tables = self.tables
        self.act("take", iid, lambda: store.take(iid, actor=who, reason=reason, now=self.now), Expect(refusal))
        if refusal is None:
            assert self.instances[iid]["taken_by"] == who
            assert holder != who or self.tables == tables, "taking what one has changes nothing"

    @precondition(lambda self: self.human_open())
    @rule(pick=PICK, who=st.sampled_from(["ann", "bob", "eve"]))
    def hand_back(self, pick, who):
        iid = self.human(pick)
        row = self.instances[iid]
        refusal = IllegalTransition if row["state"] != S.AVAILABLE else NotAllowed if row["taken_by"] != who else None
        self.act("hand_back", iid, lambda: store.hand_back(iid, actor=who, now=self.now), Expect(refusal))
        if refusal is None:
            assert self.instances[iid]["taken_by"] is None

    @precondition(lambda self: self.human_open() and self.steps % 2 == 1)  # else h is decided at once
    @rule(pick=PICK, who=st.sampled_from(["ann", "bob", "bob", "eve"]), seconds=st.integers(0, 120))
    def decide(self, pick, who, seconds):
        self.advance(seconds)
        iid = self.human(pick)
        refusal = self.human_refusal(iid, who)
        if refusal is None and self.instances[iid]["taken_by"] not in (None, who):
            refusal = NotAllowed
        expect = Expect(refusal) if refusal else Expect(states={iid: S.SUCCEEDED})
        self.act("decide", iid, lambda: store.submit_human(iid, {"uri": "s3://ok", "size": 1}, actor=who,
                                                            comment="checked", now=self.now), expect)
        if refusal is None:
            [attempt] = [a for a in self.tables["attempts"].values() if a["instance"] == iid and a["status"] == "succeeded"
                         and not a["archived"]]
            assert (attempt["worker"], attempt["comment"]) == (who, "checked")

    @precondition(lambda self: self.human_open() and self.steps % 3 == 0)
    @rule(seconds=st.integers(0, 700))
    def human_alarms(self, seconds):
        self.advance(seconds)
        waiting = {iid: r for iid, r in self.instances.items() if r["human"] and r["state"] == S.AVAILABLE}
        overdue = {iid for iid, r in waiting.items() if r["due_at"] <= self.now}
        reminded = {iid for iid, r in waiting.items() if not r["reminders_sent"]
                    and r["offered_at"] + HUMAN_REMINDER <= self.now}
        result, _ = self.act("human_alarms", None, lambda: store.human_alarms(now=self.now),
                             Expect(states={iid: S.SUCCEEDED for iid in overdue}))
        assert (set(result[0]), set(result[1])) == (reminded, overdue)
        for iid in overdue:  # the default output, submitted by the sweeper
            assert any(a["instance"] == iid and a["status"] == "succeeded" and a["worker"] == "flow45-scheduler"
                       and a["output"] == {"uri": "s3://default", "size": 0} for a in self.tables["attempts"].values())

    # ---- time ----------------------------------------------------------------------------------

    @precondition(lambda self: self.some(S.RUNNING) and self.steps % 2 == 0)
    @rule(seconds=st.integers(1, 400))
    def expire_leases(self, seconds):
        self.advance(seconds)
        due = {iid for iid, r in self.instances.items()
               if r["state"] == S.RUNNING and r["lease_expires_at"] is not None and r["lease_expires_at"] < self.now}
        states = {iid: self.after_failure(self.instances[iid], True) for iid in due}
        result, _ = self.act("expire", None, lambda: store.expire_leases(now=self.now), Expect(states=states))
        assert set(result) == due

    @precondition(lambda self: self.some(S.RETRY_WAIT))
    @rule(seconds=st.integers(0, 30))
    def release_due_retries(self, seconds):
        self.advance(seconds)
        due = {iid for iid, r in self.instances.items()
               if r["state"] == S.RETRY_WAIT and r["not_before"] <= self.now}
        result, _ = self.act("due", None, lambda: store.release_due_retries(now=self.now),
                             Expect(states={iid: self.reoffered(self.instances[iid]) for iid in due}))
        assert set(result) == due


    @precondition(lambda self: self.some(S.WAITING))
    @rule(seconds=st.sampled_from([0, 1, 30, 59, 60, 61, 120]))
    def fire_timers(self, seconds):
        self.advance(seconds)
        due = {iid for iid, r in self.instances.items() if r["state"] == S.WAITING and r["not_before"] <= self.now}
        result, _ = self.act("timers", None, lambda: store.fire_due_timers(now=self.now),
                             Expect(states={iid: S.SUCCEEDED for iid in due}))
        assert set(result) == due

    # ---- callbacks -----------------------------------------------------------------------------

    @precondition(lambda self: self.some(S.RUNNING))
    @rule(pick=PICK, prefer=PREFER, which=TOKEN, team=TEAM, new=NEW_MESSAGE, via=VIA,
          deadline=st.sampled_from([None, 30, 300]))
    def park_any(self, pick, prefer, which, team, new, via, deadline):
        self.park(pick, prefer, which, team, new, via, deadline)

    def park(self, pick, prefer, which, team, new, via, deadline):
        iid = self.choose(pick, prefer, lambda r: r["state"] == S.RUNNING and r["callback_key"] is None)
        before = self.instances[iid]
        self.send("park", iid, self.token_for(iid, which, pick), team, self.message_id(new), via, deadline=deadline)
        row = self.instances[iid]
        if row["callback_key"] is not None and before["callback_key"] is None:
            self.keys.append(row["callback_key"])
            want = None if deadline is None else self.now + dt.timedelta(seconds=deadline)
            assert row["lease_expires_at"] == want, "a parked attempt's lease is its deadline"

    @precondition(lambda self: self.some(S.RUNNING))
    @rule(pick=PICK, new=NEW_MESSAGE, via=VIA, deadline=st.sampled_from([None, 30, 300]))
    def park_current(self, pick, new, via, deadline):
        """The common case, so that keys get used: the worker of a running attempt parks it."""
        self.park(pick, True, "current", "acme", new, via, deadline)

    @precondition(lambda self: self.keys)
    @rule(pick=PICK, which=KEY, complete=st.booleans(), retryable=st.booleans(), size=st.sampled_from([1, 2, -1]),
          seconds=st.integers(0, 20))
    def callback(self, pick, which, complete, retryable, size, seconds):
        """Whoever holds a key completes or fails the parked attempt; other keys change nothing."""
        self.advance(seconds)
        parked = {r["callback_key"]: iid for iid, r in self.instances.items() if r["callback_key"]}
        ended = [k for k in self.keys if k not in parked]
        if which in ("current", "rival") and parked:  # rival: another team holding a live key
            key = sorted(parked, key=parked.get)[pick % len(parked)]  # by instance: keys are random
        elif which == "bogus":
            key = "bogus-key-" + "x" * 33
        else:
            key = (ended or self.keys)[pick % len(ended or self.keys)]
        team = "rival" if which == "rival" else "acme"
        iid = parked.get(key)
        output = {"uri": f"s3://callback/{pick}", "size": size}
        if complete:
            call = lambda: store.complete_callback(key, output, actor="hook", team=team, now=self.now)  # noqa: E731
        else:
            call = lambda: store.fail_callback(key, "refused", actor="hook", retryable=retryable, team=team, now=self.now)  # noqa: E731
        if iid is None or team != "acme":
            expect = Expect(NotFound)
        elif complete:
            expect = Expect(states={iid: S.SUCCEEDED}) if size >= 0 else Expect(InvalidOutput)
        else:
            expect = Expect(states={iid: self.after_failure(self.instances[iid], retryable)})
        self.act("callback", iid, call, expect)


def test_random_actions_keep_the_store_consistent(db_url, backend, tmp_path):
    config = tmp_path / "fan.yaml"
    config.write_text(MACHINE_CONFIG)
    machine = type(
        f"StoreMachine_{backend}", (StoreMachine,),
        {"url": db_url, "backend": backend, "config": load_config(config), "workdir": tmp_path, "examples": 0},
    )
    try:
        run_state_machine_as_test(
            machine,
            settings=settings(
                max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
            ),
        )
    finally:
        database.close()


# Regressions the machine found, kept as plain examples.


def _fan_run(tmp_path) -> tuple[int, dict[str, int]]:
    config = tmp_path / "fan.yaml"
    config.write_text(CONFIG)
    store.deploy(load_config(config), actor="tester", now=T0)
    run = store.trigger("acme", "fan", actor="ann", now=T0)
    return run, {i.task: i.id for i in store.get_run(run).instances}


def _work(iid: int, output=None) -> None:
    row = TaskInstance.get_by_id(iid)
    grant = store.claim(iid, row.token, "w", now=T0)
    store.submit(iid, grant.token, output or {"uri": "s3://x", "size": 1}, now=T0)


@pytest.mark.usefixtures("store_db")
def test_skipping_the_failed_instance_of_a_failed_run_finishes_it(tmp_path):
    run, ids = _fan_run(tmp_path)
    for task in "abc":
        _work(ids[task])
    store.fire_due_timers(T0 + TIMERS["t"])
    grant = store.claim(ids["d"], TaskInstance.get_by_id(ids["d"]).token, "w", now=T0)
    store.fail(ids["d"], grant.token, "broken", retryable=False, now=T0)
    assert store.get_run(run).status == "failed"
    store.skip_instance(ids["d"], "not needed after all", actor="op", now=T0)
    assert store.get_run(run).status == "succeeded"


@pytest.mark.usefixtures("store_db")
@pytest.mark.parametrize("park", ["hold", "skip"])
def test_undo_of_an_instance_whose_upstream_is_not_done_leaves_it_pending(tmp_path, park):
    run, ids = _fan_run(tmp_path)
    if park == "hold":
        store.hold(ids["b"], actor="op", now=T0)
    else:
        store.skip_instance(ids["b"], "later", actor="op", now=T0)
    plan = store.undo(ids["b"], "changed my mind", actor="op", now=T0)
    assert [(a.task, a.becomes) for a in plan.affected] == [("b", "pending")]
    assert {i.task: i.state for i in store.get_run(run).instances} == {
        "a": "available", "b": "pending", "c": "pending", "t": "pending", "d": "pending"
    }
    assert Outbox.select().where(Outbox.instance == ids["b"]).count() == 0
    _work(ids["a"])
    assert TaskInstance.get_by_id(ids["b"]).state == "available"


@pytest.mark.usefixtures("store_db")
def test_undo_in_a_queued_run_offers_nothing(tmp_path):
    first, _ = _fan_run(tmp_path)
    second = store.trigger("acme", "fan", actor="ann", now=T0)
    a = next(i for i in store.get_run(second).instances if i.task == "a")
    store.skip_instance(a.id, "not this month", actor="op", now=T0)
    store.undo(a.id, "yes this month", actor="op", now=T0)
    assert store.get_run(second).status == "queued"
    assert TaskInstance.get_by_id(a.id).state == "pending"
    assert Outbox.select().where(Outbox.instance == a.id).count() == 0
