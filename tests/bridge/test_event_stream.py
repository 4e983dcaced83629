"""The team event streams: the bridge publishes the ledger's events to flow45.events, a page of one
team's events per message keyed by its team, and a team's operator can bind its own team's key alone."""

from __future__ import annotations

import json
import time

import pika
import pytest

from flow45 import names, store
from tests.client.two_teams import deploy_two_teams

pytestmark = pytest.mark.integration


def test_an_operator_follows_its_own_teams_events_in_order_and_no_other(bridge_env, tmp_path, wire_log):
    assert bridge_env.bridge.events.ready.wait(10)
    connection = pika.BlockingConnection(pika.URLParameters(bridge_env.url("reports-ops")))
    try:
        channel = connection.channel()
        queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
        channel.queue_bind(queue, names.EVENTS_EXCHANGE, "reports")
        for key in ("rival", "#", "*"):
            other = connection.channel()
            with pytest.raises(pika.exceptions.ChannelClosedByBroker) as refused:
                other.queue_bind(queue, names.EVENTS_EXCHANGE, key)
            assert refused.value.reply_code == 403, key

        teams = deploy_two_teams(tmp_path)
        ours = teams["reports"]
        got: list[dict] = []
        deadline = time.monotonic() + 10
        while not any(e["run"] == ours.run and e["kind"] == "submit" for e in got) and time.monotonic() < deadline:
            method, properties, body = channel.basic_get(queue, auto_ack=True)
            if method is None:
                connection.process_data_events(time_limit=0.1)
            else:
                page = json.loads(body)["events"]
                if page:
                    assert properties.message_id == f"events-{page[0]['id']}-{page[-1]['id']}"
                else:  # the ids above its team's last page are settled now
                    assert properties.message_id == f"events-settled-{properties.headers[names.EVENT_SETTLED_HEADER]}"
                got.extend(page)
    finally:
        connection.close()
    assert got and {e["team"] for e in got} == {"reports"}
    assert [e["id"] for e in got] == sorted(e["id"] for e in got)
    assert ("trigger", ours.run) in {(e["kind"], e["run"]) for e in got}
    assert not wire_log.check() and wire_log.checked["EventPage"] >= 1
    # Each as the `events` read gives it, detail and task included.
    read = {e.id: e.to_json() for e in store.list_events(0, team="reports", limit=1000)}
    assert got == [read[e["id"]] for e in got]


def test_a_follower_gets_the_events_themselves_and_is_woken_to_read_when_the_stream_may_have_skipped(
        bridge_env, tmp_path, wire_log):
    """`RemoteClient.subscribe` with `deliver`: each event as the `events` read gives it, with no read;
    a wake (read by id) after connecting, when another publisher starts (a bridge restarted or took
    over) and for a body that is not an event."""
    import threading

    from bridge.remote import RemoteClient

    assert bridge_env.bridge.events.ready.wait(10)
    delivered, wakes = [], threading.Semaphore(0)
    client = RemoteClient(bridge_env.url("reports-ops"))
    stop = client.subscribe(wakes.release, delivered.append)
    try:
        assert wakes.acquire(timeout=10)  # connected: read what came before by id
        teams = deploy_two_teams(tmp_path)
        ours = teams["reports"]
        deadline = time.monotonic() + 10
        while not any(e.run == ours.run and e.kind == "submit" for e in delivered) and time.monotonic() < deadline:
            time.sleep(0.05)
        read = {e.id: e for e in store.list_events(0, team="reports", limit=1000)}
        assert delivered and all(e == read[e.id] for e in delivered)
        assert not wakes.acquire(timeout=0.5)  # the bridge's own stream: nothing to read by id

        connection = pika.BlockingConnection(pika.URLParameters(bridge_env.settings.amqp_url))
        try:
            channel = connection.channel()
            newest = read[max(read)].to_json()
            for app_id, body in (("flow45-events-another",
                                  json.dumps({"events": [{**newest, "id": newest["id"] + 10_000}]})),
                                 ("flow45-events-another", "{not json")):
                channel.basic_publish(names.EVENTS_EXCHANGE, "reports", body.encode(),
                                      pika.BasicProperties(app_id=app_id))
                assert wakes.acquire(timeout=10), body  # read by id: the new publisher may have skipped some
        finally:
            connection.close()
        wire_log.published = [p for p in wire_log.published if p.body != b"{not json"]  # not an event, on purpose
        assert delivered[-1].id == newest["id"] + 10_000
    finally:
        stop()
        client.close()


