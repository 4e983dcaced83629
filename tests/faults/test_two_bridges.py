"""Two bridges on one inbox: both apply worker messages, one relays the outbox and one publishes the
event stream; when that one is killed the other takes both over. Runs finish, nothing succeeds
twice, and each ledger event reaches the event stream once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pika
import pytest

from flow45 import names, store
from flow45.models import Attempt, Event, TaskInstance
from tests.faults.conftest import retrying

pytestmark = pytest.mark.integration


def _stream(rabbit):
    connection = pika.BlockingConnection(pika.URLParameters(rabbit.amqp_url))
    channel = connection.channel()
    channel.exchange_declare(names.EVENTS_EXCHANGE, "topic", durable=True)
    queue = channel.queue_declare("", exclusive=True).method.queue
    channel.queue_bind(queue, names.EVENTS_EXCHANGE, "#")
    return connection, channel, queue


def _published(connection, channel, queue, expected: set[int], timeout: float = 15) -> Counter:
    """Event ids received on the stream (counted), until every expected one came or the timeout."""
    seen: Counter = Counter()
    deadline = time.monotonic() + timeout
    while not expected <= set(seen) and time.monotonic() < deadline:
        method, properties, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            connection.process_data_events(time_limit=0.1)
            continue
        page = [e["id"] for e in json.loads(body)["events"]]
        settled = properties.headers.get(names.EVENT_SETTLED_HEADER)
        assert properties.message_id == (f"events-{page[0]}-{page[-1]}" if page else f"events-settled-{settled}")
        seen.update(page)
    time.sleep(0.5)  # a second publisher would have sent its copies by now
    while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
        seen.update(e["id"] for e in json.loads(got[2])["events"])
    return seen


def _events_of(runs: list[int]) -> set[int]:
    return retrying(lambda: {e.id for e in Event.select(Event.id).where(Event.run.in_(runs))})


def _publisher(bridges) -> int:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        holding = [i for i, b in enumerate(bridges) if "publishing the event stream" in Path(b.log_path).read_text()]
        if holding:
            assert len(holding) == 1, f"two bridges publish the event stream: {holding}"
            return holding[0]
        time.sleep(0.1)
    raise AssertionError("no bridge publishes the event stream")


def test_two_bridges_share_the_inbox_and_publish_each_event_once(system):
    bridges = [system.bridge(), system.bridge()]
    system.scheduler()
    for _ in range(2):
        system.worker()
    connection, channel, queue = _stream(system.rabbit)
    try:
        publisher = _publisher(bridges)
        runs = system.trigger(15)
        system.check(runs)
        seen = _published(connection, channel, queue, _events_of(runs))
        assert _events_of(runs) <= set(seen), "events of the runs missing from the stream"
        assert {i: n for i, n in seen.items() if n > 1} == {}, "events published more than once"

        os.kill(bridges[publisher].pid, signal.SIGKILL)  # the other takes the relay and the stream over
        bridges[publisher].wait()
        later = system.trigger(10)
        system.check(runs + later)
        seen = _published(connection, channel, queue, _events_of(later))
        assert _events_of(later) <= set(seen), "events after the failover missing from the stream"
        assert {i: n for i, n in seen.items() if n > 1 and i in _events_of(later)} == {}
        assert bridges[1 - publisher].poll() is None, system.logs()
    finally:
        connection.close()


def test_a_bridge_killed_while_two_apply_wide_runs_leaves_no_join_waiting(system):
    """Two bridges apply the steps of wide runs, each settling a run from the states of its instances
    not done, as stored; one is killed with batches in flight (its deliveries come again to the other).
    Every run finishes: no join left pending, no step succeeded twice, no answered submit missing."""
    bridges = [system.bridge(), system.bridge()]
    system.scheduler()
    for _ in range(2):
        system.worker(seconds=0.05)
    runs = retrying(lambda: [store.trigger("reports", "wide", actor="ops") for _ in range(3)])
    instances = retrying(lambda: [i.id for i in TaskInstance.select(TaskInstance.id).where(TaskInstance.run.in_(runs))])

    def succeeded() -> int:
        return retrying(lambda: Attempt.select().where(Attempt.instance.in_(instances)
                                                       & (Attempt.status == "succeeded")).count())

    deadline = time.monotonic() + 60
    while succeeded() < 60:
        assert time.monotonic() < deadline, system.logs()
        time.sleep(0.05)
    os.kill(bridges[0].pid, signal.SIGKILL)
    bridges[0].wait()
    assert succeeded() < len(instances), "the runs finished before the bridge was killed"
    system.check(runs)
    joins = retrying(lambda: {i.state for i in TaskInstance.select().where(TaskInstance.run.in_(runs)
                                                                           & (TaskInstance.task == "join"))})
    assert joins == {"succeeded"}
    assert bridges[1].poll() is None, system.logs()
