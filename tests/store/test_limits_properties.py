"""Random sequences of worker and operator actions against tasks that wait `queued`: a task's
`max_running`, a team's `functions.NAME.max_running` shared by two workflows, and `depends_on_past` (one
task `optional`, skipped when it fails for good); on SQLite and PostgreSQL, on a fake clock. Worker
messages go through the per-message verbs or the bridge's batch path (with its hand-on after the
commit, as the bridge does it); operators skip, hold, release,
retry, undo, set outputs and cancel runs; the scheduler's tick expires leases, offers due retries and
offers what waits queued.

Any action may be refused (a stale token, an instance in the wrong state); a refused one changes nothing.
After every action, straight from the tables:

- no limit is ever exceeded: offered or running instances of `a`, of `c`, and of the function `shared`
  over both workflows;
- an instance offered in the action under `depends_on_past` has its run before's instance succeeded,
  skipped or cancelled;
- a queued instance is ready (upstream done), in a started run, with no token and no running attempt;
- nothing waits needlessly: after a worker's message, an operator's change or the scheduler's tick, no
  queued instance is left that could go (its run before done, a free slot of each of its limits);
- every instance's moves in the ledger are in the transition table and end at its state, and each run
  rebuilt from its ledger (the run as it was) equals the live one.
"""

from __future__ import annotations

import datetime as dt
import os

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from flow45 import messages as m
from flow45 import states as S
from flow45 import store
from flow45.config import load_config
from flow45.db import atomic, database
from flow45.errors import IllegalTransition, InvalidOutput, NotAllowed, NotFound, StaleToken
from flow45.models import Attempt, Event, Run, TaskInstance
from flow45.scheduler import tick
from flow45.store.asof import replay, run_events
from flow45.store.batch import Item, apply_worker_batch
from flow45.store.sweep import hand_on
from tests.store.helpers import T0, fresh_store

CONFIG = """\
team: acme
types:
  Blob:
    fields: {uri: string, size: {type: integer, ge: 0}}
functions:
  shared: {max_running: 2}
workflows:
  load:
    max_active_runs: 3
    tasks:
      a: {function: fa, output: Blob, max_running: 1, retries: 1, retry_delay: 0s, lease: 30s}
      b: {function: shared, output: Blob, inputs: {src: a}, depends_on_past: true, retries: 1, retry_delay: 5s,
          lease: 30s}
      c: {function: shared, output: Blob, inputs: {src: a}, max_running: 1, lease: 30s, optional: true}
  side:
    max_active_runs: null
    tasks:
      s: {function: fs, output: Blob}
      x: {function: shared, output: Blob, inputs: {src: s}, lease: 30s}
"""

# The model's own copy of the limits, independent of the store's parsing.
UPSTREAM = {"a": [], "b": ["a"], "c": ["a"], "s": [], "x": ["s"]}
TASK_LIMITS = {"a": 1, "c": 1}
FUNCTION_LIMITS = {"shared": 2}
PAST = {"b"}
OUTPUT = {"uri": "s3://out", "size": 1}
REFUSALS = (StaleToken, IllegalTransition, NotFound, InvalidOutput, NotAllowed)
MOST_RUNS = 9

MAX_EXAMPLES = int(os.environ.get("FLOW45_PROPERTY_EXAMPLES", "40"))
STEPS = int(os.environ.get("FLOW45_PROPERTY_STEPS", "60"))
PICK = st.integers(0, 63)
VIA = st.sampled_from(["verb", "batch"])


def read_tables() -> dict:
    return {
        "runs": {r["id"]: r for r in Run.select().dicts()},
        "instances": {i["id"]: i for i in TaskInstance.select().dicts()},
        "attempts": {a["id"]: a for a in Attempt.select().dicts()},
        "events": list(Event.select().order_by(Event.id).dicts()),
    }


