"""The set-based hot path agrees with the per-message verbs, message for message."""

from __future__ import annotations

import random

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.errors import Flow45Error
from flow45.models import Attempt, Event, Outbox, Run, TaskInstance
from flow45.store.batch import Item, apply_worker_batch
from tests.store.helpers import DIAMOND, T0, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")

OUTPUT = {"uri": "s3://x", "size": 1}


def _snapshot() -> dict:
    """Everything a worker message can change, without ids of rows or random tokens."""
    return {
        "instances": sorted((i.run_id, i.task, i.state, i.attempt, i.failures, i.worker, i.progress_pct)
                            for i in TaskInstance.select()),
        "runs": sorted((r.id, r.status) for r in Run.select()),
        "attempts": sorted((a.instance_id, a.number, a.status, str(a.output), a.error) for a in Attempt.select()),
        "events": [(e.run, e.instance, e.kind, e.from_state, e.to_state, e.actor) for e in Event.select().order_by(Event.id)],
        "outbox": sorted((o.kind, o.routing_key, o.instance, o.body["attempt"]) for o in Outbox.select()),
    }


def _script(seed: int, runs: list[int]) -> list[list[tuple]]:
    """Batches of (message kind, run, task, token choice, extra) drawn at random."""
    rng = random.Random(seed)
    batches = []
    for _ in range(12):
        batch = []
        for _ in range(rng.randint(1, 6)):
            kind = rng.choice(["claim", "claim", "submit", "submit", "progress", "fail", "skip", "bad_submit"])
            batch.append((kind, rng.choice(runs), rng.choice("abcd"), rng.random() < 0.85, rng.random() < 0.2))
        batches.append(batch)
    return batches


def _messages(batch: list[tuple]) -> list[tuple[str, object]]:
    out = []
    for n, (kind, run, task, right_token, repeat) in enumerate(batch):
        row = instance(run, task)
        token = (row.token or "none") if right_token else "stale-token"
        common = {"instance": row.id, "token": token}
        message = {
            "claim": lambda: m.Claim(type="claim", worker="w", **common),
            "submit": lambda: m.Submit(type="submit", output=OUTPUT, **common),
            "bad_submit": lambda: m.Submit(type="submit", output={"uri": 1}, **common),
            "progress": lambda: m.Progress(type="progress", percent=30, **common),
            "fail": lambda: m.Fail(type="fail", error="boom", **common),
            "skip": lambda: m.Skip(type="skip", reason="none", **common),
        }[kind]()
        message_id = f"{kind}-{run}-{task}-{row.attempt}-{n}"
        out.append((message_id, message))
        if repeat:
            out.append((message_id, message))
    return out


def _one_by_one(messages) -> list[str]:
    answers = []
    for message_id, msg in messages:
        try:
            reply = store.apply_message(msg, team="acme", message_id=message_id, now=T0)
            answers.append(f"{reply.state}/{reply.duplicate}")
        except Flow45Error as error:
            answers.append(error.code)
    return answers


def _batched(messages) -> list[str]:
    items = [Item("acme", message_id, msg) for message_id, msg in messages]
    with atomic():
        apply_worker_batch(items, T0)
    return [i.error.code if i.error else f"{i.result.state}/{i.result.duplicate}" for i in items]


@pytest.mark.parametrize("seed", range(8))
def test_batches_do_what_messages_one_by_one_do(tmp_path, seed, store_db, db_url, backend):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 3").replace("retry_delay: 10s", "retry_delay: 0s"))
    results = {}
    for mode, apply in (("single", _one_by_one), ("batch", _batched)):
        from tests.conftest import _empty_postgres
        from flow45.models import ALL_TABLES

        if backend == "postgresql":
            _empty_postgres()
        else:
            for table in reversed(ALL_TABLES[1:]):
                table.delete().execute()
            from flow45.db import forget_cached_rows

            forget_cached_rows()
        deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 3").replace("retry_delay: 10s", "retry_delay: 0s"))
        runs = [store.trigger("acme", "diamond", actor="ann", now=T0) for _ in range(2)]
        answers = []
        random.seed(seed)
        for batch in _script(seed, runs):
            answers.append(apply(_messages(batch)))
        results[mode] = (answers, _snapshot())
    assert results["batch"][0] == results["single"][0]
    assert results["batch"][1] == results["single"][1]



def test_a_batch_marks_the_confirmed_outbox_rows_sent_and_no_others(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    confirmed = Outbox.get(Outbox.instance == instance(run, "a").id)
    start = instance(run, "a")
    with atomic():
        apply_worker_batch([Item("acme", "m1", m.Claim(type="claim", instance=start.id, token=start.token, worker="w"))],
                           T0, sent=[confirmed.id])
        apply_worker_batch([Item("acme", "m2", m.Submit(type="submit", instance=start.id, token=start.token, output=OUTPUT))], T0)
    assert Outbox.get_by_id(confirmed.id).sent_at == T0
    downstream_offers = Outbox.select().where(Outbox.id != confirmed.id)
    assert downstream_offers.count() >= 1
    assert all(row.sent_at is None for row in downstream_offers)
