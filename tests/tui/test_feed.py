"""The dashboard's feed through the broker: it shows the events the team's stream brings without
reading the ledger, reads by id only when the stream may have skipped some, shows each event once,
lets a busy stream's events gather, and reads at once after an operator's own action."""

from __future__ import annotations

import datetime as dt
import queue
import threading

from flow45.views import EventView
from tui.live import Feed, LedgerEvents

AT = dt.datetime(2026, 3, 1, 12, 0)


def event(id_: int, run: int = 1) -> EventView:
    return EventView(id=id_, at=AT, team="a", run=run, instance=id_, kind="claim", from_state="available",
                     to_state="running", actor="w1", detail=None, task="t")


class Pushing:
    """A client whose event stream is driven by the test; `events` reads answer from `ledger`."""

    def __init__(self, ledger=()):
        self.wake = self.deliver = None
        self.ledger = list(ledger)
        self.reads = threading.Semaphore(0)
        self.count = 0
        self.subscribed = threading.Event()

    def subscribe(self, wake, deliver, settle=None):
        self.wake, self.deliver = wake, deliver
        self.subscribed.set()
        return lambda: None

    def events(self, after, limit=200):
        self.count += 1
        self.reads.release()
        return [e for e in self.ledger if e.id > after][:limit]

    def close(self):
        pass

    def ledger_writers(self):
        return None  # as through the bridge: time alone gives a hole up


class Polling(Pushing):
    """A client with no event stream: the feed polls the ledger."""

    def subscribe(self, wake, deliver, settle=None):
        self.subscribed.set()
        return None


class App:
    def __init__(self):
        self.shown: queue.Queue[list[int]] = queue.Queue()

    def post_message(self, message):
        if isinstance(message, LedgerEvents):
            self.shown.put([e.id for e in message.events])


def started(client, **kwargs) -> tuple[Feed, App, threading.Thread]:
    app = App()
    feed = Feed(app, client, after=0, **kwargs)
    thread = threading.Thread(target=feed.run, daemon=True)
    thread.start()
    assert client.subscribed.wait(10)
    return feed, app, thread


def shown_at_least(app: App, count: int, timeout: float = 10) -> list[int]:
    """The ids shown, over as many ticks as it takes to show `count` of them."""
    shown: list[int] = []
    while len(shown) < count:
        shown += app.shown.get(timeout=timeout)
    return shown


def stopped(feed: Feed, thread: threading.Thread) -> None:
    feed.stop()
    thread.join(timeout=10)
    assert not thread.is_alive()


def test_streamed_events_are_shown_without_reading_the_ledger_and_a_gap_is_read_by_id():
    client = Pushing(ledger=[event(1), event(2)])
    feed, app, thread = started(client, gather=0.01)
    try:
        client.wake()  # connected: what came before is read by id
        assert app.shown.get(timeout=10) == [1, 2] and client.count == 1
        client.deliver(event(3))
        client.deliver(event(5))
        shown = shown_at_least(app, 2)
        assert shown == [3, 5]
        assert client.count == 1  # no read for what the stream brought
        client.ledger += [event(3), event(4), event(5), event(6)]
        client.wake()  # the stream may have skipped some (a reconnection, another publisher)
        assert app.shown.get(timeout=10) == [6] and client.count == 2  # read after the last seen: 6 alone
    finally:
        stopped(feed, thread)


def test_an_event_streamed_twice_or_also_read_is_shown_once_and_a_late_one_still_is():
    client = Pushing(ledger=[event(10)])
    feed, app, thread = started(client, gather=0.01)
    try:
        client.wake()
        assert app.shown.get(timeout=10) == [10]
        client.deliver(event(10))  # also streamed (published just before the read)
        client.deliver(event(11))
        client.deliver(event(11))  # published twice by a failover
        shown = []
        while 11 not in shown:
            shown += app.shown.get(timeout=10)
        client.deliver(event(9))  # committed late: a smaller id, published after larger ones
        shown += app.shown.get(timeout=10)
        assert shown == [11, 9]
        assert feed.after == 11
    finally:
        stopped(feed, thread)


