"""Random sequences of worker and operator actions against tasks that wait `queued`: a task's
`max_running`, a team's `functions.NAME.max_running` shared by two workflows, and `depends_on_past` (one
task `optional`, skipped when it fails for good, and a teardown, `trigger_rule: all_done`, taking a slot of
the shared function too); on SQLite and PostgreSQL, on a fake clock. Worker
messages go through the per-message verbs or the bridge's batch path (with its hand-on after the
commit, as the bridge does it); operators skip, hold, release,
retry, undo, set outputs and cancel runs; the team deploys other limits (in force for every run at once);
the scheduler's tick expires leases, offers due retries and offers what waits queued.

Any action may be refused (a stale token, an instance in the wrong state); a refused one changes nothing.
After every action, straight from the tables:

- no limit in force is ever exceeded by an instance taking a slot: offered or running instances of `a`, of
  `c`, and of the function `shared` over both workflows (past a limit just lowered, none takes one);
- an instance offered in the action under `depends_on_past` has its run before's instance succeeded,
  skipped or cancelled, the run before in place: runs are made by hand, or for nights (logical times)
  before and after the clock's, as a backfill makes them;
- a queued instance is ready (upstream done), in a started run, with no token and no running attempt;
- runs of `load`: at most its max_active_runs running (past it only a run that a running run waits for
  by depends_on_past, which would otherwise wait for it), none queued while a slot is free, none running
  that waits for one queued, and each run started in the action before every one still queued, in place;
- nothing waits needlessly: after a worker's message, an operator's change or the scheduler's tick, no
  queued instance is left that could go (its run before done, a free slot of each of its limits);
- every instance's moves in the ledger are in the transition table and end at its state, and each run
  rebuilt from its ledger (the run as it was) equals the live one.
"""

from __future__ import annotations

import datetime as dt
import functools
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.stateful import rule

from flow45 import states as S
from flow45 import store
from flow45.config import load_config
from tests.store.machine import ActionsMachine, run_machine


def config_text(a: int | None = 1, c: int | None = 1, shared: int | None = 2, runs: int = 3) -> str:
    """The team's file, with these limits of `a`, `c`, the function `shared` (None: none) and `load`'s running
    runs."""
    def most(limit: int | None) -> str:
        return "" if limit is None else f", max_running: {limit}"

    functions = "" if shared is None else f"functions:\n  shared: {{max_running: {shared}}}\n"
    return f"""\
team: acme
types:
  Blob:
    fields: {{uri: string, size: {{type: integer, ge: 0}}}}
{functions}workflows:
  load:
    max_active_runs: {runs}
    tasks:
      a: {{function: fa, output: Blob{most(a)}, retries: 1, retry_delay: 0s, lease: 30s}}
      b: {{function: shared, output: Blob, inputs: {{src: a}}, depends_on_past: true, retries: 1, retry_delay: 5s,
          lease: 30s}}
      c: {{function: shared, output: Blob, inputs: {{src: a}}{most(c)}, lease: 30s, optional: true}}
      z: {{function: shared, output: Blob, inputs: {{src: b}}, after: [c], trigger_rule: all_done, lease: 30s}}
  side:
    max_active_runs: null
    tasks:
      s: {{function: fs, output: Blob}}
      x: {{function: shared, output: Blob, inputs: {{src: s}}, lease: 30s}}
"""


@functools.cache
def limits_config(workdir: Path, a: int | None, c: int | None, shared: int | None, runs: int) -> list:
    """The team's file with these limits, loaded once per test: the examples deploy the same few again
    and again, and parsing the YAML took a third of a deploy."""
    path = workdir / f"limits-{a}{c}{shared}{runs}.yaml"
    path.write_text(config_text(a, c, shared, runs))
    return load_config(path)


CONFIG = config_text()
PAST = {"b"}
MOST_RUNS = 9
LIMIT = st.one_of(st.none(), st.integers(1, 2))


