"""Property-based fuzzing of operators' reads, as the bridge's reader takes them in: hostile
properties (any user, exchange, reply-to) and hostile bodies (any read, its fields right or spoiled,
junk, deep nesting). Every read gets exactly one answer on direct reply-to or none at all, is
answered for its sender's own team only, refused with a documented code otherwise, and nothing
raises or logs an error. The reader runs for real on the store; only the channels are recorders."""

from __future__ import annotations

import json
import logging
import uuid

import pika
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bridge.inbound import delivery_from
from bridge.reads import ReadServer
from flow45 import names
from flow45.settings import Settings, use_settings
from flow45.strictjson import loads
from tests.bridge.conftest import TEAMS, answer_reads
from tests.bridge.test_inbound_properties import (
    CODES, _is_direct, deep, hostile_numbers, json_values, reply_tos, wrong_types,
)
from tests.client.two_teams import deploy_two_teams

USERS = ["reports-ops", "rival-ops", "reports-worker", "rival-worker"]
TEAM_OF = {user: team for team, spec in TEAMS.items() for user in spec["users"]}
EXCHANGES = ["flow45.read", "flow45.read.reports", "flow45.read.rival", "flow45.read.nobody", "flow45.in.reports", ""]
READ_FIELDS = {  # each read's fields, the required ones first (docs/protocol.md, "Operator reads")
    "whoami": [], "workflows": [], "schema": [], "instance": ["instance"], "stats": ["workflow", "runs"],
    "runs": ["workflow", "status", "text", "before", "limit", "params", "since", "until", "ids"],
    "run": ["run", "attempts", "as_of", "as_of_time"],
    "events": ["after", "run", "instance", "newest", "limit", "before", "since", "until"],
    "counts": ["workflow", "text"], "inbox": ["show", "limit"], "spec": ["run", "workflow"],
}
REQUIRED = {"instance": "instance", "stats": "workflow", "run": "run"}
FIELDS = sorted({f for fields in READ_FIELDS.values() for f in fields})
RIGHT = {"workflow": "monthly_report", "status": "running", "text": "#1", "before": 5, "limit": 3,
         "params": {"month": "2026-10"}, "since": "2026-10-01T00:00:00Z", "until": "2028-02-29T00:00:00Z",
         "ids": [1, 2], "attempts": True, "as_of": 1, "as_of_time": "2026-12-01T00:00:00Z", "runs": 5,
         "after": 0, "newest": True, "show": "mine"}


class Recorder:
    """A channel that keeps what is published on it."""

    def __init__(self) -> None:
        self.published: list[tuple[str, str, bytes, pika.BasicProperties]] = []
        self.acked: list[int] = []

    def basic_publish(self, exchange, routing_key, body, properties) -> None:
        properties.encode()  # pika can send it
        self.published.append((exchange, routing_key, body, properties))

    def basic_ack(self, tag) -> None:
        self.acked.append(tag)


@st.composite
def read_bodies(draw, runs: list[int], instances: list[int]) -> bytes:
    """Mostly a right read (its own fields, right values, of either team's run or instance); then
    some spoiled, foreign or missing."""
    run, instance = draw(st.sampled_from(runs)), draw(st.sampled_from(instances))
    kind = draw(st.one_of(*[st.sampled_from(sorted(READ_FIELDS))] * 4, st.sampled_from(["trigger", "claim", "x"])))
    right = {**RIGHT, "run": run, "instance": instance}
    own = READ_FIELDS.get(kind, [])
    fields = {"type": kind, **({REQUIRED[kind]: right[REQUIRED[kind]]} if kind in REQUIRED else {})}
    for name in draw(st.lists(st.sampled_from(own), max_size=3, unique=True)) if own else ():
        fields[name] = right[name]
    spoiled = draw(st.lists(st.sampled_from(FIELDS), max_size=2, unique=True)) if draw(st.integers(0, 2)) == 0 else []
    for name in spoiled:
        fields[name] = draw(st.one_of(st.just(right[name]), json_values, wrong_types, hostile_numbers.map(str),
                                      st.integers(-(2**70), 2**70)))
    body = json.dumps(fields).encode()
    return draw(st.one_of(*[st.just(body)] * 6, st.binary(max_size=32), deep.map(str.encode),
                          json_values.map(lambda v: json.dumps(v).encode())))


@st.composite
def proper_properties(draw, tag: int) -> dict:
    """An operator's client as written: then the exchange (its own, the shared one, another team's)
    and the body are what gets tested."""
    user = draw(st.sampled_from(["reports-ops", "rival-ops"]))
    return dict(user_id=user, reply_to=f"amq.rabbitmq.reply-to.g1h2AA.a{tag}", content_type="application/json",
                exchange=draw(st.sampled_from(["flow45.read", "flow45.read.reports", "flow45.read.rival"])))


@st.composite
def hostile_properties(draw, tag: int) -> dict:
    user = draw(st.one_of(st.sampled_from(USERS), st.sampled_from([None, "", "stranger"]), st.binary(max_size=4)))
    return dict(user_id=user, reply_to=draw(st.one_of(st.just(f"amq.rabbitmq.reply-to.g1h2AA.a{tag}"), reply_tos)),
                content_type=draw(st.sampled_from([None, "application/json", "text/plain"])),
                exchange=draw(st.sampled_from(EXCHANGES)))


