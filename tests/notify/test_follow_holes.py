"""The notifier's place in a ledger with holes. Through the bridge a team's operator reads only its own
team's events, so every other team's event is a hole in its ledger: the notifier posts each event
as it comes, whatever the holes, and its watermark passes a hole once it is GAP_WAIT old, or at once
when the bridge's stream marks it settled. An event committed late (below ids already posted) is
posted when it comes, once."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flow45.notify import follow
from flow45.notify.follow import Notifier
from flow45.notify.hooks import Webhook
from flow45.views import EventView

AT = dt.datetime(2026, 2, 28, 23, 59)


def run_failed(event_id: int, team: str = "acme") -> EventView:
    return EventView(id=event_id, at=AT, team=team, run=event_id, instance=None, kind="run", from_state="running",
                     to_state="failed", actor="x", detail=None)


class Receiver:
    def __init__(self):
        self.keys: list[str] = []
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                receiver.keys.append(self.headers["Idempotency-Key"])
                self.send_response(200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def posted(self) -> list[int]:
        return [int(key.rsplit("-", 1)[1]) for key in self.keys]


class TeamClient:
    """An operator's client of team acme: its reads hold acme's events alone. With `pushed`, an event
    stream the test drives."""

    def __init__(self, ledger: list[EventView], pushed: bool):
        self.ledger, self.pushed = ledger, pushed
        self.deliver = self.settle = None
        self.subscribed = threading.Event()

    def events(self, after, limit=200, **_):
        return sorted((e for e in self.ledger if e.id > after and e.team == "acme"), key=lambda e: e.id)[:limit]

    def subscribe(self, wake, deliver, settle=None):
        if not self.pushed:
            return None
        self.deliver, self.settle = deliver, settle
        self.subscribed.set()
        return lambda: None

    def latest_event_id(self):
        return 0

    def ledger_writers(self):
        return None  # as through the bridge: time alone gives a hole up


def wait_for(condition, seconds: float = 60.0) -> None:
    """Until `condition()`; the deadline only bounds a hang (a loaded machine takes seconds here)."""
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.mark.parametrize("pushed", [True, False], ids=["through the bridge", "polling"])
def test_another_teams_events_delay_no_post_and_a_late_event_is_posted_once(tmp_path, pushed):
    receiver = Receiver()
    # 600 of acme's events, each after one of team rival's (holes in acme's reads): three pages and more.
    ledger = [run_failed(i, "acme" if i % 2 else "rival") for i in range(1, 1201)]
    late = run_failed(1301)  # its transaction took its id first and commits last
    ledger += [run_failed(i) for i in range(1302, 1311)]
    client = TeamClient(ledger, pushed)
    state = tmp_path / "notify.json"
    holes_age = [0.0]  # the holes' clock: no hole grows old until the test says (the late one comes within)
    notifier = Notifier(client, "acme", [Webhook(url=receiver.url, events=["run_failed"])], state, start=0,
                        retry_delay=0.05, poll=0.1, clock=lambda: holes_age[0])
    thread = threading.Thread(target=notifier.run, daemon=True)
    thread.start()
    try:
        acme = [e.id for e in ledger if e.team == "acme"]
        wait_for(lambda: len(receiver.keys) == len(acme))
        assert receiver.posted() == acme  # every one, in order, none held back by rival's holes
        ledger.append(late)
        if pushed:
            client.deliver(late)  # the stream brings it when it commits
        wait_for(lambda: late.id in receiver.posted())
        holes_age[0] += follow.GAP_WAIT
        wait_for(lambda: json.loads(state.read_text())["after"] == 1310)  # the holes passed, once old
        assert sorted(receiver.posted()) == sorted(acme + [late.id])  # each once
    finally:
        notifier.stop_now()
        thread.join(10)
    assert not thread.is_alive()


def notifier_of(client, receiver: Receiver, state) -> tuple[Notifier, threading.Thread]:
    notifier = Notifier(client, "acme", [Webhook(url=receiver.url, events=["run_failed"])], state, start=0,
                        retry_delay=0.05, poll=0.05)
    thread = threading.Thread(target=notifier.run, daemon=True)
    thread.start()
    return notifier, thread


def test_the_streams_settled_mark_passes_another_teams_ids_at_once(tmp_path, monkeypatch):
    """Every rival id below the mark never comes to acme's notifier: its watermark passes them when
    the mark comes, without waiting GAP_WAIT (a smaller state file, a shorter re-read after a restart)."""
    monkeypatch.setattr(follow, "GAP_WAIT", 300.0)
    receiver, state = Receiver(), tmp_path / "notify.json"
    client = TeamClient([run_failed(i, "acme" if i % 2 else "rival") for i in range(1, 21)], pushed=True)
    notifier, thread = notifier_of(client, receiver, state)
    try:
        wait_for(lambda: len(receiver.keys) == 10 and client.subscribed.is_set())
        wait_for(lambda: notifier.position.after == 1)  # rival's 2 is a hole, waited for
        time.sleep(0.5)
        assert notifier.position.after == 1
        client.settle(20)
        wait_for(lambda: json.loads(state.read_text())["after"] == 19)  # acme's newest: every hole passed
        assert json.loads(state.read_text())["seen"] == []
    finally:
        notifier.stop_now()
        thread.join(10)


def test_an_id_above_the_streams_mark_is_waited_for_past_gap_wait_and_posted_when_it_commits(tmp_path, monkeypatch):
    """The bridge still looks for id 11 (its transaction is open): acme's notifier does not give it up
    after GAP_WAIT, and posts it when the stream brings it, once."""
    monkeypatch.setattr(follow, "GAP_WAIT", 0.2)
    receiver, state = Receiver(), tmp_path / "notify.json"
    ledger = [run_failed(i) for i in range(1, 11)]
    client = TeamClient(ledger, pushed=True)
    notifier, thread = notifier_of(client, receiver, state)
    try:
        wait_for(lambda: len(receiver.keys) == 10 and client.subscribed.is_set())
        client.settle(10)
        ledger.append(run_failed(12))
        client.deliver(ledger[-1])
        client.settle(10)  # 11 still open
        wait_for(lambda: 12 in receiver.posted())
        time.sleep(1.0)  # five times GAP_WAIT
        assert notifier.position.after == 10  # 11 still waited for
        late = run_failed(11)
        ledger.append(late)
        client.deliver(late)
        client.settle(12)
        wait_for(lambda: json.loads(state.read_text())["after"] == 12)
        assert receiver.posted() == [*range(1, 11), 12, 11]  # each once; the late one when it came
    finally:
        notifier.stop_now()
        thread.join(10)


def test_a_posted_event_is_written_to_the_state_file_once_per_hook(tmp_path, monkeypatch):
    """The state file is written as each post is done (a restart posts to the hooks still waiting
    alone), not once more after the last: one write per post, not two."""
    receivers = [Receiver(), Receiver()]
    writes: list[tuple[int | None, list[int]]] = []
    save = follow.Position.save
    monkeypatch.setattr(follow.Position, "save", lambda self, path: (writes.append((self.event, list(self.done))),
                                                                     save(self, path)))
    client = TeamClient([run_failed(i) for i in range(1, 11)], pushed=False)
    hooks = [Webhook(url=receiver.url, events=["run_failed"]) for receiver in receivers]
    notifier = Notifier(client, "acme", hooks, tmp_path / "notify.json", start=0, retry_delay=0.05, poll=0.05)
    writes.clear()  # the first start's
    notifier.run(once=True)
    assert [receiver.posted() for receiver in receivers] == [list(range(1, 11))] * 2
    assert writes[:2] == [(1, [0]), (None, [])]  # between the two hooks, then done with it
    assert [w for w in writes if w[0] is not None] == [(i, [0]) for i in range(1, 11)]
    assert len(writes) <= 2 * 10 + 2  # one per post; the watermark's own once a second, and at the end
    assert json.loads((tmp_path / "notify.json").read_text())["after"] == 10
