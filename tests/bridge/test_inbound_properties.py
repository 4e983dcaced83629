"""Hostile input at the bridge's real inbound path, on SQLite and PostgreSQL.

Arbitrary bodies and properties go through exactly what the bridge runs for each batch of
deliveries: `delivery_from` (pika's callback arguments), `apply_batch` (parse, validate, apply on a
real store) and `answers.answer` (the reply and the dead-letter copy). Whatever comes in, nothing
raises, every delivery gets an answer with a documented code, replies go only to direct reply-to,
the copy lands in the sender's team's dead-letter queue, encodes as AMQP, and holds no planted secret.
"""

from __future__ import annotations

import json
import logging
import string

import pika
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from bridge import answers
from bridge.batch import apply_batch
from bridge.inbound import delivery_from
from flow45 import names, store
from flow45.config import load_config
from flow45.models import TaskInstance
from flow45.settings import Settings, use_settings
from flow45.strictjson import loads
from tests.bridge.conftest import TEAMS
from tests.conftest import EXAMPLES

CODES = {  # docs/protocol.md, "Error codes"; `internal` (a bug) is deliberately not among them
    "stale", "invalid_output", "invalid_message", "invalid_reply_to", "unauthorized", "not_found",
    "illegal_transition", "invalid_params", "invalid_config", "refused", "run_exists", "not_allowed",
}
USERS = ["reports-worker", "reports-ops", "rival-worker"]
TEAM_OF = {"reports-worker": "reports", "reports-ops": "reports", "rival-worker": "rival"}
PEM = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----"
BEARER = "Bearer eyJzZWNyZXQiOiJ0b3Agc2VjcmV0In0abc"
SECRET_MARKS = ("MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw", "eyJzZWNyZXQiOiJ0b3Agc2VjcmV0In0abc")
TEMPLATES = {  # kind -> its fields, right; the test then spoils some
    "claim": ["instance", "token", "worker"], "progress": ["instance", "token", "percent", "checkpoint"],
    "submit": ["instance", "token", "output", "next"], "fail": ["instance", "token", "error"],
    "skip": ["instance", "token", "reason"], "deploy": ["files"], "validate": ["files"],
    "trigger": ["workflow", "params", "logical_time", "key"], "backfill": ["workflow", "start", "end", "dry_run"], "undo": ["instance", "reason", "dry_run"], "retry": ["instance"],
    "hold": ["instance"], "release": ["instance"], "cancel": ["run"], "status": ["run", "limit"],
    "note": ["run", "text", "task"], "take": ["instance", "reason", "user"],
}
WORKER_KINDS = ["claim", "progress", "submit", "fail", "skip"]
OPERATOR_KINDS = sorted(set(TEMPLATES) - set(WORKER_KINDS))
FIELDS = sorted({f for fields in TEMPLATES.values() for f in fields} | {"message", "retryable", "hold"})


class Raw(str):
    """A JSON literal written as is: NaN, 1e400, a 5,000-digit number."""


def render(value) -> str:
    """JSON text that may hold literals `json.dumps` would never write."""
    if isinstance(value, Raw):
        return str(value)
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(str(k))}: {render(v)}" for k, v in value.items()) + "}"
    if isinstance(value, list):
        return "[" + ", ".join(render(v) for v in value) + "]"
    return json.dumps(value)


def nested(depth: int, inner: str = "1") -> str:
    return "[" * depth + inner + "]" * depth


leaves = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-(2**70), max_value=2**70),
    st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=12),
)
json_values = st.recursive(
    leaves, lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(st.text(max_size=6), kids, max_size=3)),
    max_leaves=8,
)
hostile_numbers = st.one_of(
    st.sampled_from(["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1E309", str(10**30), str(-(10**30)),
                     str(2**63), str(-(2**63) - 1), str(2**63 - 1), "-0", "1.0", "0.5", "1e-400"]).map(Raw),
    st.integers(min_value=20, max_value=6000).map(lambda n: Raw("9" * n)),
    st.integers(min_value=20, max_value=6000).map(lambda n: Raw("0." + "1" * n)),
)
wrong_types = st.one_of(
    st.sampled_from(["14", "1", "yes", "true", "0.5", "", "NaN", "null", "1e400"]),  # strings where numbers go
    st.booleans(), st.floats(allow_nan=False, allow_infinity=False), st.lists(leaves, max_size=2),
    st.dictionaries(st.text(max_size=4), leaves, max_size=2), st.none(),
)
deep = st.integers(min_value=60, max_value=12_000).map(lambda n: Raw(nested(n)))
secrets = st.sampled_from([PEM, BEARER, f"token {BEARER}", {"password": "hunter2-" + SECRET_MARKS[1]}, {"key": PEM}])


