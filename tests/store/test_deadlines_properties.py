"""Random worker, operator and scheduler actions against what time decides, on SQLite and PostgreSQL, on a
fake clock that starts minutes before New Year and jumps to either side of each deadline: a lease, a
task's `timeout` and `start_within`, a retry's delay, timers (`wait`, and `wait_until` a time of the run's
day), a run's `timeout` and `sla`, and conditions (`when`) on the run's params, with an `optional` task,
a params type whose fields have defaults, and a teardown (`trigger_rule: all_done`) after the tasks that fail.

After every action, the checks every workflow passes (tests/store/machine.py); and after every tick of
the scheduler at `now`, that nothing it should have done is left undone:

- no running attempt past its lease or its task's timeout, no offer past its `start_within`;
- no retry or timer whose time has come still waiting;
- no run still running longer than its `timeout` since it last became running;
- no unfinished run past its `sla` without its one `sla_missed` event, and never a second one.
"""

from __future__ import annotations

import datetime as dt

from hypothesis import strategies as st
from hypothesis.stateful import rule

from flow45 import states as S
from flow45 import store
from flow45.scheduler import tick
from tests.store.machine import PICK, ActionsMachine, run_machine

CONFIG = """\
team: acme
types:
  Blob:
    fields: {uri: string, size: {type: integer, ge: 0}}
  Go:
    fields: {enrich: {type: boolean, default: true}}
workflows:
  timed:
    params: Go
    max_active_runs: 2
    timeout: 10m
    sla: 5m
    tasks:
      a: {function: fa, output: Blob, timeout: 60s, retries: 1, retry_delay: 10s, lease: 30s, start_within: 2m}
      t: {wait: 90s, after: [a]}
      u: {wait_until: "00:03", after: [a]}
      b: {function: fb, output: Blob, inputs: {src: a}, after: [t], when: {params.enrich: true}, optional: true,
          lease: 30s}
      c: {function: fc, output: Blob, inputs: {src: b}, after: [u], lease: 30s, retries: 2, retry_delay: 20s}
      z: {function: fz, output: Blob, inputs: {src: c}, after: [a], trigger_rule: all_done, lease: 30s}
"""
RUN_TIMEOUT, SLA = dt.timedelta(minutes=10), dt.timedelta(minutes=5)
START_WITHIN = {"a": dt.timedelta(minutes=2)}
MOST_RUNS = 6
# Either side of every deadline above, and jumps past several at once.
JUMPS = st.sampled_from([1, 9, 10, 11, 19, 20, 21, 29, 30, 31, 59, 60, 61, 89, 90, 91, 119, 120, 121, 299, 300, 301,
                         599, 600, 601])


class DeadlinesMachine(ActionsMachine):
    UPSTREAM = {"a": [], "t": ["a"], "u": ["a"], "b": ["a", "t"], "c": ["b", "u"], "z": ["a", "c"]}
    ALL_DONE = frozenset({"z"})
    START = dt.datetime(2027, 12, 31, 23, 56)  # New Year's Eve: the runs' days change under them

    def start(self) -> None:
        self.ticked = False
        self.act("trigger", lambda: store.trigger("acme", "timed", actor="cron", now=self.now))

    @rule(params=st.sampled_from([{}, {"enrich": True}, {"enrich": False}]), seconds=st.integers(0, 40))
    def trigger(self, params, seconds):
        if len(self.tables["runs"]) < MOST_RUNS:
            self.now += dt.timedelta(seconds=seconds)
            self.act(f"trigger {params}", lambda: store.trigger("acme", "timed", params, actor="cron", now=self.now))

    @rule(pick=PICK, seconds=st.integers(0, 40))
    def progress(self, pick, seconds):
        self.now += dt.timedelta(seconds=seconds)
        if (iid := self.pick(pick, (S.RUNNING,))) is not None:
            self.act(f"progress of {iid}", lambda: store.progress(iid, self.token(iid), 50, "half", now=self.now))

    @rule(seconds=JUMPS)
    def tick(self, seconds):
        self.now += dt.timedelta(seconds=seconds)
        self.ticked = True
        self.act("tick", lambda: tick(self.now))
        self.ticked = False

    def check_more(self, before, after, where, by_run, new_events) -> None:
        runs, now = after["runs"], self.now
        for e in after["events"]:  # at most one sla_missed a run, ever
            if e["kind"] == "sla_missed":
                assert sum(1 for f in after["events"] if f["kind"] == "sla_missed" and f["run"] == e["run"]) == 1, (
                    f"{where}: run {e['run']} missed its sla twice")
        for rid, run in runs.items():
            assert run["params"]["enrich"] in (True, False), f"{where}: run {rid} params {run['params']}"
        if not self.ticked:
            return
        for iid, row in after["instances"].items():
            late = f"{where}: instance {iid} ({row['task']}) is {row['state']}"
            if row["state"] == S.RUNNING:
                assert row["lease_expires_at"] >= now, f"{late}, its lease ended at {row['lease_expires_at']}"
                assert row["timeout_at"] is None or row["timeout_at"] >= now, f"{late} past its timeout"
            if row["state"] == S.AVAILABLE and row["task"] in START_WITHIN:
                assert row["offered_at"] + START_WITHIN[row["task"]] >= now, f"{late}, offered {row['offered_at']}"
            if row["state"] in (S.RETRY_WAIT, S.WAITING):
                assert row["not_before"] > now, f"{late}, due at {row['not_before']}"
        for rid, run in runs.items():
            if run["status"] == S.RUNNING:
                since = max(e["at"] for e in after["events"]
                            if e["run"] == rid and e["instance"] is None and e["to_state"] == S.RUNNING)
                assert now - since < RUN_TIMEOUT, f"{where}: run {rid} running since {since}, past its timeout"
            if run["status"] in S.OPEN_RUN and run["created_at"] + SLA <= now:
                assert any(e["kind"] == "sla_missed" and e["run"] == rid for e in after["events"]), (
                    f"{where}: run {rid}, made at {run['created_at']}, missed its sla unrecorded")


def test_after_each_tick_nothing_time_decides_is_left_undone(db_url, backend, tmp_path):
    run_machine(DeadlinesMachine, CONFIG, db_url, backend, tmp_path)
