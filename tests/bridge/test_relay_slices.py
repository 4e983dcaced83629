"""The relay publishes a burst of outbox rows a slice at a time, one slice a turn of the IO loop:
a wide run's fan-out writes thousands of offers in one batch, and the answers of every other batch
finished meanwhile go out between the slices, not after the whole burst. Rows waiting for their
slice count as in flight (a relay pass does not read them again), and go back to pending if the
relay loses its channel or lock before their turn."""

from __future__ import annotations

import pytest

from bridge import relay as relay_module
from bridge.commits import Lanes
from bridge.relay import Relay
from flow45.store.outbox import OutboxMessage


class _Channel:
    def __init__(self) -> None:
        self.published: list[str] = []

    def basic_publish(self, exchange, key, body, properties, mandatory=False) -> None:
        self.published.append(properties.message_id)


class _IOLoop:
    def __init__(self) -> None:
        self.later: list = []

    def call_later(self, delay, callback) -> None:
        self.later.append(callback)

    def turn(self) -> None:
        """One pass of the loop: what was scheduled before it."""
        due, self.later = self.later, []
        for callback in due:
            callback()


class _Lock:
    held = True


@pytest.fixture
def relay(monkeypatch) -> Relay:
    monkeypatch.setattr(relay_module, "PUBLISH_SLICE", 5)
    relay = Relay(Lanes(), lambda tags: None, lambda tag: None, lambda: None)
    relay.lock, relay.channel, relay._ioloop = _Lock(), _Channel(), _IOLoop()
    return relay


def rows(first: int, count: int) -> list[OutboxMessage]:
    return [OutboxMessage(n, "acme", "offer", "flow45.tasks.acme.f", 0, {"instance": n, "run": 1})
            for n in range(first, first + count)]


def test_a_burst_goes_out_a_slice_a_turn_and_what_waits_counts_as_in_flight(relay):
    relay.publish_rows(rows(1, 12))
    assert relay.channel.published == [f"outbox-{n}" for n in range(1, 6)]
    assert relay._in_flight == set(range(1, 13))  # a relay pass passes over the 7 waiting too
    relay._ioloop.turn()
    assert len(relay.channel.published) == 10
    relay.publish_rows(rows(13, 2))  # another batch's rows: behind the burst, in order
    relay._ioloop.turn()
    relay._ioloop.turn()
    assert relay.channel.published == [f"outbox-{n}" for n in range(1, 15)]
    assert relay._ioloop.later == []


def test_rows_waiting_for_their_slice_are_pending_again_when_the_relay_loses_its_lock(relay):
    relay.publish_rows(rows(1, 12))
    relay.lock.held = False
    relay._ioloop.turn()
    assert relay.channel.published == [f"outbox-{n}" for n in range(1, 6)]
    assert relay._in_flight == set(range(1, 6))  # published, waiting for the broker's confirm
    assert relay._ioloop.later == []


def test_a_few_rows_go_out_at_once(relay):
    relay.publish_rows(rows(1, 3))
    assert relay.channel.published == ["outbox-1", "outbox-2", "outbox-3"]
    assert relay._ioloop.later == []


def test_an_offer_a_relay_pass_published_before_its_batch_was_answered_ends_its_hop_once_confirmed(relay):
    """The batch committed, a relay pass found its offers pending and published them, and the broker
    confirmed them, all before the batch's answer was handled: their hops are observed then, and
    nothing is kept waiting for a confirm that came already."""
    import pika
    from prometheus_client import REGISTRY

    def hops() -> float:
        return REGISTRY.get_sample_value("flow45_hop_latency_seconds_count") or 0.0

    before = hops()
    written = rows(1, 2)
    relay.publish_rows(written)  # the relay pass
    relay._on_confirm(pika.frame.Method(1, pika.spec.Basic.Ack(delivery_tag=2, multiple=True)))
    relay.offers_from(0.0, written)  # the batch's answer handled now
    assert hops() == before + 2
    assert relay._offer_origin == {}