def test_a_follower_is_woken_to_read_by_id_when_a_page_number_is_skipped(bridge_env):
    """Pages its capped queue dropped while it lagged: the follower reads them from the ledger."""
    import threading

    from bridge.remote import RemoteClient

    delivered, wakes = [], threading.Semaphore(0)
    client = RemoteClient(bridge_env.url("reports-ops"))
    stop = client.subscribe(wakes.release, delivered.append)
    connection = pika.BlockingConnection(pika.URLParameters(bridge_env.settings.amqp_url))
    try:
        assert wakes.acquire(timeout=10)  # connected

        def page(number: int) -> None:
            properties = pika.BasicProperties(app_id="flow45-events-lagged", headers={names.EVENT_PAGE_HEADER: number})
            connection.channel().basic_publish(names.EVENTS_EXCHANGE, "reports", b'{"events": []}', properties)

        for number in (1, 2, 3):
            page(number)
        assert not wakes.acquire(timeout=1.0)  # one page after another: nothing missed
        page(7)
        assert wakes.acquire(timeout=10)  # 4 to 6 dropped
    finally:
        connection.close()
        stop()
        client.close()


def test_an_operators_own_queue_on_the_stream_keeps_its_newest_pages_only(bridge_env, monkeypatch):
    """A follower that never reads cannot fill the broker: setup-broker's policy caps its queue."""
    from bridge import setup_broker

    def apply_followers_policy() -> None:
        [policy] = [c for c in setup_broker.plan(bridge_env.settings, {})[0] if "flow45-followers" in c]
        bridge_env.rabbit.apply(policy)

    monkeypatch.setattr(setup_broker, "FOLLOWER_MAX_PAGES", 5)
    apply_followers_policy()
    try:
        follower = bridge_env.channel("reports-ops")
        queue = follower.queue_declare("", exclusive=True).method.queue
        follower.queue_bind(queue, names.EVENTS_EXCHANGE, "reports")
        admin = bridge_env.channel()
        for number in range(1, 21):
            admin.basic_publish(names.EVENTS_EXCHANGE, "reports", b'{"events": []}',
                                pika.BasicProperties(headers={names.EVENT_PAGE_HEADER: number}))
        admin.connection.close()
        deadline = time.monotonic() + 10
        while follower.queue_declare(queue, passive=True).method.message_count < 5 and time.monotonic() < deadline:
            time.sleep(0.05)
        kept = [follower.basic_get(queue, auto_ack=True)[1].headers[names.EVENT_PAGE_HEADER] for _ in range(5)]
        assert follower.queue_declare(queue, passive=True).method.message_count == 0
        follower.connection.close()
    finally:
        monkeypatch.undo()
        apply_followers_policy()
    assert kept == [16, 17, 18, 19, 20]


def test_an_event_left_open_while_a_publisher_started_is_streamed_and_the_marks_wait_for_it(bridge_env, tmp_path):
    """A transaction took its ledger ids, a larger one committed, and the stream's publisher started
    again meanwhile (a bridge restarted, or another took over): when the transaction commits, its
    events are streamed too. Each mark sent while it was open stays below its ids; then one passes them."""
    import threading

    from bridge.events import EventPublisher
    from bridge.remote import RemoteClient
    from tests.held_open import HeldOpen

    deploy_two_teams(tmp_path)
    assert bridge_env.bridge.events.ready.wait(10)
    delivered, marks, wakes = [], [], threading.Semaphore(0)
    client = RemoteClient(bridge_env.url("reports-ops"))
    stop = client.subscribe(wakes.release, delivered.append, marks.append)

    def wait_for(condition) -> None:
        deadline = time.monotonic() + 15
        while not condition():
            assert time.monotonic() < deadline, f"delivered {[e.id for e in delivered]}, marks {marks}"
            time.sleep(0.05)

    publisher = None
    try:
        assert wakes.acquire(timeout=10)
        with HeldOpen(lambda: store.trigger("reports", "monthly_report", {"month": "2026-02"},
                                            actor="slow-cron")) as slow:
            open_from = len(marks)
            early = store.trigger("reports", "nightly_sales", None, actor="cron")
            wait_for(lambda: any(e.run == early for e in delivered) and len(marks) > open_from)
            bridge_env.bridge.events.stop()
            wait_for(lambda: not bridge_env.bridge.events.publishing)
            publisher = EventPublisher(bridge_env.settings)
            threading.Thread(target=publisher.run, daemon=True).start()
            wait_for(lambda: publisher.publishing)
            after_start = store.trigger("reports", "nightly_sales", None, actor="cron")
            wait_for(lambda: any(e.run == after_start for e in delivered))
            open_until = len(marks)
        wait_for(lambda: any(e.run == slow.result and e.kind == "trigger" for e in delivered))
        late_ids = [e.id for e in store.list_events(0, run=slow.result, limit=1000)]
        assert all(mark < min(late_ids) for mark in marks[open_from:open_until])
        wait_for(lambda: marks[-1] >= max(e.id for e in delivered))
    finally:
        stop()
        client.close()
        if publisher is not None:
            publisher.stop()
    assert len({e.id for e in delivered}) == len(delivered)  # each once