RIGHT = {
    "run": 1, "worker": "w", "percent": 50, "output": {"uri": "s3://x", "rows": 1}, "limit": 5, "error": "e",
    "reason": "r", "dry_run": True, "files": {"a.yaml": "team: reports\n"}, "workflow": "monthly_report",
    "params": {"month": "2026-10"}, "next": ["render_pdf", "extract_sales"],
    "logical_time": "2026-10-01T06:00:00Z", "start": "2026-09-01T00:00:00Z", "end": "2026-10-01T00:00:00Z",
    "text": "a note", "user": "reports-ops", "checkpoint": {"next": 3}, "task": "extract",
    "key": "order 2026-10/17",
}
TIME_FIELDS = {"logical_time", "start", "end"}
# Times of the wire's pattern that the calendar may not have (day 31 of April, hour 24, year 0), and its ends.
times = st.one_of(
    st.tuples(*[st.integers(0, 9999)] + [st.integers(0, 99)] * 5).map(
        lambda t: "{:04d}-{:02d}-{:02d}T{:02d}:{:02d}:{:02d}Z".format(*t)),
    st.sampled_from(["0001-01-01T00:00:00Z", "9999-12-31T23:59:59.999999Z", "2028-02-29T06:00:00Z",
                     "2027-02-29T06:00:00Z", "2026-03-29T02:30:00Z", "2026-10-01T06:00:00+02:00"]),
)


def spoiled(name: str):
    extra = [times] * 3 if name in TIME_FIELDS else []
    return st.one_of(*extra, json_values, hostile_numbers, wrong_types, deep, secrets, st.text(max_size=20))


@st.composite
def message_bodies(draw, instance: int, token: str, user: object = None) -> bytes:
    kinds = WORKER_KINDS if user in ("reports-worker", "rival-worker") else OPERATOR_KINDS if user == "reports-ops" else []
    kind = draw(st.sampled_from(kinds)) if kinds and draw(st.integers(0, 3)) else draw(st.sampled_from(sorted(TEMPLATES)))
    right = {**RIGHT, "instance": instance, "token": token}
    fields = {"type": kind, **{name: right[name] for name in TEMPLATES[kind]}}
    own_times = sorted(TIME_FIELDS.intersection(TEMPLATES[kind]))
    if own_times and draw(st.booleans()):  # a time the calendar may not have, in a message otherwise right
        fields[draw(st.sampled_from(own_times))] = draw(times)
    spoil = draw(st.sampled_from([0, 0, 1, 1, 2]))
    for name in draw(st.lists(st.sampled_from(["type", *FIELDS]), min_size=spoil, max_size=spoil, unique=True)):
        fields[name] = draw(spoiled(name))
    if draw(st.integers(0, 4)) == 0:
        fields.pop(draw(st.sampled_from(sorted(fields))))
    if draw(st.integers(0, 4)) == 0:
        fields[draw(st.text(max_size=8))] = draw(st.one_of(json_values, secrets))
    return render(fields).encode()


def bodies(instance: int, token: str, user: object):
    return st.one_of(
        *[message_bodies(instance, token, user)] * 6,
        st.binary(max_size=64),
        st.text(max_size=64).map(str.encode),
        deep.map(str.encode),
        st.integers(min_value=60, max_value=12_000).map(lambda n: ('{"a":' * n + "1" + "}" * n).encode()),
        st.integers(min_value=60, max_value=12_000).map(lambda n: ("[" * n).encode()),  # never closed
        json_values.map(lambda v: json.dumps(v).encode()),
    )


ascii_text = st.text(alphabet=string.ascii_letters + string.digits + ".-_=", max_size=40)
reply_tos = st.one_of(
    st.none(), st.just(""), st.just("amq.rabbitmq.reply-to"), ascii_text.map(lambda s: "amq.rabbitmq.reply-to." + s),
    st.sampled_from(["flow45.tasks.rival.extract_sales", "flow45.inbox", "amq.rabbitmq.reply-toX", "flow45.dead.rival"]),
    ascii_text, st.binary(min_size=1, max_size=8),
)
short_text = st.one_of(st.none(), st.text(max_size=40), st.binary(max_size=8))


