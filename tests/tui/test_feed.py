"""The dashboard's feed through the broker: woken by the team's event stream, it reads at once after
a quiet spell, lets a busy stream's events gather instead of reading at every one, and reads at once
after an operator's own action."""

from __future__ import annotations

import threading

from tui.live import Feed


class Pushing:
    """A client whose event stream is driven by the test; each `events` read is counted."""

    def __init__(self):
        self.wake = None
        self.reads = threading.Semaphore(0)
        self.count = 0

    def subscribe(self, wake):
        self.wake = wake
        return lambda: None

    def events(self, after, limit=200):
        self.count += 1
        self.reads.release()
        return []

    def close(self):
        pass


class App:
    def post_message(self, message):
        pass


def test_a_pushed_feed_reads_at_once_then_lets_events_gather_and_an_action_reads_at_once():
    client = Pushing()
    feed = Feed(App(), client, after=0, gather=3600, clock=lambda: 1800.0)  # events till the hour is out gather
    thread = threading.Thread(target=feed.run, daemon=True)
    thread.start()
    try:
        assert not client.reads.acquire(timeout=0.2)  # nothing read before anything came
        while client.wake is None:
            threading.Event().wait(0.01)
        client.wake()
        assert client.reads.acquire(timeout=10)  # the first event after a quiet spell: read at once
        for _ in range(50):
            client.wake()  # a busy stream
        assert not client.reads.acquire(timeout=0.3) and client.count == 1  # gathering, not read at each
        feed.poke()  # the operator acted: read now
        assert client.reads.acquire(timeout=10) and client.count == 2
    finally:
        feed.stop()
        thread.join(timeout=10)
