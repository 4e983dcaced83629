"""Races, on SQLite (a file) and PostgreSQL: many threads or processes, each with its own connection,
hitting one instance, one run or one workflow at the same moment, through the per-message verbs,
the bridge's batch path, or both. Each scenario is repeated to shake the race."""

from __future__ import annotations

import itertools
import multiprocessing
import random
import threading
import time
from typing import Any, Callable

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic, database
from flow45.errors import StaleToken
from flow45.models import Attempt, Event, Outbox, Run, TaskInstance
from flow45.store.batch import Item, apply_worker_batch
from tests.store.helpers import BLOB, T0, claim, complete, deploy_blob_tasks, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

THREADS = 6
PROCESSES = 4
ROUNDS = 5

FAN = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      fan:
        tasks:
          a: {function: fa, output: Blob}
          b: {function: fb, output: Blob, inputs: {src: a}}
          c: {function: fc, output: Blob, inputs: {src: a}}
          d: {function: fd, output: Blob, inputs: {left: b, right: c}}
      pair:
        max_active_runs: 2
        tasks:
          t: {function: ft, output: Blob}
      solo:
        max_active_runs: 1
        tasks:
          t: {function: ft, output: Blob}
"""


def at_once(calls: list[Callable[[], Any]]) -> list[tuple[str, Any]]:
    """Run each call in its own thread (so on its own connection), released together by a barrier.
    Returns ("ok", result) or ("error", exception) per call, in order."""
    barrier = threading.Barrier(len(calls))
    results: list[tuple[str, Any]] = [("missing", None)] * len(calls)

    def body(index: int) -> None:
        try:
            barrier.wait(timeout=30)
            results[index] = ("ok", calls[index]())
        except BaseException as exc:  # noqa: BLE001 - reported to the test
            results[index] = ("error", exc)
        finally:
            database.close()  # this thread's connection

    threads = [threading.Thread(target=body, args=(i,)) for i in range(len(calls))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "a thread hung"
    return results


def _errors(results, allowed=()) -> list[BaseException]:
    return [value for kind, value in results if kind == "error" and not isinstance(value, allowed)]


# Worker messages go through the per-message verbs (CLI, local SDK) or the bridge's batch path;
# "mixed" sends every other one each way, as when both run against one database.
VIAS = ["verb", "batch", "mixed"]


def _batch_of_one(message, message_id: str | None = None):
    item = Item("acme", message_id or f"m-{next(_ids)}", message)
    with atomic():
        apply_worker_batch([item], T0)
    if item.error is not None:
        raise item.error
    return item.result


_ids = itertools.count()


def send_claim(via: str, n: int, instance_id: int, token: str, worker: str, message_id: str | None = None):
    if via == "batch" or (via == "mixed" and n % 2):
        return _batch_of_one(m.Claim(type="claim", instance=instance_id, token=token, worker=worker), message_id)
    return store.claim(instance_id, token, worker, now=T0, team="acme", message_id=message_id)


def send_submit(via: str, n: int, instance_id: int, token: str, output, message_id: str | None = None):
    if via == "batch" or (via == "mixed" and n % 2):
        return _batch_of_one(m.Submit(type="submit", instance=instance_id, token=token, output=output), message_id)
    return store.submit(instance_id, token, output, now=T0, team="acme", message_id=message_id)


@pytest.mark.parametrize("via", VIAS)
def test_one_claim_wins_across_threads(tmp_path, via):
    deploy_text(tmp_path, FAN)
    for _ in range(ROUNDS):
        run = store.trigger("acme", "fan", actor="ann", now=T0)
        a = instance(run, "a")
        results = at_once([
            (lambda i=i: send_claim(via, i, a.id, a.token, f"w{i}")) for i in range(THREADS)
        ])
        assert _errors(results, StaleToken) == []
        granted = [value for kind, value in results if kind == "ok"]
        assert len(granted) == 1, results
        assert sum(1 for kind, _ in results if kind == "error") == THREADS - 1
        winner = next(f"w{i}" for i, (kind, _) in enumerate(results) if kind == "ok")
        row = instance(run, "a")
        assert row.state == "running" and row.token == a.token and row.worker == winner
        attempts = list(Attempt.select().where(Attempt.instance == a.id))
        assert [(x.status, x.token) for x in attempts] == [("running", a.token)]
        assert Event.select().where((Event.instance == a.id) & (Event.kind == "claim")).count() == 1


def _claim_in_process(url, jobs, results, barrier) -> None:
    """A worker process: its own interpreter and connection; claims what it is told, all at once."""
    from flow45 import store as child_store
    from flow45.db import connect
    from flow45.errors import StaleToken as ChildStale
    from flow45.settings import Settings, use_settings

    use_settings(Settings(database_url=url))
    db = connect(url)
    try:
        while (job := jobs.get()) is not None:
            instance_id, token, worker = job
            barrier.wait(timeout=60)
            try:
                child_store.claim(instance_id, token, worker, now=T0)
                results.put((worker, "granted"))
            except ChildStale:
                results.put((worker, "stale"))
            except BaseException as exc:  # noqa: BLE001 - reported to the test
                results.put((worker, f"{type(exc).__name__}: {exc}"))
    finally:
        db.close()


def test_one_claim_wins_across_processes(tmp_path, db_url):
    deploy_text(tmp_path, FAN)
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(PROCESSES)
    results = ctx.Queue()
    queues = [ctx.Queue() for _ in range(PROCESSES)]
    procs = [
        ctx.Process(target=_claim_in_process, args=(db_url, q, results, barrier), daemon=True) for q in queues
    ]
    for p in procs:
        p.start()
    try:
        for round_ in range(ROUNDS):
            run = store.trigger("acme", "fan", actor="ann", now=T0)
            a = instance(run, "a")
            for i, q in enumerate(queues):
                q.put((a.id, a.token, f"p{i}-r{round_}"))
            answers = dict(results.get(timeout=120) for _ in range(PROCESSES))
            assert sorted(answers.values()) == ["granted"] + ["stale"] * (PROCESSES - 1), answers
            winner = next(w for w, answer in answers.items() if answer == "granted")
            row = instance(run, "a")
            assert row.state == "running" and row.worker == winner
            assert Attempt.select().where(Attempt.instance == a.id).count() == 1
    finally:
        for q in queues:
            q.put(None)
        for p in procs:
            p.join(timeout=60)
            if p.is_alive():
                p.terminate()
    assert [p.exitcode for p in procs] == [0] * PROCESSES


@pytest.mark.parametrize("via", VIAS)
def test_fan_in_branches_finishing_at_once_offer_the_join_once(tmp_path, via):
    deploy_text(tmp_path, FAN)
    for _ in range(ROUNDS):
        run = store.trigger("acme", "fan", actor="ann", now=T0)
        complete(run, "a", BLOB)
        b, c = claim(run, "b"), claim(run, "c")
        results = at_once([
            lambda: send_submit(via, 0, b.instance, b.token, {"uri": "b", "size": 2}),
            lambda: send_submit(via, 1, c.instance, c.token, {"uri": "c", "size": 3}),
        ])
        assert _errors(results) == []
        d = instance(run, "d")
        assert states(run) == {"a": "succeeded", "b": "succeeded", "c": "succeeded", "d": "available"}
        offers = list(Outbox.select().where((Outbox.instance == d.id) & (Outbox.kind == "offer")))
        assert len(offers) == 1 and offers[0].body["token"] == d.token
        assert offers[0].body["inputs"] == {"left": {"uri": "b", "size": 2}, "right": {"uri": "c", "size": 3}}
        assert Event.select().where((Event.instance == d.id) & (Event.to_state == "available")).count() == 1
        assert store.get_run(run).status == "running"
        complete(run, "d", BLOB)
        assert store.get_run(run).status == "succeeded"


WIDE_ITEMS = [f"item{n:02d}" for n in range(70)]  # past specs.WIDE: not read whole to settle


def _batch(messages: list) -> list:
    items = [Item("acme", None, message) for message in messages]
    with atomic():
        apply_worker_batch(items, T0)
    assert [i.error for i in items] == [None] * len(items)
    return [i.result for i in items]


@pytest.mark.parametrize("via", VIAS)
def test_the_last_branches_of_a_wide_run_finishing_at_once_offer_the_join_once(tmp_path, via):
    """Each submit settles the run from the states of the instances not done, as stored: the run's
    lock must order them, or two last branches could each see the other not done, and the join wait forever."""
    deploy_blob_tasks(tmp_path, "wide", [
        "root: {function: fr, output: Blob}",
        *(f"{name}: {{function: fi, output: Blob, inputs: {{src: root}}}}" for name in WIDE_ITEMS),
        f"join: {{function: fj, output: Blob, after: [{', '.join(WIDE_ITEMS)}]}}",
    ])
    for _ in range(ROUNDS):
        run = store.trigger("acme", "wide", actor="ann", now=T0)
        complete(run, "root", BLOB)
        rows = [instance(run, name) for name in WIDE_ITEMS]
        granted = _batch([m.Claim(type="claim", instance=r.id, token=r.token, worker="w") for r in rows])
        early, last = granted[:-THREADS], granted[-THREADS:]
        _batch([m.Submit(type="submit", instance=g.instance, token=g.token, output=BLOB) for g in early])
        results = at_once([(lambda n=n, g=g: send_submit(via, n, g.instance, g.token, BLOB))
                           for n, g in enumerate(last)])
        assert _errors(results) == []
        join = instance(run, "join")
        assert join.state == "available"
        assert Outbox.select().where((Outbox.instance == join.id) & (Outbox.kind == "offer")).count() == 1
        assert Event.select().where((Event.instance == join.id) & (Event.to_state == "available")).count() == 1
        complete(run, "join", BLOB)
        assert store.get_run(run).status == "succeeded"


@pytest.mark.parametrize("via", VIAS)
def test_runs_finishing_at_once_start_a_queued_run_once(tmp_path, via):
    """Two runs of a workflow with max_active_runs: 2 finish together while a third waits:
    it is started exactly once and neither finishing submit is refused."""
    deploy_text(tmp_path, FAN)
    for _ in range(ROUNDS):
        first = store.trigger("acme", "pair", actor="ann", now=T0)
        second = store.trigger("acme", "pair", actor="ann", now=T0)
        waiting = store.trigger("acme", "pair", actor="ann", now=T0)
        assert store.get_run(waiting).status == "queued"
        g1, g2 = claim(first, "t"), claim(second, "t")
        results = at_once([
            lambda: send_submit(via, 0, g1.instance, g1.token, BLOB),
            lambda: send_submit(via, 1, g2.instance, g2.token, BLOB),
        ])
        assert _errors(results) == []
        assert [store.get_run(r).status for r in (first, second, waiting)] == ["succeeded", "succeeded", "running"]
        assert Event.select().where((Event.run == waiting) & (Event.kind == "start")).count() == 1
        t = instance(waiting, "t")
        assert Outbox.select().where((Outbox.instance == t.id) & (Outbox.kind == "offer")).count() == 1
        complete(waiting, "t", BLOB)
    assert Run.select().where(Run.status != "succeeded").count() == 0


@pytest.mark.parametrize("via", ["verb", "batch"])
def test_a_run_triggered_while_the_active_one_finishes_is_not_left_queued(tmp_path, via):
    """max_active_runs: 1. The active run finishes while a new run is triggered: whichever commits
    first, the new run must end up running, not queued with a free slot and nothing to start it."""
    deploy_text(tmp_path, FAN)
    jitter = random.Random(45)
    for _ in range(4 * ROUNDS):
        active = store.trigger("acme", "solo", actor="ann", now=T0)
        grant = claim(active, "t")
        delay = jitter.uniform(0, 0.008)  # sweeps the trigger across the finishing transaction

        def late_trigger():
            time.sleep(delay)
            return store.trigger("acme", "solo", actor="ann", now=T0)

        results = at_once([lambda: send_submit(via, 1, grant.instance, grant.token, BLOB), late_trigger])
        assert _errors(results) == []
        new = results[1][1]
        assert store.get_run(active).status == "succeeded"
        assert store.get_run(new).status == "running", "queued although no run of the workflow is active"
        complete(new, "t", BLOB)


@pytest.mark.parametrize("via", VIAS)
def test_one_message_delivered_twice_at_once_takes_effect_once(tmp_path, via):
    """A redelivered submit processed concurrently with the original is answered as a duplicate."""
    deploy_text(tmp_path, FAN)
    for round_ in range(ROUNDS):
        run = store.trigger("acme", "fan", actor="ann", now=T0)
        grant = claim(run, "a")
        results = at_once([
            (lambda i=i: send_submit(via, i, grant.instance, grant.token, BLOB, message_id=f"m{round_}"))
            for i in range(THREADS)
        ])
        assert _errors(results) == []
        replies = [value for _, value in results]
        assert sorted(r.duplicate for r in replies) == [False] + [True] * (THREADS - 1)
        assert {r.state for r in replies} == {"succeeded"}
        assert Event.select().where((Event.instance == grant.instance) & (Event.kind == "submit")).count() == 1


def test_one_key_triggered_at_once_makes_one_run_and_every_caller_gets_it(tmp_path):
    deploy_blob_tasks(tmp_path, "unlimited", ["t: {function: ft, output: Blob}"])  # no run limit: no lock taken for it
    for round_ in range(ROUNDS):
        key = f"order-{round_}"
        results = at_once([lambda: store.trigger_run("acme", "unlimited", actor="shop", now=T0, key=key)] * THREADS)
        assert not _errors(results)
        answers = [value for _, value in results]
        assert len({a.run for a in answers}) == 1
        assert sorted(a.existing for a in answers) == [False] + [True] * (THREADS - 1)
    assert Run.select().count() == ROUNDS


def _available() -> list[tuple[int, str]]:
    """(run, task) of every instance offered now, in one query: these tests read it after each
    completion, and a read of each run in turn grew with the runs the rounds made."""
    return list(TaskInstance.select(TaskInstance.run, TaskInstance.task)
                .where(TaskInstance.state == "available").order_by(TaskInstance.run, TaskInstance.task).tuples())


def test_runs_triggered_at_once_never_take_more_slots_than_their_tasks_max_running(tmp_path):
    deploy_blob_tasks(tmp_path, "calls", ["call: {function: call_crm, output: Blob, max_running: 2}"])

    def offered() -> list[int]:
        return [run for run, _ in _available()]

    for _ in range(ROUNDS):
        results = at_once([lambda: store.trigger("acme", "calls", actor="cron", now=T0)] * THREADS)
        assert not _errors(results)
        assert 1 <= len(offered()) <= 2  # a writer that finds another counting queues its instance
        while offered() or store.offer_queued(T0):  # the sweep fills the slots, never past them
            assert 1 <= len(offered()) <= 2
            for run in offered():
                complete(run, "call", BLOB)
    assert {states(r.id)["call"] for r in Run.select()} == {"succeeded"}


def test_runs_of_two_workflows_triggered_at_once_never_take_more_than_their_functions_limit(tmp_path):
    deploy_text(tmp_path, """
    team: acme
    types: {Blob: {fields: {uri: string, size: integer}}}
    functions: {call_crm: {max_running: 2}}
    workflows:
      orders: {max_active_runs: null, tasks: {call: {function: call_crm, output: Blob}}}
      refunds: {max_active_runs: null, tasks: {check: {function: call_crm, output: Blob}}}
    """)

    def offered() -> list[tuple[int, str]]:
        return _available()

    for _ in range(ROUNDS):
        results = at_once([lambda n=n: store.trigger("acme", ("orders", "refunds")[n % 2], actor="shop", now=T0)
                           for n in range(THREADS)])
        assert not _errors(results)
        while offered() or store.offer_queued(T0):
            assert 1 <= len(offered()) <= 2
            for run, task in offered():
                complete(run, task, BLOB)
    assert {state for r in Run.select() for state in states(r.id).values()} == {"succeeded"}
