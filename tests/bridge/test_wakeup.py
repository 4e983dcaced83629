"""The relay is woken by the commit that wrote an outbox row, not by its polling interval; the
bridge's own batches commit without a notification (PostgreSQL would hold one lock over every
notifying commit and its disk flush, so batches could not flush together)."""

from __future__ import annotations

import json
import threading
import time

import pytest

from bridge.relay_lock import RELAY_LOCK_KEY
from bridge.rpc import call
from bridge.service import Bridge
from bridge.topology import declare_with_new_connection
from flow45 import store
from flow45.config import load_config
from flow45.db import atomic, dialect
from flow45.store.outbox import NOTIFY_CHANNEL
from tests.bridge.broker_helpers import wait_offer
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration


@pytest.fixture
def relay_interval() -> float:
    return 30.0  # polling alone would take this long


def test_an_offer_written_elsewhere_is_published_at_once(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    declare_with_new_connection(bridge_env.rabbit.amqp_url, bridge_env.settings)  # queues of the new functions
    channel = bridge_env.channel("reports-worker")
    started = time.monotonic()
    run = store.trigger("reports", "monthly_report", actor="ops")  # another connection commits the offer
    while time.monotonic() - started < 5:
        method, _props, body = channel.basic_get("flow45.tasks.reports.extract_sales", auto_ack=True)
        if method:
            break
        time.sleep(0.01)
    elapsed = time.monotonic() - started
    assert method is not None and json.loads(body)["run"] == run
    assert elapsed < 2.0, f"offer took {elapsed:.1f}s: the relay waited for its poll"


BACKLOG = """
team: reports
types:
  Blob:
    fields: {uri: string}
workflows:
  backlog:
    max_active_runs: null
    tasks:
      only: {function: drain, output: Blob}
"""


def test_a_backlog_of_many_pages_written_elsewhere_is_published_on_one_wake_up(bridge_env, tmp_path):
    (tmp_path / "backlog.yaml").write_text(BACKLOG)
    store.deploy(load_config(tmp_path), actor="ops")
    declare_with_new_connection(bridge_env.rabbit.amqp_url, bridge_env.settings)
    channel = bridge_env.channel("reports-worker")
    queue = "flow45.tasks.reports.drain"
    with atomic():  # one commit, one notification: 1,200 offers, over more than two pages of the relay
        runs = {store.trigger("reports", "backlog", actor="ops") for _ in range(1200)}
    deadline = time.monotonic() + 10
    while channel.queue_declare(queue, passive=True).method.message_count < len(runs):
        assert time.monotonic() < deadline, "the relay published one page and waited for its poll"
        time.sleep(0.05)
    offered = set()
    while (got := channel.basic_get(queue, auto_ack=True))[0]:
        offered.add(json.loads(got[2])["run"])
    assert offered == runs


def _finish_extract(env) -> tuple[int, float]:
    """A worker claims and submits the run's first task over the bridge; returns the run and when
    the submit was answered (committed)."""
    run = store.trigger("reports", "monthly_report", params={"month": "2026-10"}, actor="ops")
    offer = wait_offer(env, "reports", "extract_sales")
    assert offer["run"] == run
    worker = env.url("reports-worker")
    call(worker, "reports", {"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w1"})
    call(worker, "reports", {"type": "submit", "instance": offer["instance"], "token": offer["token"],
                             "output": {"uri": "s3://sales.parquet", "rows": 10}})
    return run, time.monotonic()


def test_the_relaying_bridge_publishes_its_batches_offers_without_notifying(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    declare_with_new_connection(bridge_env.rabbit.amqp_url, bridge_env.settings)
    listener = dialect().listen(NOTIFY_CHANNEL)
    try:
        run, _ = _finish_extract(bridge_env)
        render = wait_offer(bridge_env, "reports", "render_pdf")
        assert render["run"] == run
        listener.poll()
        notifying = {n.pid for n in listener.notifies}
    finally:
        listener.close()
    assert notifying == {dialect().backend_id()}, "only the trigger, committed here, notified the relay"


def _relay_holder() -> int | None:
    """The database session holding the relay lock."""
    row = dialect().db.execute_sql("SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND objid = %s AND granted",
                                   (RELAY_LOCK_KEY,)).fetchone()
    return row[0] if row else None


def test_an_offer_committed_by_a_bridge_that_does_not_relay_is_published_at_once(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    declare_with_new_connection(bridge_env.rabbit.amqp_url, bridge_env.settings)
    second = Bridge(bridge_env.settings, batch_size=50)
    thread = threading.Thread(target=second.run, daemon=True)
    thread.start()
    bridges = [bridge_env.bridge, second]
    try:
        deadline = time.monotonic() + 20
        while not all(b.consuming and b.relay.listener and b.relay.listener.own_pid for b in bridges):
            assert time.monotonic() < deadline, "the second bridge did not start"
            time.sleep(0.05)
        sessions = [b.relay.listener.own_pid for b in bridges]
        assert _relay_holder() in sessions
        relaying = bridges[sessions.index(_relay_holder())]
        cancelled = threading.Event()

        def stop_consuming() -> None:  # the inboxes go to the bridge that does not relay
            left = set(relaying._inbox_tags.values())

            def gone(frame) -> None:
                left.discard(frame.method.consumer_tag)
                if not left:
                    cancelled.set()

            for tag in list(left):
                relaying._consume_channel.basic_cancel(tag, callback=gone)

        relaying._connection.ioloop.add_callback_threadsafe(stop_consuming)
        assert cancelled.wait(5)
        run, submitted = _finish_extract(bridge_env)
        render = wait_offer(bridge_env, "reports", "render_pdf")
        elapsed = time.monotonic() - submitted
    finally:
        second.stop()
        thread.join(timeout=10)
    assert render["run"] == run
    assert elapsed < 2.0, f"the offer took {elapsed:.1f}s: the relay waited for its poll"
