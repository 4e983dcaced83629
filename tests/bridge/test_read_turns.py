"""One team's slow reads cannot hold another team's read: teams take turns, one read each, and a
read stops after the installation's read_timeout (too_slow)."""

from __future__ import annotations

import json
import threading
import time
import uuid

import pika
import psycopg2
import pytest

from bridge import reads
from bridge.remote import RemoteClient
from bridge.service import Bridge
from flow45 import names
from flow45.errors import Flow45Error
from tests.bridge.conftest import waiting
from tests.bridge.test_team_inboxes import _stop

pytestmark = pytest.mark.integration

READ_TIMEOUT = 2.0
SLOW_READS = 4


class _Reader:
    """An operator's connection that publishes reads to its team's read exchange and keeps the answers."""

    def __init__(self, env, user: str, team: str) -> None:
        self.user, self.team = user, team
        self.connection = pika.BlockingConnection(pika.URLParameters(env.url(user)))
        self.channel = self.connection.channel()
        self.answers: list[dict] = []
        self.channel.basic_consume("amq.rabbitmq.reply-to", auto_ack=True,
                                   on_message_callback=lambda _c, _m, _p, body: self.answers.append(json.loads(body)))

    def ask(self, read: dict, shared: bool = False) -> None:
        exchange = names.READ_EXCHANGE if shared else names.read_exchange(self.team)
        self.channel.basic_publish(exchange, read["type"], json.dumps(read).encode(),
                                   pika.BasicProperties(content_type="application/json", message_id=uuid.uuid4().hex,
                                                        user_id=self.user, reply_to="amq.rabbitmq.reply-to"))


def _hold_the_runs_table(postgres_url: str):
    """Another session holding the run table, so every read of runs waits for it (as a heavy one would run)."""
    connection = psycopg2.connect(postgres_url)
    connection.cursor().execute("LOCK TABLE run IN ACCESS EXCLUSIVE MODE")  # until rollback
    return connection


def test_a_teams_slow_reads_hold_another_teams_read_for_one_read_at_most(bridge_env, postgres_url):
    _stop(bridge_env.bridge, bridge_env.thread)
    settings = bridge_env.settings.model_copy(update={"read_timeout": READ_TIMEOUT})
    bridge = Bridge(settings, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    rival, reports = _Reader(bridge_env, "rival-ops", "rival"), _Reader(bridge_env, "reports-ops", "reports")
    client = RemoteClient(bridge_env.url("rival-ops"), timeout=10)
    try:  # stopped whatever happens: a bridge left running would take the next test's reads
        held = _hold_the_runs_table(postgres_url)
        try:
            assert bridge.started.wait(20), "the bridge did not start consuming"
            for n in range(SLOW_READS):
                rival.ask({"type": "runs", "limit": n + 1})
            rival.connection.process_data_events(time_limit=0)
            while waiting(bridge_env, names.reads_queue("rival")):  # all in the bridge's hands
                time.sleep(0.05)
            reports.ask({"type": "whoami"})
            deadline, seen_before_reports = time.monotonic() + SLOW_READS * READ_TIMEOUT + 20, 0
            while not reports.answers or len(rival.answers) < SLOW_READS:
                assert time.monotonic() < deadline, (f"reports answered {len(reports.answers)}, rival "
                                                     f"{len(rival.answers)} of {SLOW_READS}, while runs were held")
                rival.connection.process_data_events(time_limit=0.02)
                if not reports.answers:
                    reports.connection.process_data_events(time_limit=0.02)
                    seen_before_reports = len(rival.answers)
            assert reports.answers[0]["result"] == {"user": "reports-ops", "team": "reports"}
            assert seen_before_reports <= 1, f"reports' read waited behind {seen_before_reports} of rival's"
            assert [a["code"] for a in rival.answers] == ["too_slow"] * SLOW_READS
            assert "longer than 2s, the installation's read_timeout" in rival.answers[0]["error"]
        finally:
            held.rollback()
            held.close()
        assert client.runs() is not None  # the table let go: the same read is answered
        held = _hold_the_runs_table(postgres_url)
        try:
            with pytest.raises(Flow45Error, match="read_timeout") as refused:
                client.runs()
            assert refused.value.code == "too_slow"
        finally:
            held.rollback()
            held.close()
    finally:
        client.close()
        rival.connection.close()
        reports.connection.close()
        _stop(bridge, thread)


def test_through_the_shared_exchange_a_teams_reads_are_lined_up_apart_too(bridge_env, monkeypatch):
    """rival fills the shared queue while the bridge is down; reports' first whoami (which goes there)
    waits behind a few of rival's at most, not behind all of them."""
    _stop(bridge_env.bridge, bridge_env.thread)
    # The order the bridge answers in: the answers' arrival on two connections would not tell it.
    answered_for: list[str] = []
    answer_read = reads.answer_read

    def answer_and_note(team, user, read):
        answered_for.append(team)
        return answer_read(team, user, read)

    monkeypatch.setattr(reads, "answer_read", answer_and_note)
    rival, reports = _Reader(bridge_env, "rival-ops", "rival"), _Reader(bridge_env, "reports-ops", "reports")
    flood = 100
    for n in range(flood):  # each read its own (identical ones would be answered by one query)
        rival.ask({"type": "runs", "limit": n + 1}, shared=True)
    reports.ask({"type": "whoami"}, shared=True)
    rival.connection.process_data_events(time_limit=0)
    reports.connection.process_data_events(time_limit=0)
    deadline = time.monotonic() + 20
    while waiting(bridge_env, names.READS_QUEUE) < flood + 1:
        assert time.monotonic() < deadline, f"{waiting(bridge_env, names.READS_QUEUE)} of {flood + 1} reads queued"
        time.sleep(0.05)
    bridge = Bridge(bridge_env.settings, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 30
        while not reports.answers:
            assert time.monotonic() < deadline, f"reports' whoami not answered; rival had {len(rival.answers)}"
            reports.connection.process_data_events(time_limit=0.01)
        assert reports.answers[0]["result"] == {"user": "reports-ops", "team": "reports"}
        seen_before_reports = answered_for.index("reports")
        assert seen_before_reports < flood / 4, f"reports' read waited behind {seen_before_reports} of rival's"
    finally:
        rival.connection.close()
        reports.connection.close()
        _stop(bridge, thread)
