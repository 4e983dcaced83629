"""Settling a wide run after a worker's message, without reading it whole. A submit, skip or fail
in a run of thousands of tasks read every instance of it to settle the run (42 ms at 5,000 tasks, 34
of them the bridge's CPU, for every team's messages to wait behind). Now only the pending instances
downstream of what changed are candidates, and the run's status comes from the states of the
instances not done. It must decide exactly what reading the run whole decides."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.models import Event, Outbox, TaskInstance
from flow45.store import specs, unit
from flow45.store.batch import Item, apply_worker_batch
from tests.store.helpers import BLOB, T0, complete, deploy_blob_tasks, instance

pytestmark = pytest.mark.usefixtures("store_db")

ITEMS = 90
NAMES = [f"item{n:03d}" for n in range(ITEMS)]


@pytest.fixture(autouse=True)
def fan_in(tmp_path, store_db) -> None:
    """root -> 90 items (item011 retried once) -> join (after all of them, with item000's output) -> tail."""
    retried = {"item011": ", retries: 1, retry_delay: 0s"}
    deploy_blob_tasks(tmp_path, "fan", [
        "root: {function: fr, output: Blob}",
        *(f"{name}: {{function: fi, output: Blob, inputs: {{src: root}}{retried.get(name, '')}}}" for name in NAMES),
        f"join: {{function: fj, output: Blob, inputs: {{first: item000}}, after: [{', '.join(NAMES)}]}}",
        "tail: {function: ft, output: Blob, inputs: {joined: join}}",
    ])


@pytest.fixture
def read_whole(monkeypatch):
    """As before: every run read whole for every message."""
    def use() -> None:
        monkeypatch.setattr(unit, "wide_versions", lambda: [])
        monkeypatch.setattr(specs, "WIDE", 10**9)  # a new run read back whole too
    return use


def apply(messages: list) -> None:
    items = [Item("acme", None, message) for message in messages]
    with atomic():
        apply_worker_batch(items, T0)
    assert [i.error for i in items] == [None] * len(items)


def outcome_for(name: str, row) -> m.Submit | m.Skip | m.Fail:
    if name == "item007":
        return m.Skip(type="skip", instance=row.id, token=row.token, reason="nothing to do")
    if name == "item011":  # its retry is offered again at once: the run goes on
        return m.Fail(type="fail", instance=row.id, token=row.token, error="flaky", retryable=True)
    if name == "item042":
        return m.Fail(type="fail", instance=row.id, token=row.token, error="broken", retryable=False)
    return m.Submit(type="submit", instance=row.id, token=row.token, output={"uri": name, "size": 1})


def drive(run: int, failing: set[str]) -> None:
    """The items claimed and finished ten to a batch, as the bridge takes them; `failing` of them fail
    for good, item007 skips, item011 fails once; then the join and the tail, if offered."""
    complete(run, "root", BLOB)
    for start in range(0, ITEMS, 10):
        names = NAMES[start:start + 10]
        rows = [instance(run, name) for name in names]
        apply([m.Claim(type="claim", instance=r.id, token=r.token, worker="w") for r in rows])
        apply([outcome_for(name, row) if name in failing | {"item007", "item011"}
               else outcome_for("", row) for name, row in zip(names, rows)])
    again = instance(run, "item011")
    assert again.state == "available"
    apply([m.Claim(type="claim", instance=again.id, token=again.token, worker="w")])
    apply([m.Submit(type="submit", instance=again.id, token=again.token, output={"uri": "again", "size": 2})])
    for task in ("join", "tail"):
        if instance(run, task).state == "available":
            complete(run, task, BLOB)


def what_happened(run: int) -> dict:
    """Everything a reader sees of the run, by task name (run and instance ids differ between runs)."""
    task_of = {i.id: i.task for i in TaskInstance.select().where(TaskInstance.run == run)}
    return {
        "status": store.get_run(run).status,
        "instances": {i.task: (i.state, i.attempt) for i in TaskInstance.select().where(TaskInstance.run == run)},
        "ledger": [(e.kind, task_of.get(e.instance), e.from_state, e.to_state)
                   for e in Event.select().where(Event.run == run).order_by(Event.id)],
        "offers": [(task_of[o.instance], o.body["attempt"], o.body["inputs"])
                   for o in Outbox.select().where(Outbox.instance.in_(list(task_of))).order_by(Outbox.id)],
    }


@pytest.mark.parametrize("failing", [set(), {"item042"}], ids=["all-succeed", "one-fails"])
def test_a_wide_run_settles_as_when_read_whole(read_whole, rows_read, failing):
    wide = store.trigger("acme", "fan", actor="ann", now=T0)
    drive(wide, failing)
    assert rows_read[0] == 1 and max(rows_read) <= ITEMS  # the trigger reads the root; nothing reads the whole run
    read_whole()
    rows_read.clear()
    whole = store.trigger("acme", "fan", actor="ann", now=T0)
    drive(whole, failing)
    assert rows_read.count(ITEMS + 3) >= 2 * ITEMS // 10  # every batch of claims or outcomes read it whole
    seen = what_happened(wide)
    assert seen == what_happened(whole)
    if failing:
        assert seen["status"] == "failed" and seen["instances"]["join"] == ("pending", 0)
    else:
        assert seen["status"] == "succeeded"
        [join_offer] = [o for o in seen["offers"] if o[0] == "join"]
        assert join_offer[2] == {"first": {"uri": "", "size": 1}}
        assert [kind for kind, task, _, to in seen["ledger"] if task is None][-1:] == ["run"]


def claimed(name: str, done_before: list[str] = ()) -> tuple[int, TaskInstance]:
    """A run of `fan` with root and `done_before` done, and the instance of `name` claimed."""
    run = store.trigger("acme", "fan", actor="ann", now=T0)
    for done in ["root", *done_before]:
        complete(run, done, BLOB)
    item = instance(run, name)
    store.claim(item.id, item.token, "w", now=T0)
    return run, item


def test_a_submit_in_a_wide_run_reads_its_instance_alone(rows_read):
    run, item = claimed("item003")
    rows_read.clear()
    store.submit(item.id, item.token, BLOB, now=T0)
    assert rows_read == [1]
    assert instance(run, "join").state == "pending" and store.get_run(run).status == "running"


def test_the_last_upstream_submit_offers_the_fan_in_reading_it_and_its_input(rows_read):
    run, last = claimed(NAMES[-1], NAMES[:-1])
    rows_read.clear()
    store.submit(last.id, last.token, BLOB, now=T0)
    assert sum(rows_read) == 3  # the submitted one, the join, and item000 its input comes from
    join = instance(run, "join")
    assert join.state == "available"
    [offer] = Outbox.select().where(Outbox.instance == join.id)
    assert offer.body["inputs"] == {"first": BLOB}


def test_a_failure_for_good_fails_the_wide_run_once_the_rest_has_ended(rows_read):
    run, item = claimed("item005")
    rows_read.clear()
    store.fail(item.id, item.token, "broken", retryable=False, now=T0)
    assert rows_read == [1]
    assert store.get_run(run).status == "running"  # 89 items still offered
    rest = [instance(run, name) for name in NAMES if name != "item005"]
    apply([m.Claim(type="claim", instance=r.id, token=r.token, worker="w") for r in rest])
    apply([m.Submit(type="submit", instance=r.id, token=r.token, output=BLOB) for r in rest[:-1]])
    assert store.get_run(run).status == "running"
    rows_read.clear()
    apply([m.Submit(type="submit", instance=rest[-1].id, token=rest[-1].token, output=BLOB)])
    assert rows_read == [1]  # still not read whole
    assert store.get_run(run).status == "failed"  # join waits for good behind item005: nothing is on its way


OUTCOMES = ["submit", "submit", "submit", "skip", "fail_once"]
shapes = itertools.count()


@st.composite
def wide_workflows(draw) -> tuple[list[list[int]], list[str], int]:
    """A random graph of 66 to 80 tasks (each after up to three earlier ones, the first of them its
    input), what each task's worker does (one may fail for good), and how many instances the workers
    take at a time."""
    size = draw(st.integers(66, 80))
    upstream = [draw(st.lists(st.integers(0, n - 1), max_size=3, unique=True)) if n else [] for n in range(size)]
    outcomes = draw(st.lists(st.sampled_from(OUTCOMES), min_size=size, max_size=size))
    if draw(st.booleans()):
        outcomes[draw(st.integers(0, size - 1))] = "fail"
    return upstream, outcomes, draw(st.integers(1, 25))


def deploy_graph(tmp_path, upstream: list[list[int]], outcomes: list[str]) -> str:
    name = f"graph{next(shapes)}"
    lines = []
    for n, ups in enumerate(upstream):
        parts = ["function: " + ("fed" if ups else "first"), "output: Blob"]  # one signature a function
        if ups:
            parts.append(f"inputs: {{src: t{ups[0]:02d}}}")
        if ups[1:]:
            parts.append(f"after: [{', '.join(f't{u:02d}' for u in ups[1:])}]")
        if outcomes[n] == "fail_once":
            parts += ["retries: 1", "retry_delay: 0s"]
        lines.append(f"t{n:02d}: {{{', '.join(parts)}}}")
    deploy_blob_tasks(tmp_path, name, lines)
    return name


def drive_graph(run: int, outcomes: list[str], at_a_time: int) -> None:
    """Workers take whatever is available, `at_a_time` to a batch, until nothing is."""
    while available := sorted((i for i in TaskInstance.select().where(TaskInstance.run == run)
                               if i.state == "available"), key=lambda i: i.task):
        for start in range(0, len(available), at_a_time):
            rows = available[start:start + at_a_time]
            apply([m.Claim(type="claim", instance=r.id, token=r.token, worker="w") for r in rows])
            finished = []
            for row in rows:
                outcome = outcomes[int(row.task[1:])]
                if outcome == "fail_once" and row.attempt == 1 or outcome == "fail":
                    finished.append(m.Fail(type="fail", instance=row.id, token=row.token, error="x", retryable=True))
                elif outcome == "skip":
                    finished.append(m.Skip(type="skip", instance=row.id, token=row.token, reason="none"))
                else:
                    finished.append(m.Submit(type="submit", instance=row.id, token=row.token,
                                             output={"uri": row.task, "size": row.attempt}))
            apply(finished)


@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(graph=wide_workflows())
def test_random_wide_runs_settle_as_when_read_whole(tmp_path, monkeypatch, graph):
    upstream, outcomes, at_a_time = graph
    workflow = deploy_graph(tmp_path, upstream, outcomes)
    wide = store.trigger("acme", workflow, actor="ann", now=T0)
    drive_graph(wide, outcomes, at_a_time)
    with monkeypatch.context() as patched:
        patched.setattr(unit, "wide_versions", lambda: [])
        patched.setattr(specs, "WIDE", 10**9)
        whole = store.trigger("acme", workflow, actor="ann", now=T0)
        drive_graph(whole, outcomes, at_a_time)
    assert what_happened(wide) == what_happened(whole)
