"""The wire checker of tests/wirecheck.py finds what does not match `flow45 schema`."""

from __future__ import annotations

import json

from pika import BasicProperties

from tests.wirecheck import WireLog

OFFER = {"instance": 1, "run": 1, "team": "t", "workflow": "w", "version": 1, "task": "a", "function": "f",
         "attempt": 1, "token": "tok", "inputs": {"x": None}, "params": {}, "lease_seconds": 60.0, "human": False,
         "priority": 0}
CLAIM = {"type": "claim", "instance": 1, "token": "tok", "worker": "w"}
GRANT = {"ok": True, "result": {"instance": 1, "state": "running", "attempt": 1, "token": "tok",
                                "lease_expires_at": "2026-03-01T12:05:00Z", "inputs": {}, "params": {},
                                "duplicate": False}}


def exchange(request: dict | bytes, reply: dict) -> list[str]:
    log = WireLog()
    body = request if isinstance(request, bytes) else json.dumps(request).encode()
    log.record("flow45.in.t", "claim", body, BasicProperties(correlation_id="c", reply_to="amq.rabbitmq.reply-to"))
    log.record("", "amq.rabbitmq.reply-to.g1", json.dumps(reply).encode(), BasicProperties(correlation_id="c"))
    return log.check()


def test_a_good_exchange_passes_and_is_counted():
    log = WireLog()
    log.record("flow45.tasks", "t.f", json.dumps(OFFER), BasicProperties(type="offer"))
    assert log.check() == [] and log.checked["Offer"] == 1
    assert exchange(CLAIM, GRANT) == []


def test_what_does_not_match_is_named():
    log = WireLog()
    log.record("flow45.tasks", "t.f", json.dumps({**OFFER, "lease_seconds": "60"}), BasicProperties(type="offer"))
    assert "is not a valid Offer: at lease_seconds" in log.check()[0]
    naive = {**GRANT, "result": {**GRANT["result"], "lease_expires_at": "2026-03-01T12:05:00"}}
    assert "is not a valid ClaimReply" in exchange(CLAIM, naive)[0]
    assert "matches no message schema" in exchange({**CLAIM, "instance": "1"}, {"ok": False, "code": "stale", "error": "x"})[0]


def test_garbage_refused_as_malformed_is_not_held_against_the_schema():
    assert exchange(b"{not json", {"ok": False, "code": "invalid_message", "error": "not JSON"}) == []
    assert "the refusal of a malformed request" in exchange(b"{", {"ok": False, "code": "invalid_message"})[0]
