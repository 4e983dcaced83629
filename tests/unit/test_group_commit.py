"""Group commit in the bridge (bridge.commits): which deliveries leave together, which wait, and in
what order, with the committers and the IO loop replaced by recorders (no servers)."""

from __future__ import annotations

from prometheus_client import REGISTRY

from bridge.batch import Applied, DatabaseUnavailable, Outcome
from bridge.commits import Batcher, Job, Waiting
from bridge.inbound import Delivery, Inbound
from flow45.messages import Claim, Submit


class Loop:
    """pika's IO loop as far as the batcher uses it: callbacks run when `run()` is called."""

    def __init__(self) -> None:
        self.callbacks: list = []

    def call_later(self, _delay, callback) -> None:
        self.callbacks.append(callback)

    def add_callback_threadsafe(self, callback) -> None:
        self.callbacks.append(callback)

    def run(self) -> None:
        while self.callbacks:
            self.callbacks.pop(0)()


class Pool:
    """Committers that hold each batch until the test finishes it."""

    size = 2

    def __init__(self) -> None:
        self.jobs: list[Job] = []

    def submit(self, job: Job) -> None:
        self.jobs.append(job)


def _offer(instance: int, run: int) -> dict:
    """An offer's body, as far as lanes read it."""
    return {"instance": instance, "run": run, "team": "reports", "function": "step"}


def _arrive(batcher: Batcher, tag: int, message) -> None:
    delivery = Delivery(tag, "flow45.in.reports", "reports-worker", f"m{tag}", None, None, b"{}")
    inbound = Inbound("reports", "reports-worker", "worker", f"m{tag}", message)
    batcher.add(Waiting(delivery, inbound, batcher.lanes.of(inbound), 0.0))


def _claim(instance: int) -> Claim:
    return Claim(type="claim", instance=instance, token="t", worker="w")


def _submit(instance: int) -> Submit:
    return Submit(type="submit", instance=instance, token="t", output={})


def _tags(job: Job) -> list[int]:
    return [w.delivery.tag for w in job.waiting]


def _setup() -> tuple[Batcher, Pool, Loop, list[Job]]:
    finished: list[Job] = []
    confirmed = [41]  # an outbox row the broker confirmed, waiting to be marked sent

    def take_sent() -> list[int]:
        taken = confirmed[:]
        confirmed.clear()
        return taken

    batcher = Batcher(200, take_sent, confirmed.extend, finished.append)
    pool, loop = Pool(), Loop()
    batcher.pool = pool
    batcher.reset(loop)
    # Instances 1 and 2 belong to run 10, instance 3 to run 20 (learnt from the offers published).
    batcher.lanes.learn([_offer(1, 10), _offer(2, 10), _offer(3, 20)])
    return batcher, pool, loop, finished


def _commit(batcher: Batcher, job: Job, error: BaseException | None = None) -> None:
    job.error = error
    job.result = None if error else Applied([Outcome(result={}) for _ in job.waiting], [])
    batcher.committed(job)


def test_a_claim_of_another_run_does_not_wait_behind_a_batch_in_flight():
    batcher, pool, loop, finished = _setup()
    _arrive(batcher, 1, _submit(1))
    loop.run()
    _arrive(batcher, 2, _claim(3))  # run 20: a second committer takes it at once
    loop.run()
    assert [_tags(j) for j in pool.jobs] == [[1], [2]]
    assert pool.jobs[0].sent == [41] and pool.jobs[1].sent == []  # the confirmed rows go with one batch


def test_messages_of_a_run_in_flight_wait_and_then_go_together_in_order():
    batcher, pool, loop, finished = _setup()
    _arrive(batcher, 1, _submit(1))
    loop.run()
    _arrive(batcher, 2, _claim(2))  # run 10, held by the batch in flight
    _arrive(batcher, 3, _submit(1))
    _arrive(batcher, 4, _claim(3))  # run 20: goes past them
    loop.run()
    assert [_tags(j) for j in pool.jobs] == [[1], [4]]
    _commit(batcher, pool.jobs[0])
    loop.run()
    assert [_tags(j) for j in finished] == [[1]]
    assert _tags(pool.jobs[2]) == [2, 3]


def test_a_batch_the_database_refused_goes_back_in_line_in_order():
    batcher, pool, loop, finished = _setup()
    _arrive(batcher, 1, _submit(1))
    loop.run()
    _arrive(batcher, 2, _submit(2))  # waits: run 10 is in flight
    loop.run()
    _commit(batcher, pool.jobs[0], DatabaseUnavailable("connection refused"))
    loop.callbacks.pop(0)()  # the failed batch comes back to the IO loop; the retry waits
    assert finished == []
    assert [w.delivery.tag for w in batcher.waiting] == [1, 2]
    assert batcher.busy
    assert len(pool.jobs) == 1 and pool.jobs[0].sent == [41]
    batcher._retry_at = 0.0  # the retry delay is over
    batcher.dispatch()
    assert _tags(pool.jobs[1]) == [1, 2] and pool.jobs[1].sent == [41]  # the marks go again too


def test_an_outage_counts_one_reconnect_however_many_retries_it_takes():
    def reconnects() -> float:
        return REGISTRY.get_sample_value("flow45_reconnects_total", {"part": "bridge", "server": "database"}) or 0.0

    batcher, pool, loop, finished = _setup()
    before = reconnects()
    _arrive(batcher, 1, _submit(1))
    loop.run()
    for attempt in range(1, 6):  # the database stays away for five retries
        _commit(batcher, pool.jobs[-1], DatabaseUnavailable("connection refused"))
        loop.callbacks.pop(0)()
        batcher._retry_at = 0.0  # the retry delay is over
        loop.run()
        assert len(pool.jobs) == attempt + 1
    assert reconnects() == before + 1
    _commit(batcher, pool.jobs[-1])  # back
    loop.run()
    assert [_tags(j) for j in finished] == [[1]]
    _arrive(batcher, 2, _submit(2))
    loop.run()
    _commit(batcher, pool.jobs[-1], DatabaseUnavailable("connection refused"))  # a second outage
    loop.callbacks.pop(0)()
    assert reconnects() == before + 2


def test_a_batch_of_an_earlier_broker_connection_is_not_answered_on_the_next():
    batcher, pool, loop, finished = _setup()
    _arrive(batcher, 1, _submit(1))
    loop.run()
    batcher.reset(loop)  # the connection was lost: the broker delivers message 1 again
    _commit(batcher, pool.jobs[0])
    loop.run()
    assert finished == [] and not batcher.busy