class LimitsMachine(ActionsMachine):
    UPSTREAM = {"a": [], "b": ["a"], "c": ["a"], "z": ["b", "c"], "s": [], "x": ["s"]}
    ALL_DONE = frozenset({"z"})  # a teardown that takes a slot of the shared function too

    def start(self) -> None:
        self.task_limits, self.function_limits, self.most_runs = {"a": 1, "c": 1}, {"shared": 2}, 3  # as CONFIG has them
        self.act("trigger", lambda: store.trigger("acme", "load", actor="cron", now=self.now))

    @rule(a=LIMIT, c=LIMIT, shared=st.one_of(st.none(), st.integers(1, 3)), runs=st.integers(1, 3))
    def redeploy(self, a, c, shared, runs):
        """The team deploys other limits, or takes them away, or adds them back: in force for every run at
        once, the earlier ones' too."""
        config = limits_config(self.workdir, a, c, shared, runs)
        # Checked in the deploy's own act.
        self.task_limits = {task: most for task, most in (("a", a), ("c", c)) if most is not None}
        self.function_limits, self.most_runs = {} if shared is None else {"shared": shared}, runs
        self.act(f"deploy a {a}, c {c}, shared {shared}, runs {runs}",
                 lambda: store.deploy(config, actor="ann", now=self.now))

    @rule(workflow=st.sampled_from(["load", "load", "side"]), seconds=st.integers(0, 10),
          night=st.one_of(st.none(), st.integers(-3, 3)))
    def trigger(self, workflow, seconds, night):
        """A run by hand, or a night's (a schedule's or a backfill's) before or after the clock."""
        if len(self.tables["runs"]) < MOST_RUNS:
            self.now += dt.timedelta(seconds=seconds)
            logical = None if night is None else self.START + dt.timedelta(seconds=10 * night)
            self.act(f"trigger {workflow} for {logical or 'now'}", lambda: store.trigger(
                "acme", workflow, actor="cron", now=self.now, logical_time=logical,
                trigger_kind="manual" if logical is None else "backfill"))

    def check_more(self, before, after, where, by_run, new_events) -> None:
        runs, instances = after["runs"], after["instances"]
        workflow_of = {rid: r["workflow"] for rid, r in runs.items()}
        taking = [i for i in instances.values() if i["state"] in S.TAKING_SLOTS]

        def task_taken(task: str, workflow: int) -> int:
            return sum(1 for i in taking if i["task"] == task and workflow_of[i["run"]] == workflow)

        def function_taken(function: str) -> int:
            return sum(1 for i in taking if i["function"] == function)

        def place(run: int) -> tuple:
            return runs[run]["logical_time"] or runs[run]["created_at"], run

        def run_before(row: dict) -> int | None:
            earlier = [r for r in by_run if place(r) < place(row["run"]) and workflow_of[r] == workflow_of[row["run"]]
                       and row["task"] in by_run[r]]
            return max(earlier, key=place) if earlier and row["task"] in PAST else None

        def past_done(row: dict) -> bool:
            before = run_before(row)
            return before is None or by_run[before][row["task"]]["state"] in S.DONE | {S.CANCELLED}

        # No limit is ever exceeded by an instance taking a slot; one lowered holds what is past it.
        took = [instances[e["instance"]] for e in new_events if e["instance"] is not None
                and e["to_state"] in S.TAKING_SLOTS and e["from_state"] not in S.TAKING_SLOTS]
        for task, most in self.task_limits.items():
            for workflow in set(workflow_of.values()):
                taken = task_taken(task, workflow)
                assert taken <= most or not any(i["task"] == task and workflow_of[i["run"]] == workflow for i in took), (
                    f"{where}: {taken} of {task} at once, {most} at most")
        for function, most in self.function_limits.items():
            assert function_taken(function) <= most or not any(i["function"] == function for i in took), (
                f"{where}: {function_taken(function)} of {function} at once, {most} at most")

        # Offered in this action under depends_on_past: the run before's instance is done.
        for e in new_events:
            if e["instance"] is not None and e["to_state"] == S.AVAILABLE:
                row = instances[e["instance"]]
                if row["task"] in PAST and row["state"] == S.AVAILABLE:
                    assert past_done(row), f"{where}: {row['task']} of run {row['run']} offered before its run before's"

        # Runs: at most max_active_runs running, none queued while a slot is free, and those started
        # in this action before every one still queued, in place.
        load = next(r["workflow"] for r in runs.values() if r["id"] in by_run and set(by_run[r["id"]]) == {"a", "b", "c", "z"})
        running = [rid for rid, r in runs.items() if r["workflow"] == load and r["status"] == S.RUNNING]
        queued = [rid for rid, r in runs.items() if r["workflow"] == load and r["status"] == S.QUEUED]
        # Past the limit only a run given work again that a running run waits for (depends_on_past).
        over = [rid for rid in running if awaited(rid, after["events"])]
        started = [e["run"] for e in new_events if e["instance"] is None and e["to_state"] == S.RUNNING
                   and runs[e["run"]]["workflow"] == load and before["runs"].get(e["run"], {}).get("status") != S.RUNNING]
        assert len(running) - len(over) <= self.most_runs or not set(started) - set(over), (  # one lowered holds
            f"{where}: {len(running)} runs of load running, {self.most_runs} at most")
        assert not queued or len(running) >= self.most_runs, f"{where}: runs {queued} queued with a slot free"
        # A run that holds a slot never waits, by depends_on_past, for a run queued for one.
        for rid in running:
            waiting = [row for row in by_run[rid].values() if row["state"] == S.QUEUED and row["task"] in PAST]
            assert not any(run_before(row) in queued for row in waiting), (
                f"{where}: run {rid} and the queued run before it wait for each other")
        for e in new_events:
            if e["instance"] is None and (e["from_state"], e["to_state"]) == (S.QUEUED, S.RUNNING) and (
                    "over_max_active_runs" not in (e["detail"] or {})):  # a run awaited goes out of turn
                assert all(place(e["run"]) < place(q) for q in queued), (
                    f"{where}: run {e['run']} started before the queued {[q for q in queued if place(q) < place(e['run'])]}")

        running_attempts = {a["instance"] for a in after["attempts"].values() if a["status"] == "running"}
        for iid, row in instances.items():
            if row["state"] != S.QUEUED:
                continue
            run = runs[row["run"]]
            assert run["status"] in (S.RUNNING, S.FAILED), f"{where}: queued {iid} in a {run['status']} run"
            assert row["token"] is None and iid not in running_attempts, f"{where}: queued {iid} has an attempt"
            could_go = (past_done(row)
                        and (row["task"] not in self.task_limits
                             or task_taken(row["task"], workflow_of[row["run"]]) < self.task_limits[row["task"]])
                        and (row["function"] not in self.function_limits
                             or function_taken(row["function"]) < self.function_limits[row["function"]]))
            assert not could_go, f"{where}: queued {iid} ({row['task']}) could go but waits"


def awaited(run: int, events: list[dict]) -> bool:
    """Whether the run's last start was past max_active_runs, a running run waiting for it."""
    started = [e for e in events if e["run"] == run and e["instance"] is None and e["to_state"] == S.RUNNING]
    return bool(started) and "over_max_active_runs" in (started[-1]["detail"] or {})


def test_random_actions_keep_limits_and_let_nothing_wait_needlessly(db_url, backend, tmp_path):
    run_machine(LimitsMachine, CONFIG, db_url, backend, tmp_path)
