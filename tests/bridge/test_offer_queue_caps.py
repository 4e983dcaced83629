"""A function's offer queue is capped: past the cap its offers wait in the outbox, not on the broker.
The relay holds a full queue's rows back for a while instead of sending them again on every pass, so
the other teams' offers go on; once workers take from the queue, the rest follow and none is lost."""

from __future__ import annotations

import json
import threading
import time

import pika
import pytest

from bridge import relay
from bridge.rpc import call
from flow45 import names, store
from flow45.models import Outbox
from flow45.settings import Settings, use_settings
from tests.bridge.conftest import set_cap
from tests.bridge.conftest import waiting as _waiting

pytestmark = pytest.mark.integration

ONE_TASK = """
team: {team}
types:
  Doc: {{fields: {{uri: string}}}}
workflows:
  one:
    tasks:
      only: {{function: solo, output: Doc}}
"""
PROBE = names.offer_queue("capprobe", "fn")  # under the policy's pattern, for seeing it enforced


def _probe_refuses_past(env, count: int) -> bool:
    """Whether the broker refuses the message after `count` into a queue of the offers' pattern."""
    channel = env.channel()
    try:
        channel.queue_declare(PROBE, durable=True)
        channel.queue_purge(PROBE)
        channel.confirm_delivery()
        try:
            for _ in range(count + 2):  # a queue may take one past its cap before it refuses
                channel.basic_publish("", PROBE, b"{}")
        except pika.exceptions.NackError:
            return True
        return False
    finally:
        channel.queue_delete(PROBE)
        channel.connection.close()


def _set_offer_cap(env, messages: int) -> None:
    set_cap(env, "flow45-offers", "offer_queue_max_messages", messages, lambda n: _probe_refuses_past(env, n))


def _take(env, queue: str) -> list[int]:
    """Every offer waiting in `queue`, taken; their instances."""
    channel = env.channel()
    taken = []
    try:
        while (got := channel.basic_get(queue, auto_ack=True))[0] is not None:
            taken.append(json.loads(got[2])["instance"])
    finally:
        channel.connection.close()
    return taken


def _exists(env, queue: str) -> bool:
    try:
        _waiting(env, queue)
    except pika.exceptions.ChannelClosedByBroker:
        return False
    return True


def _until(condition, what: str, seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_full_offer_queue_holds_its_rows_in_the_outbox_and_another_teams_offers_go_on(bridge_env, monkeypatch):
    # A small in-flight budget stands for a backlog of thousands: refused rows sent again on every pass
    # would fill it, ahead of the other team's row (the same priority, written later).
    monkeypatch.setattr(relay, "MAX_IN_FLIGHT", 4)
    monkeypatch.setattr(relay, "RELAY_PAGE", 2)
    monkeypatch.setattr(relay, "FULL_WAIT", 0.2)
    monkeypatch.setattr(relay, "FULL_WAIT_MAX", 0.5)
    for team in ("reports", "rival"):
        call(bridge_env.url(f"{team}-ops"), team, {"type": "deploy", "files": {"one.yaml": ONE_TASK.format(team=team)}})
    reports_queue, rival_queue = names.offer_queue("reports", "solo"), names.offer_queue("rival", "solo")
    assert _exists(bridge_env, reports_queue) and _exists(bridge_env, rival_queue)  # declared before each answer
    _set_offer_cap(bridge_env, 3)
    try:
        runs = [store.trigger("reports", "one", actor="ops") for _ in range(8)]
        pending = Outbox.select().where(Outbox.sent_at.is_null() & (Outbox.team == "reports")).count
        _until(lambda: (waiting := _waiting(bridge_env, reports_queue)) >= 3 and pending() == 8 - waiting,
               "the capped queue did not fill")
        assert _waiting(bridge_env, reports_queue) in (3, 4)  # at most one past the cap

        rival_run = store.trigger("rival", "one", actor="ops")
        _until(lambda: _waiting(bridge_env, rival_queue) == 1, "the other team's offer waited behind the full queue")

        taken: list[int] = []
        _until(lambda: taken.extend(_take(bridge_env, reports_queue)) or len(taken) >= 8,
               "the held offers did not follow once workers took from the queue")
    finally:
        _set_offer_cap(bridge_env, Settings.model_fields["offer_queue_max_messages"].default)
    assert sorted(taken) == sorted(store.get_run(run).instances[0].id for run in runs)  # each once, none lost
    assert _take(bridge_env, rival_queue) == [store.get_run(rival_run).instances[0].id]
    _until(lambda: pending() == 0, "rows the broker took were not marked sent")  # marked just after the confirm


FAN_IN = """
team: reports
types:
  Doc: {fields: {uri: string}}
workflows:
  gather:
    tasks:
      u0: {function: part, output: Doc}
      u1: {function: part, output: Doc}
      u2: {function: part, output: Doc}
      u3: {function: part, output: Doc}
      u4: {function: part, output: Doc}
      merge: {function: merge, output: Doc, inputs: {a: u0, b: u1, c: u2, d: u3, e: u4}}
"""
CAP = 64 * 1024


def test_an_offer_over_the_message_cap_is_not_published_and_the_bridge_goes_on(bridge_env, caplog):
    """Deployed under a larger max_message_bytes, a fan-in's offer outgrew the cap the installation
    set since, with the broker's max_message_size. Published, the broker would close the bridge's
    channel, and the bridge would reconnect for every team and publish it again first, for ever."""
    from bridge.service import Bridge
    from tests.store.helpers import claim

    for team in ("reports", "rival"):
        files = {"c.yaml": FAN_IN if team == "reports" else ONE_TASK.format(team=team)}
        call(bridge_env.url(f"{team}-ops"), team, {"type": "deploy", "files": files})
    bridge_env.bridge.stop()
    bridge_env.thread.join(timeout=10)
    bridge_env.rabbit.ctl("eval", f"application:set_env(rabbit, max_message_size, {CAP}).")
    bridge = None
    try:
        run = store.trigger("reports", "gather", actor="ops")
        for task in ("u0", "u1", "u2", "u3", "u4"):
            grant = claim(run, task)
            store.submit(grant.instance, grant.token, {"uri": "x" * 15_000})
        lowered = bridge_env.settings.model_copy(update={"max_message_bytes": CAP})
        use_settings(lowered)
        bridge = Bridge(lowered, batch_size=50)
        thread = threading.Thread(target=bridge.run, daemon=True)
        thread.start()
        _until(lambda: bridge.consuming, "the bridge did not start consuming")
        rival_run = store.trigger("rival", "one", actor="ops")
        rival_queue = names.offer_queue("rival", "solo")
        _until(lambda: _waiting(bridge_env, rival_queue) == 1, "the other team's offer did not come")
        time.sleep(1)  # a few relay passes
        assert _take(bridge_env, rival_queue) == [store.get_run(rival_run).instances[0].id]
        assert _waiting(bridge_env, names.offer_queue("reports", "merge")) == 0
        assert bridge.consuming and "broker connection closed" not in caplog.text
        said = [r.getMessage() for r in caplog.records if "over max_message_bytes" in r.getMessage()]
        assert len(said) == 1 and f"(reports offer, task instance {instance_of(run, 'merge')})" in said[0]
    finally:
        bridge_env.rabbit.ctl("eval", "application:set_env(rabbit, max_message_size, 134217728).")
        if bridge is not None:
            bridge.stop()
            thread.join(timeout=10)


def instance_of(run: int, task: str) -> int:
    return next(i.id for i in store.get_run(run).instances if i.task == task)