class LimitsMachine(RuleBasedStateMachine):
    url: str
    backend: str
    config: list
    workdir: object
    examples = 0

    def __init__(self):
        super().__init__()
        cls = type(self)
        cls.examples += 1
        fresh_store(self.backend, self.url, self.workdir / f"limits-{cls.examples}.db")
        store.deploy(self.config, actor="tester", now=T0)
        self.now = T0
        self.counter = 0
        self.tables = read_tables()
        self.act("trigger", lambda: store.trigger("acme", "load", actor="cron", now=self.now))

    def teardown(self):
        database.close()

    # ---- helpers -------------------------------------------------------------------------------

    @property
    def instances(self) -> dict[int, dict]:
        return self.tables["instances"]

    def pick(self, pick: int, states: tuple[str, ...]) -> int | None:
        """An instance in one of `states` if any, else any instance (whose action is then refused)."""
        ids = sorted(self.instances)
        fitting = [i for i in ids if self.instances[i]["state"] in states] or ids
        return fitting[pick % len(fitting)] if fitting else None

    def token(self, iid: int) -> str:
        return self.instances[iid]["token"] or "no-token"

    def message_id(self) -> str:
        self.counter += 1
        return f"msg-{self.counter}"

    def worker(self, iid: int, message, via: str) -> None:
        def batch():
            item = Item("acme", self.message_id(), message)
            with atomic():
                apply_worker_batch([item], self.now)
            hand_on(self.now)  # as the bridge does after its batch's commit
            if item.error is not None:
                raise item.error

        call = batch if via == "batch" else (
            lambda: store.apply_message(message, team="acme", message_id=self.message_id(), now=self.now))
        self.act(f"{type(message).__name__.lower()} of {iid} by {via}", call)

    # ---- the one way an action runs, and the checks after it -----------------------------------

    def act(self, what: str, call) -> None:
        before = self.tables
        try:
            call()
            refused = None
        except REFUSALS as exc:
            refused = exc
        after = read_tables()
        where = f"{what} at {self.now:%H:%M:%S}"
        if refused is not None:
            assert after == before, f"{where}: refused ({refused}) yet the tables changed"
        self.check(before, after, where)
        self.tables = after

    def check(self, before: dict, after: dict, where: str) -> None:
        runs, instances = after["runs"], after["instances"]
        workflow_of = {rid: r["workflow"] for rid, r in runs.items()}
        by_run: dict[int, dict[str, dict]] = {}
        for row in instances.values():
            by_run.setdefault(row["run"], {})[row["task"]] = row
        taking = [i for i in instances.values() if i["state"] in S.TAKING_SLOTS]

        def task_taken(task: str, workflow: int) -> int:
            return sum(1 for i in taking if i["task"] == task and workflow_of[i["run"]] == workflow)

        def function_taken(function: str) -> int:
            return sum(1 for i in taking if i["function"] == function)

        def past(row: dict) -> dict | None:
            earlier = [r for r in by_run if r < row["run"] and workflow_of[r] == workflow_of[row["run"]]
                       and row["task"] in by_run[r]]
            return by_run[max(earlier)][row["task"]] if earlier else None

        def past_done(row: dict) -> bool:
            found = past(row) if row["task"] in PAST else None
            return found is None or found["state"] in S.DONE | {S.CANCELLED}

        # No limit is ever exceeded.
        for task, most in TASK_LIMITS.items():
            for workflow in set(workflow_of.values()):
                assert task_taken(task, workflow) <= most, f"{where}: {task_taken(task, workflow)} of {task} at once"
        for function, most in FUNCTION_LIMITS.items():
            assert function_taken(function) <= most, f"{where}: {function_taken(function)} of {function} at once"

        # Offered in this action under depends_on_past: the run before's instance is done.
        new_events = after["events"][len(before["events"]):]
        for e in new_events:
            if e["instance"] is not None and e["to_state"] == S.AVAILABLE:
                row = instances[e["instance"]]
                if row["task"] in PAST and row["state"] == S.AVAILABLE:
                    assert past_done(row), f"{where}: {row['task']} of run {row['run']} offered before its run before's"

        running_attempts = {a["instance"] for a in after["attempts"].values() if a["status"] == "running"}
        for iid, row in instances.items():
            run = runs[row["run"]]
            ready = all(by_run[row["run"]][up]["state"] in S.DONE for up in UPSTREAM[row["task"]])
            if row["state"] == S.QUEUED:
                assert ready and run["status"] in (S.RUNNING, S.FAILED), f"{where}: queued {iid} in {run['status']} run"
                assert row["token"] is None and iid not in running_attempts, f"{where}: queued {iid} has an attempt"
                could_go = (past_done(row)
                            and (row["task"] not in TASK_LIMITS
                                 or task_taken(row["task"], workflow_of[row["run"]]) < TASK_LIMITS[row["task"]])
                            and (row["function"] not in FUNCTION_LIMITS
                                 or function_taken(row["function"]) < FUNCTION_LIMITS[row["function"]]))
                assert not could_go, f"{where}: queued {iid} ({row['task']}) could go but waits"
            if row["state"] == S.PENDING and run["status"] in (S.RUNNING, S.FAILED, S.SUCCEEDED):
                assert not ready, f"{where}: {iid} ({row['task']}) is ready but left pending"

        # The ledger's moves are legal and end at each instance's state; the run as it was is the run.
        for iid, row in instances.items():
            was = before["instances"][iid]["state"] if iid in before["instances"] else S.PENDING
            for e in new_events:
                if e["instance"] == iid and e["to_state"] is not None:
                    assert e["from_state"] == was and e["to_state"] in S.INSTANCE_MOVES[was], (
                        f"{where}: instance {iid} moved {e['from_state']} -> {e['to_state']}, was {was}")
                    was = e["to_state"]
            assert was == row["state"], f"{where}: instance {iid} is {row['state']}, its events end at {was}"
        if new_events:
            newest = after["events"][-1]["id"]
            for rid in {e["run"] for e in new_events if e["run"] is not None}:
                ids = [iid for iid, i in instances.items() if i["run"] == rid]
                state = replay(ids, run_events(rid, upto=newest))
                assert state.status == runs[rid]["status"], f"{where}: run {rid} replayed as {state.status}"
                for iid in ids:
                    got = (state.instances[iid].state, state.instances[iid].attempt)
                    assert got == (instances[iid]["state"], instances[iid]["attempt"]), (
                        f"{where}: instance {iid} replayed as {got}")

    # ---- runs ----------------------------------------------------------------------------------

    @rule(workflow=st.sampled_from(["load", "load", "side"]), seconds=st.integers(0, 10))
    def trigger(self, workflow, seconds):
        if len(self.tables["runs"]) < MOST_RUNS:
            self.now += dt.timedelta(seconds=seconds)
            self.act(f"trigger {workflow}", lambda: store.trigger("acme", workflow, actor="cron", now=self.now))

    @rule(pick=PICK)
    def cancel_run(self, pick):
        open_runs = sorted(r for r, row in self.tables["runs"].items() if row["status"] not in S.FINISHED_RUN)
        if open_runs:
            rid = open_runs[pick % len(open_runs)]
            self.act(f"cancel run {rid}", lambda: store.cancel_run(rid, actor="op", now=self.now))

    # ---- workers -------------------------------------------------------------------------------

    @rule(pick=PICK, via=VIA, seconds=st.integers(0, 5))
    def claim(self, pick, via, seconds):
        self.now += dt.timedelta(seconds=seconds)
        if (iid := self.pick(pick, (S.AVAILABLE,))) is not None:
            self.worker(iid, m.Claim(type="claim", instance=iid, token=self.token(iid), worker="w"), via)

    @rule(pick=PICK, via=VIA)
    def submit(self, pick, via):
        if (iid := self.pick(pick, (S.RUNNING,))) is not None:
            self.worker(iid, m.Submit(type="submit", instance=iid, token=self.token(iid), output=OUTPUT), via)

    @rule(pick=PICK, via=VIA, retryable=st.booleans())
    def fail(self, pick, via, retryable):
        if (iid := self.pick(pick, (S.RUNNING,))) is not None:
            message = m.Fail(type="fail", instance=iid, token=self.token(iid), error="boom", retryable=retryable)
            self.worker(iid, message, via)

    @rule(pick=PICK, via=VIA)
    def worker_skip(self, pick, via):
        if (iid := self.pick(pick, (S.RUNNING,))) is not None:
            self.worker(iid, m.Skip(type="skip", instance=iid, token=self.token(iid), reason="nothing to do"), via)

    # ---- operators -----------------------------------------------------------------------------

    def operate(self, pick: int, states: tuple[str, ...], name: str, change) -> None:
        if (iid := self.pick(pick, states)) is not None:
            self.act(f"{name} {iid}", lambda: change(iid))

    @rule(pick=PICK)
    def op_skip(self, pick):
        self.operate(pick, (S.QUEUED, S.RUNNING, S.FAILED, S.AVAILABLE), "skip",
                     lambda iid: store.skip_instance(iid, "not needed", actor="op", now=self.now))

    @rule(pick=PICK)
    def hold(self, pick):
        self.operate(pick, (S.QUEUED, S.AVAILABLE, S.PENDING), "hold",
                     lambda iid: store.hold(iid, actor="op", now=self.now))

    @rule(pick=PICK)
    def release(self, pick):
        self.operate(pick, (S.HELD,), "release", lambda iid: store.release(iid, actor="op", now=self.now))

    @rule(pick=PICK)
    def retry(self, pick):
        self.operate(pick, (S.FAILED,), "retry", lambda iid: store.retry_instance(iid, actor="op", now=self.now))

    @rule(pick=PICK, hold=st.booleans())
    def undo(self, pick, hold):
        self.operate(pick, (S.SUCCEEDED, S.FAILED, S.SKIPPED), "undo",
                     lambda iid: store.undo(iid, "wrong", actor="op", hold=hold, now=self.now))

    @rule(pick=PICK)
    def set_output(self, pick):
        self.operate(pick, (S.RUNNING, S.QUEUED, S.FAILED), "set output",
                     lambda iid: store.set_output(iid, OUTPUT, reason="by hand", actor="op", now=self.now))

    # ---- the scheduler's sweep -----------------------------------------------------------------

    @rule(seconds=st.sampled_from([0, 1, 5, 29, 30, 31, 60]))
    def tick(self, seconds):
        """Leases expire, retries come due, and what they free is offered, in one tick."""
        self.now += dt.timedelta(seconds=seconds)
        self.act("tick", lambda: tick(self.now))


def test_random_actions_keep_limits_and_let_nothing_wait_needlessly(db_url, backend, tmp_path):
    config = tmp_path / "limits.yaml"
    config.write_text(CONFIG)
    machine = type(f"LimitsMachine_{backend}", (LimitsMachine,),
                   {"url": db_url, "backend": backend, "config": load_config(config), "workdir": tmp_path,
                    "examples": 0})
    try:
        run_state_machine_as_test(machine, settings=settings(
            max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        database.close()