@st.composite
def reads(draw, tag: int, runs: list[int], instances: list[int]):
    fields = draw(st.one_of(proper_properties(tag), proper_properties(tag), hostile_properties(tag)))
    method = pika.spec.Basic.Deliver(delivery_tag=tag, exchange=fields.pop("exchange"), routing_key="x")
    properties = pika.BasicProperties(message_id=uuid.uuid4().hex, correlation_id="c", **fields)
    return delivery_from(method, properties, draw(read_bodies(runs, instances)))


@pytest.fixture
def two_runs(store_db, db_url, tmp_path):
    """A run of each team: (run ids, instance ids), reports' first."""
    use_settings(Settings(database_url=db_url, teams=TEAMS))
    runs = deploy_two_teams(tmp_path)
    return [runs["reports"].run, runs["rival"].run], [runs["reports"].approve, runs["rival"].extract]


def _answered_rightly(delivery, answer: dict) -> bool:
    """Refused with a documented code, or answered to an operator of a team, through the shared
    exchange or its own team's, with none of the other team's rows."""
    if not answer["ok"]:
        return answer["code"] in CODES
    team = TEAM_OF.get(delivery.user_id) if isinstance(delivery.user_id, str) else None
    if team is None or not delivery.user_id.endswith("-ops"):
        return False
    if names.team_of_read_exchange(delivery.exchange) not in (None, team):
        return False
    other = {"reports": "rival", "rival": "reports"}[team]
    return f'"team": "{other}"' not in json.dumps(answer["result"])


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_read_is_answered_for_its_own_team_or_refused_and_nothing_raises(two_runs, data, caplog):
    runs, instances = two_runs
    batch = [data.draw(reads(tag, runs, instances)) for tag in range(1, data.draw(st.integers(1, 4)) + 1)]
    server = ReadServer(Settings(teams=TEAMS))
    channel, dead = Recorder(), Recorder()
    caplog.clear()
    answer_reads(server, channel, dead, batch)
    assert sorted(channel.acked) == [d.tag for d in batch], "each read acked once, whatever its answer"
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    answers: dict[str, list[dict]] = {}
    for _, routing_key, body, _ in channel.published:
        answers.setdefault(routing_key, []).append(loads(body.decode()))
    asked: dict[str, list] = {}
    for delivery in batch:
        if _is_direct(delivery.reply_to):
            asked.setdefault(delivery.reply_to, []).append(delivery)
    assert {k: len(v) for k, v in answers.items()} == {k: len(v) for k, v in asked.items()}, "one answer per read"
    for reply_to, answered in answers.items():  # reads sharing a reply-to: each answer fits one of them
        for answer in answered:
            assert any(_answered_rightly(d, answer) for d in asked[reply_to]), (answer, asked[reply_to])
    for _, routing_key, _, _ in dead.published:
        assert routing_key in ("flow45.dead", "flow45.dead.reports", "flow45.dead.rival")



def _asked_alone(read: dict) -> dict:
    """The answer to one read of reports' operator, as the reader gives it."""
    server, channel, dead = ReadServer(Settings(teams=TEAMS)), Recorder(), Recorder()
    method = pika.spec.Basic.Deliver(delivery_tag=1, exchange="flow45.read.reports", routing_key="x")
    properties = pika.BasicProperties(message_id="m", correlation_id="c", user_id="reports-ops",
                                      reply_to="amq.rabbitmq.reply-to.g1h2AA.a1")
    answer_reads(server, channel, dead, [delivery_from(method, properties, json.dumps(read).encode())])
    [(_, _, body, _)] = channel.published
    return loads(body.decode())


@pytest.mark.parametrize("read, field", [
    ({"type": "runs", "before": 2**63}, "runs.before"),
    ({"type": "runs", "ids": [1, -(2**63) - 1]}, "runs.ids.1"),
    ({"type": "runs", "workflow": "monthly_report", "version": 2**70}, "runs.version"),
    ({"type": "events", "after": 2**63}, "events.after"),
    ({"type": "events", "newest": True, "before": 2**64}, "events.before"),
    ({"type": "run", "run": 1, "as_of": 2**63}, "run.as_of"),
    ({"type": "versions", "workflow": "w", "since": 2**63}, "versions.since"),
])
def test_a_bound_beyond_64_bits_is_refused_as_out_of_range_on_every_store(two_runs, caplog, read, field):
    """SQLite's driver cannot take such a number: it was answered as a bug (`internal`, a traceback)."""
    answer = _asked_alone(read)
    assert (answer["ok"], answer["code"]) == (False, "invalid_message") and field in answer["error"], answer
    assert "9223372036854775807" in answer["error"] or "-9223372036854775808" in answer["error"]
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_largest_64_bit_bound_is_answered(two_runs):
    ours = two_runs[0][0]
    answer = _asked_alone({"type": "runs", "before": 2**63 - 1, "ids": [ours, 2**63 - 1]})
    assert [run["id"] for run in answer["result"]["runs"]] == [ours]
