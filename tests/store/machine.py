"""The state machine the store's invariant-checking property tests share: random worker, operator and
scheduler actions on a fake clock, each either refused (changing nothing) or applied, with the checks every
workflow must pass after each: the ledger's moves are legal and end at each state, the run as it was
equals the run, nothing runs before its upstream is done and nothing ready is left pending. A test
subclasses it with its workflow (`UPSTREAM`, its first `start()`) and checks of its own (`check_more`)."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

from hypothesis import HealthCheck, settings, strategies as st
from hypothesis.stateful import RuleBasedStateMachine, rule, run_state_machine_as_test

from flow45 import messages as m
from flow45 import states as S
from flow45 import store
from flow45.config import load_config
from flow45.db import atomic, database
from flow45.errors import Flow45Error
from flow45.models import Attempt, Event, Run, TaskInstance
from flow45.scheduler import tick
from flow45.store.asof import replay, run_events
from flow45.store.batch import Item, apply_worker_batch
from flow45.store.sweep import hand_on
from tests.store.helpers import T0, fresh_store

OUTPUT = {"uri": "s3://out", "size": 1}
REFUSALS = (Flow45Error,)  # a refusal that names why; it must change nothing
MAX_EXAMPLES = int(os.environ.get("FLOW45_PROPERTY_EXAMPLES", "18"))
STEPS = int(os.environ.get("FLOW45_PROPERTY_STEPS", "60"))
PICK = st.integers(0, 63)
VIA = st.sampled_from(["verb", "batch"])
TICK_SECONDS = st.sampled_from([0, 1, 5, 29, 30, 31, 60])


ON_ITS_WAY = {S.AVAILABLE, S.RUNNING, S.QUEUED, S.WAITING, S.RETRY_WAIT}  # ends by itself, unlike pending or held


def run_status(states: list[str], was: str | None) -> str:
    """A started run's status from its instances' states: a failure for good fails it once nothing else of
    it is on its way, and a run failed before stays failed."""
    if S.FAILED in states:
        return S.FAILED if was == S.FAILED or not ON_ITS_WAY & set(states) else S.RUNNING
    return S.SUCCEEDED if all(s in S.DONE for s in states) else S.RUNNING


def ready(task: str, run: dict[str, dict], upstream: dict[str, list[str]], all_done: frozenset[str],
          one_failed: frozenset[str] = frozenset(), one_success: frozenset[str] = frozenset()) -> bool:
    """Whether the task's upstream lets it go in this run (task -> instance row), offered or, a `one_failed`
    task without a failure upstream or a `one_success` one whose upstream was all skipped, skipped;
    `upstream`, `all_done`, `one_failed` and `one_success`: the model's own copy of the workflow."""
    if task in one_success:
        return (any(run[up]["state"] == S.SUCCEEDED for up in upstream[task])
                or all(run[up]["state"] in S.DONE for up in upstream[task]))
    if task in one_failed:
        return (all(run[up]["state"] in S.DONE for up in upstream[task])
                or failure_upstream(task, run, upstream, all_done | one_failed, one_success))
    if task not in all_done:
        return all(run[up]["state"] in S.DONE for up in upstream[task])
    return all(run[up]["state"] in S.DONE | {S.FAILED}
               or never_runs(up, run, upstream, all_done | one_failed, one_success) for up in upstream[task])


def failure_upstream(task: str, run: dict[str, dict], upstream: dict[str, list[str]], after_failure: frozenset[str],
                     one_success: frozenset[str] = frozenset()):
    """An upstream of the task failed for good, or never runs because of such a failure."""
    return any(run[up]["state"] == S.FAILED or never_runs(up, run, upstream, after_failure, one_success)
               for up in upstream[task])


def never_runs(task: str, run: dict[str, dict], upstream: dict[str, list[str]], after_failure: frozenset[str],
               one_success: frozenset[str] = frozenset()) -> bool:
    """Pending (or held) behind an upstream that failed for good, or one that never runs itself;
    `after_failure`: the tasks a failure lets go (all_done, one_failed), which never wait for good. A
    `one_success` task never runs once none of its upstream can succeed, one of them failed; held with one
    done, it may run once released."""
    state = run[task]["state"]
    if state not in (S.PENDING, S.HELD) or task in after_failure:
        return False
    failed = [run[up]["state"] == S.FAILED or never_runs(up, run, upstream, after_failure, one_success)
              for up in upstream[task]]
    if task not in one_success:
        return any(failed)
    done = [run[up]["state"] in S.DONE for up in upstream[task]]
    if state == S.HELD and any(done):
        return False
    return any(failed) and all(f or (d and run[up]["state"] == S.SKIPPED)
                               for f, d, up in zip(failed, done, upstream[task]))


def rows_of(model) -> list[dict]:
    """Every row of `model`'s table by id, as `model.select().dicts()` gives them (field names, Python
    values). The query's text is made once per table and backend: read after every action, building it
    anew took two thirds of the read."""
    key = (model, type(database.obj))
    if key not in _READS:
        sql, params = model.select().order_by(model.id).sql()
        _READS[key] = sql, params, [(f.name, f.python_value) for f in model._meta.sorted_fields]
    sql, params, fields = _READS[key]
    return [{name: value(raw) for (name, value), raw in zip(fields, row)}
            for row in database.execute_sql(sql, params).fetchall()]


