"""The dead-letter copy of a refused message: a huge body leaves only its beginning, so that a team
sending huge bodies fills neither the broker's disk with copies nor the bridge's time with redacting."""

from __future__ import annotations

import json

from bridge.answers import KEPT_OF_OVERSIZE, dead_letter
from bridge.inbound import MAX_BODY, Delivery, Refusal
from flow45.settings import Settings

SETTINGS = Settings(teams={"rival": {"users": {"rival-worker": "worker"}}})
PEM = "-----BEGIN PRIVATE KEY-----\\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw\\n-----END PRIVATE KEY-----"


def _copy(body: bytes):
    delivery = Delivery(tag=1, exchange="flow45.in.rival", user_id="rival-worker", message_id="m1", reply_to=None,
                        correlation_id=None, body=body)
    return dead_letter(SETTINGS, delivery, Refusal("invalid_message", f"the body is {len(body)} bytes, over {MAX_BODY}"))


def test_a_body_over_the_limit_leaves_its_first_64_kib_and_its_size():
    body = b'{"type": "progress", "message": "' + b"x" * (5 * 2**20) + b'"}'
    copy = _copy(body)
    assert copy.routing_key == "flow45.dead.rival"
    assert copy.body == body[:KEPT_OF_OVERSIZE]
    assert copy.properties.headers["x-flow45-truncated"] == len(body)
    assert copy.properties.headers["x-flow45-redacted"] == 0


def test_a_secret_in_the_part_kept_is_redacted():
    body = f'{{"type": "fail", "error": "{PEM}", "pad": "'.encode() + b"y" * MAX_BODY + b'"}'
    copy = _copy(body)
    assert b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcw" not in copy.body
    assert copy.properties.headers["x-flow45-redacted"] >= 1
    assert len(copy.body) <= KEPT_OF_OVERSIZE


def test_a_body_within_the_limit_is_copied_whole():
    body = json.dumps({"type": "progress", "message": "z" * (MAX_BODY - 100)}).encode()
    assert len(body) <= MAX_BODY
    copy = _copy(body)
    assert copy.body == body
    assert "x-flow45-truncated" not in copy.properties.headers


def test_an_answer_over_the_message_cap_goes_as_an_error_that_fits(caplog):
    """Published as it is, the broker would close the bridge's channel (max_message_size), and the
    bridge would reconnect for every team."""
    from bridge.answers import encode_answer
    from flow45.settings import Settings, use_settings

    use_settings(Settings(max_message_bytes=64 * 1024))
    small = encode_answer({"ok": True, "result": {"inputs": {"a": "x" * 1000}}}, "m-1")
    assert json.loads(small)["ok"] is True
    body = encode_answer({"ok": True, "result": {"inputs": {"a": "x" * 70_000}}}, "m-2")
    assert len(body) < 1000 and json.loads(body) == {
        "ok": False, "code": "internal",
        "error": "the answer is 70040 bytes, over max_message_bytes (65536): what it carries is too large to send"}
    assert "the reply to 'm-2': the answer is 70040 bytes" in caplog.text