@st.composite
def hostile_properties(draw) -> dict:
    user = draw(st.one_of(st.sampled_from(USERS), st.sampled_from([None, "", "stranger"]), st.text(max_size=10),
                          st.binary(max_size=4)))
    return dict(
        user_id=user,
        exchange=draw(st.one_of(st.just(f"flow45.in.{TEAM_OF.get(user, 'reports')}"),
                                st.sampled_from(["flow45.in.reports", "flow45.in.rival", ""]))),
        message_id=draw(st.one_of(st.uuids().map(lambda u: u.hex), st.none(), st.just(""), st.text(max_size=200),
                                  st.binary(max_size=8))),
        reply_to=draw(reply_tos),
        correlation_id=draw(short_text),
        content_type=draw(st.one_of(st.none(), st.sampled_from(["text/plain", "APPLICATION/JSON"]), short_text)),
        headers=draw(st.one_of(st.none(), st.dictionaries(st.text(max_size=8), st.one_of(leaves, st.binary(max_size=4)),
                                                          max_size=3))),
    )


@st.composite
def proper_properties(draw) -> dict:
    """What a well-behaved client sends: then the body is what gets tested."""
    user = draw(st.sampled_from(USERS))
    return dict(
        user_id=user, exchange=f"flow45.in.{TEAM_OF[user]}", message_id=draw(st.uuids()).hex,
        reply_to=draw(st.sampled_from([None, "amq.rabbitmq.reply-to.g1h2AA.a1b2"])), correlation_id="c",
        content_type=draw(st.sampled_from([None, "application/json", "application/json; charset=utf-8"])),
        headers=None,
    )


@st.composite
def deliveries(draw, tag: int, instance: int, token: str):
    fields = draw(st.one_of(proper_properties(), proper_properties(), proper_properties(), hostile_properties()))
    method = pika.spec.Basic.Deliver(delivery_tag=tag, exchange=fields.pop("exchange"), routing_key="x")
    return delivery_from(method, pika.BasicProperties(**fields), draw(bodies(instance, token, fields["user_id"])))


@pytest.fixture
def offered(store_db, db_url):
    """Settings with two teams, and an instance of team reports open for claiming."""
    use_settings(Settings(database_url=db_url, teams=TEAMS))
    store.deploy(load_config(EXAMPLES), actor="ops")
    run = store.trigger("reports", "monthly_report", actor="ops")
    first = store.get_run(run).instances[0]
    return first.id, TaskInstance.get_by_id(first.id).token


def _holds_secret(value) -> bool:
    text = value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)
    return any(mark in text for mark in SECRET_MARKS)


def _is_direct(reply_to) -> bool:
    return isinstance(reply_to, str) and (reply_to == "amq.rabbitmq.reply-to" or reply_to.startswith("amq.rabbitmq.reply-to."))


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                  HealthCheck.too_slow, HealthCheck.data_too_large])
@given(data=st.data())
def test_every_delivery_is_answered_or_refused_and_nothing_raises(offered, data, caplog):
    instance, token = offered
    batch = [data.draw(deliveries(tag, instance, token)) for tag in range(1, data.draw(st.integers(1, 4)) + 1)]
    settings_ = Settings(teams=TEAMS)
    caplog.clear()
    applied = apply_batch(settings_, batch)
    assert len(applied.outcomes) == len(batch)
    planned_all = [answers.answer(settings_, d, o) for d, o in zip(batch, applied.outcomes)]
    # The bridge's safety nets log an error when they catch the unexpected: none may have fired.
    assert not [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    for delivery, outcome, planned in zip(batch, applied.outcomes, planned_all):
        refusal = outcome.refusal
        event(refusal.code if refusal else "ok")
        if refusal is not None:
            assert refusal.code in CODES, (refusal.code, refusal.message, delivery.body[:80])
        if not _is_direct(delivery.reply_to):
            assert planned.reply is None, "a reply is published only to direct reply-to"
            if delivery.reply_to:
                assert refusal is not None and refusal.code == "invalid_reply_to"
        else:
            assert planned.reply is not None and planned.reply.routing_key == delivery.reply_to
            answer = loads(planned.reply.body.decode())
            assert answer["ok"] is (refusal is None)
            planned.reply.properties.encode()  # pika can send it
        if refusal is None or refusal.routine:
            assert planned.dead_letter is None
            continue
        copy = planned.dead_letter
        team = TEAM_OF.get(delivery.user_id) if isinstance(delivery.user_id, str) else None
        came_through = names.team_of_exchange(delivery.exchange)
        team = team or (came_through if came_through in TEAMS else None)
        assert (copy.exchange, copy.routing_key) == ("", f"flow45.dead.{team}" if team else "flow45.dead")
        copy.properties.encode()
        assert copy.properties.headers["x-flow45-code"] == refusal.code
        shown = [copy.body, *copy.properties.headers.values(), copy.properties.message_id, copy.properties.correlation_id]
        assert not any(_holds_secret(v) for v in shown if v is not None), "a planted secret reached the dead letter"
