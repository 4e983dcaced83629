"""A team's heavy operator messages hold up that team's next ones, and nobody else's: each goes in a
batch of its own, one at a time for each team, while another team's go beside it."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pika
import pytest

from bridge.service import Bridge
from flow45 import names, store
from flow45.config import load_config
from flow45.models import Run
from tests.bridge.conftest import waiting
from tests.conftest import EXAMPLES

pytestmark = pytest.mark.integration

WIDE_TASKS = 4999  # and the root: max_workflow_tasks
BACKFILLS = 3  # each of RUNS_EACH runs of the wide workflow: 40,000 task instances in one message
# A backfill's time is the yardstick of the test: long enough that a small trigger, slowed by sharing the
# bridge's interpreter and a loaded machine's cores with the backfill in flight, stays well within it.
RUNS_EACH = 8


def _wide_config() -> str:
    steps = "\n".join(f"      s{n:04d}: {{function: step, output: Blob, inputs: {{prev: root}}}}"
                      for n in range(WIDE_TASKS))
    return ("team: rival\ntypes:\n  Blob: {fields: {uri: string}}\nworkflows:\n  wide:\n    max_active_runs: null\n"
            '    schedule: {cron: "0 * * * *", timezone: UTC}\n'
            f"    tasks:\n      root: {{function: start, output: Blob}}\n{steps}\n")


class _Operator:
    """An operator's connection on a thread of its own, noting when each answer arrives."""

    def __init__(self, env, user: str) -> None:
        self.connection = pika.BlockingConnection(pika.URLParameters(env.url(user)))
        self.channel = self.connection.channel()
        self.channel.confirm_delivery()  # each trigger is in the inbox before the bridge starts
        self.answers: list[tuple[float, dict]] = []
        self.channel.basic_consume("amq.rabbitmq.reply-to", self._answered, auto_ack=True)
        self.user, self.expected = user, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._listen, daemon=True)

    def _answered(self, _channel, _method, _properties, body: bytes) -> None:
        self.answers.append((time.monotonic(), json.loads(body)))

    def send(self, message: dict) -> None:
        body = json.dumps(message).encode()
        self.channel.basic_publish(f"flow45.in.{self.user.split('-')[0]}", message["type"], body, pika.BasicProperties(
            content_type="application/json", message_id=uuid.uuid4().hex, user_id=self.user,
            reply_to="amq.rabbitmq.reply-to", correlation_id=uuid.uuid4().hex))
        self.expected += 1

    def listen(self) -> None:
        self._thread.start()

    def _listen(self) -> None:
        while not self._stop.is_set() and len(self.answers) < self.expected:
            self.connection.process_data_events(time_limit=0.05)

    def wait(self, timeout: float = 60.0) -> list[tuple[float, dict]]:
        self._thread.join(timeout)
        assert len(self.answers) == self.expected, f"{self.user}: {len(self.answers)} of {self.expected} answers"
        return self.answers

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.connection.close()


def test_another_teams_trigger_is_answered_while_a_team_backfills_wide_runs(bridge_env, tmp_path):
    """rival's three backfills, of eight 5,000-task runs each, are in its inbox when the bridge starts;
    once the bridge has taken them in, reports triggers a small run. It is made beside rival's
    backfill in flight and answered in less time than one of those takes: it waits neither for the
    one in flight nor rides with the next."""
    (tmp_path / "rival.yaml").write_text(_wide_config())
    store.deploy(load_config(EXAMPLES), actor="ops")
    store.deploy(load_config(tmp_path), actor="ops")
    bridge_env.bridge.stop()
    bridge_env.thread.join(timeout=10)
    rival, reports = _Operator(bridge_env, "rival-ops"), _Operator(bridge_env, "reports-ops")
    bridge = Bridge(bridge_env.settings, batch_size=50, connections=4)
    thread = threading.Thread(target=bridge.run, daemon=True)
    try:
        for day in range(1, BACKFILLS + 1):
            rival.send({"type": "backfill", "workflow": "wide", "start": f"2026-03-0{day}T00:00:00Z",
                        "end": f"2026-03-0{day}T0{RUNS_EACH - 1}:00:00Z"})
        rival.listen()
        thread.start()
        deadline = time.monotonic() + 30
        while waiting(bridge_env, names.inbox_queue("rival")) or not bridge.consuming:
            assert time.monotonic() < deadline, "the bridge did not take rival's backfills in"
            time.sleep(0.005)
        sent = time.monotonic()
        reports.send({"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-10"}})
        reports.listen()
        [(answered, answer)] = reports.wait()
        rivals = rival.wait(timeout=120)
    finally:
        bridge.stop()
        thread.join(timeout=10)
        rival.close()
        reports.close()
    assert "error" not in answer, answer
    assert all("error" not in a for _, a in rivals), rivals
    assert Run.select().where(Run.team == "rival").count() == BACKFILLS * RUNS_EACH
    times = [at for at, _ in rivals]
    one_backfill = min(later - earlier for earlier, later in zip(times, times[1:]))  # rival's go one at a time
    assert answered - sent < one_backfill, (
        f"reports' trigger took {answered - sent:.3f}s; one of rival's backfills {one_backfill:.3f}s: "
        "it waited for rival's")