_READS: dict = {}


def read_tables() -> dict:
    """Runs, instances, attempts and the ledger, straight from the tables."""
    return {
        "runs": {r["id"]: r for r in rows_of(Run)},
        "instances": {i["id"]: i for i in rows_of(TaskInstance)},
        "attempts": {a["id"]: a for a in rows_of(Attempt)},
        "events": rows_of(Event),
    }


class ActionsMachine(RuleBasedStateMachine):
    url: str
    backend: str
    config: list
    workdir: Path
    examples = 0
    UPSTREAM: dict[str, list[str]] = {}  # the model's own copy of the workflows: task -> its upstream tasks
    ALL_DONE: frozenset[str] = frozenset()  # the tasks with `trigger_rule: all_done`: a failed upstream lets them go
    START = T0  # the fake clock's first reading

    def __init__(self):
        super().__init__()
        cls = type(self)
        cls.examples += 1
        fresh_store(self.backend, self.url, self.workdir / f"example-{cls.examples}.db")
        store.deploy(self.config, actor="tester", now=self.START)
        self.now = self.START
        self.counter = 0
        self.tables = read_tables()
        self.start()

    def start(self) -> None:
        """The example's first action."""

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
        by_run: dict[int, dict[str, dict]] = {}
        for row in instances.values():
            by_run.setdefault(row["run"], {})[row["task"]] = row
        for iid, row in instances.items():
            run = runs[row["run"]]
            ready = self.ready(row["task"], by_run[row["run"]])
            if row["state"] in (S.AVAILABLE, S.RUNNING, S.WAITING, S.QUEUED):
                assert ready, f"{where}: {iid} ({row['task']}) is {row['state']} before its upstream is done"
            if row["state"] == S.PENDING and run["status"] in (S.RUNNING, S.FAILED, S.SUCCEEDED):
                assert not ready, f"{where}: {iid} ({row['task']}) is ready but left pending"
        for rid, run in runs.items():
            mine = [i["state"] for i in instances.values() if i["run"] == rid]
            if run["status"] in (S.RUNNING, S.FAILED, S.SUCCEEDED):
                expected = run_status(mine, before["runs"].get(rid, {}).get("status"))
                assert run["status"] == expected, f"{where}: run {rid} is {run['status']}, its instances {mine}"

        # The ledger's moves are legal and end at each instance's state; the run as it was is the run.
        new_events = after["events"][len(before["events"]):]
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
        self.check_more(before, after, where, by_run, new_events)

    def ready(self, task: str, run: dict[str, dict]) -> bool:
        return ready(task, run, self.UPSTREAM, self.ALL_DONE)

    def check_more(self, before: dict, after: dict, where: str, by_run: dict[int, dict[str, dict]],
                   new_events: list[dict]) -> None:
        """A test's own checks after each action."""

    # ---- runs ----------------------------------------------------------------------------------

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
        def planned_then_done(iid: int) -> None:
            plan = store.plan_undo(iid, hold=hold)  # what the operator is shown, then what the undo does
            store.undo(iid, "wrong", actor="op", hold=hold, now=self.now)
            became = dict(TaskInstance.select(TaskInstance.id, TaskInstance.state)
                          .where(TaskInstance.id.in_([a.instance for a in plan.affected])).tuples())
            assert {a.instance: a.becomes for a in plan.affected} == became, f"undo {iid}: the plan said otherwise"

        self.operate(pick, (S.SUCCEEDED, S.FAILED, S.SKIPPED), "undo", planned_then_done)

    @rule(pick=PICK)
    def set_output(self, pick):
        self.operate(pick, (S.RUNNING, S.QUEUED, S.FAILED), "set output",
                     lambda iid: store.set_output(iid, OUTPUT, reason="by hand", actor="op", now=self.now))

    # ---- the scheduler's sweep -----------------------------------------------------------------

    @rule(seconds=TICK_SECONDS)
    def tick(self, seconds):
        """The scheduler's tick: leases expire, retries come due, and what they free is offered."""
        self.now += dt.timedelta(seconds=seconds)
        self.act("tick", lambda: tick(self.now))




def run_machine(machine: type[ActionsMachine], config_text: str, db_url: str, backend: str, tmp_path: Path) -> None:
    """Run `machine` on `config_text` (a team's YAML) against the test's database."""
    config = tmp_path / "machine.yaml"
    config.write_text(config_text)
    subclass = type(f"{machine.__name__}_{backend}", (machine,),
                    {"url": db_url, "backend": backend, "config": load_config(config), "workdir": tmp_path,
                     "examples": 0})
    try:
        run_state_machine_as_test(subclass, settings=settings(
            max_examples=MAX_EXAMPLES, stateful_step_count=STEPS, deadline=None, database=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much]))
    finally:
        database.close()
