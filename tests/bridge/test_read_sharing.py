"""Reads that arrive together: identical reads of one team are answered by one query, never shared
with another team or (for what depends on the reader) another user, and nothing is kept for later."""

from __future__ import annotations

import json
from dataclasses import dataclass

import pytest

from bridge import reads
from bridge.inbound import Delivery
from flow45 import store
from flow45.db import connect
from flow45.migrate import ensure_schema
from flow45.settings import Settings, use_settings
from tests.bridge.conftest import answer_reads
from tests.client.two_teams import T0, deploy_two_teams

TEAMS = {
    "reports": {"users": {"reports-ops": "operator", "reports-lead": "operator"}},
    "rival": {"users": {"rival-ops": "operator"}},
}


@dataclass
class Published:
    routing_key: str
    body: bytes
    properties: object


class Channel:
    """What the read server publishes, kept (the replies go to direct reply-to)."""

    def __init__(self):
        self.published: list[Published] = []
        self.acked: list[int] = []

    def basic_publish(self, exchange, routing_key, body, properties=None):
        self.published.append(Published(routing_key, body, properties))

    def basic_ack(self, tag):
        self.acked.append(tag)


@pytest.fixture
def server(tmp_path):
    db = connect(f"sqlite:///{tmp_path / 'flow45.db'}", create=True)
    ensure_schema()
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'flow45.db'}", teams=TEAMS)
    use_settings(settings)
    deploy_two_teams(tmp_path)
    yield reads.ReadServer(settings)
    db.close()


def delivery(n: int, user: str, read: dict) -> Delivery:
    return Delivery(tag=n, exchange="flow45.read", user_id=user, message_id=f"m{n}", reply_to="amq.rabbitmq.reply-to",
                    correlation_id=f"c{n}", body=json.dumps(read).encode(), content_type="application/json")


def answered(server, asked: list[Delivery]) -> tuple[dict[str, dict], int]:
    """Each read's answer by correlation id, and the queries made for them."""
    channel, made = Channel(), []
    original = reads.answer_read

    def counted(team, user, read):
        made.append((team, read.type))
        return original(team, user, read)

    reads.answer_read = counted
    try:
        answer_reads(server, channel, Channel(), asked)
    finally:
        reads.answer_read = original
    return {p.properties.correlation_id: json.loads(p.body) for p in channel.published}, len(made)


def run_ids(answer: dict) -> list[int]:
    return [r["id"] for r in answer["result"]["runs"]]


def test_identical_reads_of_one_team_share_one_query_and_no_more(server):
    runs = {"type": "runs", "limit": 10}
    asked = [delivery(1, "reports-ops", runs), delivery(2, "reports-ops", runs), delivery(3, "reports-lead", runs),
             delivery(4, "rival-ops", runs), delivery(5, "reports-ops", {"type": "whoami"}),
             delivery(6, "reports-lead", {"type": "whoami"}), delivery(7, "rival-ops", {"type": "run", "run": 1})]
    answers, queries = answered(server, asked)
    ours, theirs = store.list_runs(team="reports")[0].id, store.list_runs(team="rival")[0].id
    assert run_ids(answers["c1"]) == run_ids(answers["c2"]) == run_ids(answers["c3"]) == [ours]
    assert run_ids(answers["c4"]) == [theirs]  # the same read from another team: its own rows
    assert answers["c5"]["result"]["user"] == "reports-ops" and answers["c6"]["result"]["user"] == "reports-lead"
    assert answers["c7"] == {"ok": False, "code": "not_found", "error": "run 1 not found for team rival"}
    assert queries == 5  # reports' runs once, rival's runs, two whoami (each its user's), rival's run
    assert server.answered == 7 and server.shared == 2

    newer = store.trigger("reports", "monthly_report", {"month": "2026-03"}, actor="reports-admin", now=T0)
    answers, queries = answered(server, [delivery(8, "reports-ops", runs)])
    assert run_ids(answers["c8"]) == [newer, ours] and queries == 1  # a read after a new event: read afresh


def test_a_team_just_answered_goes_behind_a_team_waiting_though_its_reads_came_first(server):
    """rival's line ran empty at its turn; its next reads, taken in before reports' one, still wait for
    reports' turn (the slow broker delivers reads one by one while a read is answered)."""
    channel, dead = Channel(), Channel()
    server._take(channel, dead, [delivery(1, "rival-ops", {"type": "runs", "limit": 1})])
    assert server._answer_turn(channel, dead)
    server._take(channel, dead, [delivery(2, "rival-ops", {"type": "runs", "limit": 2}),
                                 delivery(3, "rival-ops", {"type": "runs", "limit": 3}),
                                 delivery(4, "reports-ops", {"type": "whoami"})])
    while server._answer_turn(channel, dead):
        pass
    assert [p.properties.correlation_id for p in channel.published] == ["c1", "c4", "c2", "c3"]