def test_a_failed_read_by_id_keeps_the_streamed_events_for_the_next_tick():
    class Failing(Pushing):
        def events(self, after, limit=200):
            self.count += 1
            if self.count == 1:
                raise ConnectionError("bridge gone")
            return super().events(after, limit)

    client = Failing(ledger=[event(1)])
    feed, app, thread = started(client, gather=0.01)
    try:
        client.deliver(event(2))
        client.wake()  # both wait for one tick; its read fails; the next shows both
        shown = shown_at_least(app, 2, timeout=30)
        assert shown == [1, 2]
    finally:
        stopped(feed, thread)


def test_a_pushed_feed_shows_at_once_then_lets_events_gather_and_an_action_shows_at_once():
    client = Pushing()
    feed, app, thread = started(client, gather=3600, clock=lambda: 1800.0)  # events till the hour is out gather
    try:
        assert app.shown.empty()  # nothing shown before anything came
        client.deliver(event(1))
        assert app.shown.get(timeout=10) == [1]  # the first event after a quiet spell: at once
        for n in range(2, 52):
            client.deliver(event(n))  # a busy stream
        threading.Event().wait(0.3)
        assert app.shown.empty()  # gathering, not shown at each
        feed.poke()  # the operator acted: now
        assert app.shown.get(timeout=10) == list(range(2, 52))
        assert client.count == 0
    finally:
        stopped(feed, thread)


def test_a_polling_feed_shows_an_event_committed_after_larger_ids():
    """On the database: the read after 1 got 3 (2's transaction took its id first and commits later);
    the next reads look again from before 2, and show it once it commits, and 3 only once."""
    client = Polling(ledger=[event(1), event(3)])
    feed, app, thread = started(client, interval=0.02)
    try:
        shown = shown_at_least(app, 2)
        client.ledger.insert(1, event(2))  # committed
        shown += app.shown.get(timeout=10)
        assert shown == [1, 3, 2] and feed.after == 3
    finally:
        stopped(feed, thread)


def test_holes_are_looked_for_again_until_they_come_or_are_old():
    from flow45.client.follower import Holes

    now = [100.0]
    holes = Holes(wait=10.0, clock=lambda: now[0])
    holes.read(0, [1, 2, 5])
    assert holes.reread_after(5) == 2  # 3 and 4 were skipped over: read again from after 2
    holes.read(2, [3, 5])
    assert holes.reread_after(5) == 3  # 3 came; 4 still may
    now[0] += 10.0
    assert holes.reread_after(5) == 5  # 4 is given up: a rolled back transaction's
    holes.read(5, [6])
    assert holes.reread_after(6) == 6


class Screen:
    """A watched screen whose first read fails as a lost database does."""

    def __init__(self):
        self.failures = 1
        self.asked: list[list[int]] = []

    def fetch_changes(self, events):
        self.asked.append([e.id for e in events])
        if self.failures:
            self.failures -= 1
            raise ConnectionError("server closed the connection unexpectedly")
        return "payload"


def test_events_whose_screen_reads_failed_are_shown_on_the_next_tick_in_both_modes():
    """A screen's read that fails (a lost database) loses no event: the next tick reads for the same
    events again and shows them, once, whether they were streamed or read from the ledger."""
    for client in (Pushing(), Polling(ledger=[event(1), event(2)])):
        screen = Screen()
        feed, app, thread = started(client, interval=0.02, gather=0.01)
        feed.watch([screen])
        try:
            if isinstance(client, Polling):
                assert app.shown.get(timeout=10) == [1, 2]
            else:
                client.deliver(event(1))
                client.deliver(event(2))
                assert shown_at_least(app, 2) == [1, 2]
            failed = screen.asked[0]
            assert any(set(failed) <= set(later) for later in screen.asked[1:]), screen.asked  # read again
            assert app.shown.empty() and feed.after == 2
        finally:
            stopped(feed, thread)
