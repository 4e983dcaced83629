"""`flow45 notify` with nothing but an operator's broker URL: it reads its own team's ledger through
the bridge and posts that team's chosen events, never another team's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flow45 import store
from flow45.models import Event
from tests.client.two_teams import deploy_two_teams
from tests.notify.test_notify import Receiver

pytestmark = pytest.mark.integration


def test_notify_through_the_broker_posts_its_own_teams_events(bridge_env, tmp_path):
    teams = deploy_two_teams(tmp_path)
    receiver = Receiver(hold_at=0)
    hooks = {"reports": [{"url": receiver.url + "/b", "events": ["human_waiting"]}]}
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOW45_AMQP_URL": bridge_env.url("reports-ops"),
               "FLOW45_NOTIFY": json.dumps(hooks)}
    argv = [sys.executable, "-m", "flow45", "notify", "--once", "--after", "0", "--state", str(tmp_path / "n.json")]
    done = subprocess.run(argv, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    waiting = [e.id for e in Event.select().where(
        (Event.to_state == "available") & Event.instance.in_([t.approve for t in teams.values()]))]
    ours = Event.get((Event.instance == teams["reports"].approve) & (Event.to_state == "available"))
    assert len(waiting) == 2 and [key for _, key, _ in receiver.accepted] == [f"flow45-event-{ours.id}"]
    assert receiver.accepted[0][2]["text"].startswith(f"[reports] task instance {teams['reports'].approve} ")


def test_notify_through_the_broker_posts_what_was_written_while_no_bridge_published(bridge_env, tmp_path):
    """A notifier following the team's stream, with another team busy beside it: every chosen event
    of its own team is posted once, also one written while no bridge published the stream (the next
    publisher's first event tells it to read the ledger by id)."""
    import threading
    import time

    from bridge.events import EventPublisher
    from bridge.remote import RemoteClient
    from flow45.notify.follow import Notifier
    from flow45.notify.hooks import Webhook
    from tests.client.two_teams import _monthly_run

    for team_run in deploy_two_teams(tmp_path).values():
        store.cancel_run(team_run.run, actor="admin")
    assert bridge_env.bridge.events.ready.wait(10)
    receiver = Receiver(hold_at=0)
    newest = Event.select().order_by(Event.id.desc()).first().id
    client = RemoteClient(bridge_env.url("reports-ops"))
    notifier = Notifier(client, "reports", [Webhook(url=receiver.url + "/b", events=["human_waiting"])],
                        tmp_path / "n.json", start=newest, retry_delay=0.05, poll=0.2)
    thread = threading.Thread(target=notifier.run, daemon=True)
    thread.start()

    def posted() -> set[int]:
        return {int(key.rsplit("-", 1)[1]) for _, key, _ in receiver.accepted}

    def offered(team: str) -> int:
        """A new monthly run of the team, its approval waiting for a person (the run is then cancelled:
        the workflow runs one at a time)."""
        run = _monthly_run(team)
        store.cancel_run(run.run, actor="admin")
        return Event.get((Event.instance == run.approve) & (Event.to_state == "available")).id

    def wait_for(condition, seconds: float = 15.0) -> None:  # within the notifier's read of every 30 s
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"posted {sorted(posted())}"
            time.sleep(0.05)

    publisher = None
    try:
        time.sleep(1.0)  # let it subscribe
        offered("rival")
        first = offered("reports")
        wait_for(lambda: first in posted())
        bridge_env.bridge.events.stop()
        wait_for(lambda: not bridge_env.bridge.events.publishing)
        unstreamed = offered("reports")  # no bridge publishes it
        publisher = EventPublisher(bridge_env.settings)
        threading.Thread(target=publisher.run, daemon=True).start()
        assert publisher.ready.wait(10)
        wait_for(lambda: publisher.publishing)
        offered("rival")
        last = offered("reports")
        wait_for(lambda: {first, unstreamed, last} <= posted())
    finally:
        notifier.stop_now()
        thread.join(10)
        if publisher is not None:
            publisher.stop()
    keys = [key for _, key, _ in receiver.accepted]
    assert len(keys) == len(set(keys)) == 3


def test_notify_through_the_broker_posts_an_event_whose_transaction_stayed_open_past_its_wait(
        bridge_env, tmp_path, monkeypatch):
    """An approval offered in a transaction that commits after the team's larger ids and after the
    notifier's GAP_WAIT: the stream's marks keep it waited for, and it is posted when it commits, once."""
    import threading
    import time

    from bridge.remote import RemoteClient
    from flow45.notify import follow
    from flow45.notify.hooks import Webhook
    from tests.client.two_teams import _monthly_run
    from tests.held_open import HeldOpen

    monkeypatch.setattr(follow, "GAP_WAIT", 0.3)
    for team_run in deploy_two_teams(tmp_path).values():
        store.cancel_run(team_run.run, actor="admin")
    assert bridge_env.bridge.events.ready.wait(10)
    receiver = Receiver(hold_at=0)
    state = tmp_path / "n.json"
    newest = Event.select().order_by(Event.id.desc()).first().id
    notifier = follow.Notifier(RemoteClient(bridge_env.url("reports-ops")), "reports",
                               [Webhook(url=receiver.url + "/b", events=["human_waiting"])], state, start=newest,
                               retry_delay=0.05, poll=0.1)
    thread = threading.Thread(target=notifier.run, daemon=True)

    def offered() -> int:
        """The approval of a new monthly run became available: its ledger event."""
        run = _monthly_run("reports")
        return Event.get((Event.instance == run.approve) & (Event.to_state == "available")).id

    def wait_for(condition, seconds: float = 15.0) -> None:
        deadline = time.monotonic() + seconds
        while not condition():
            assert time.monotonic() < deadline, f"posted {[key for _, key, _ in receiver.accepted]}"
            time.sleep(0.05)

    try:
        thread.start()
        time.sleep(1.0)  # let it subscribe
        with HeldOpen(offered) as slow:
            larger = store.trigger("reports", "nightly_sales", None, actor="cron")
            larger_ids = [e.id for e in store.list_events(0, run=larger, limit=1000)]
            wait_for(lambda: set(larger_ids) <= notifier.position.seen)  # handled above the hole
            time.sleep(1.5)  # five times GAP_WAIT
            assert notifier.position.after < slow.result < min(larger_ids)  # still waited for
        wait_for(lambda: [key for _, key, _ in receiver.accepted] == [f"flow45-event-{slow.result}"])
        wait_for(lambda: json.loads(state.read_text())["after"] >= max(larger_ids))
    finally:
        notifier.stop_now()
        thread.join(10)
    assert [key for _, key, _ in receiver.accepted] == [f"flow45-event-{slow.result}"]
