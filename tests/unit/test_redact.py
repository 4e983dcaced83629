"""Dead-letter copies: secret-looking values are blanked wherever they are in the body, whether or
not the body is JSON Flow45 accepts; everything else is kept so the operator can see and replay it."""

from __future__ import annotations

import json

from flow45.redact import REDACTED, redact_body

PEM = "-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEAxyz\nabcdefgh\n-----END RSA PRIVATE KEY-----"
BEARER = "Bearer abcdefghijklmnopqrstuvwxyz0123"
SUBMIT = {"type": "submit", "instance": 41, "token": "fencing-token-1"}


def test_secret_values_anywhere_in_a_json_body_are_blanked_and_the_rest_kept():
    body = json.dumps({**SUBMIT, "output": {"uri": "s3://x", "key": PEM, "notes": [f"auth: {BEARER}"],
                                            "db": "postgresql://u:hunter2@db/x"}})
    copy, count = redact_body(body.encode())
    data = json.loads(copy)
    assert count == 3
    assert data["output"] == {"uri": "s3://x", "key": REDACTED, "notes": [REDACTED], "db": REDACTED}
    assert data["token"] == "fencing-token-1", "the attempt's fencing token is kept for a replay"
    assert "hunter2" not in copy.decode() and "MIIE" not in copy.decode() and "abcdefghijklmnop" not in copy.decode()


def test_values_under_secret_looking_names_are_blanked_at_any_depth():
    body = json.dumps({**SUBMIT, "error": "x", "output": {"password": "hunter2", "inner": {"api_key": "k-1", "token": "t"}}})
    data = json.loads(redact_body(body.encode())[0])
    assert data["output"] == {"password": REDACTED, "inner": {"api_key": REDACTED, "token": REDACTED}}


def test_a_secret_in_a_key_is_blanked_too():
    data = json.loads(redact_body(json.dumps({"type": "x", BEARER: 1}).encode())[0])
    assert all(BEARER not in key for key in data)


def test_a_body_that_is_not_acceptable_json_is_redacted_as_text():
    for body in (
        ('{"type": "submit", "output": {"key": "' + PEM.replace("\n", "\\n") + '", "n": NaN}}').encode(),
        ('{"password": "hunter2", "rows": ' + "9" * 5000 + "}").encode(),
        b"\xff\xfe not even UTF-8 " + BEARER.encode() + b" " + PEM.encode(),
    ):
        copy, count = redact_body(body)
        text = copy.decode("utf-8")
        assert count >= 1 and REDACTED in text
        for secret in ("MIIE", "hunter2", "abcdefghijklmnop"):
            assert secret not in text, (body[:40], text[:200])


def test_a_clean_body_is_kept_byte_for_byte():
    for body in (json.dumps({**SUBMIT, "output": {"uri": "s3://x", "rows": 3}}).encode(), b"{not json", b"\xff"):
        assert redact_body(body) == (body, 0)


def test_a_callback_key_is_blanked_and_a_runs_key_kept():
    """Whoever holds a callback key may complete its parked attempt: a refused callback message (an
    output its type refuses) leaves the attempt parked and the key working. A trigger's `key` names
    a run (an order number): nothing secret."""
    key = "9f" * 32
    for kind in ("callback_submit", "callback_fail"):
        body = json.dumps({"type": kind, "key": key, "output": {"rows": -1}, "error": "e"})
        copy, count = redact_body(body.encode())
        assert json.loads(copy)["key"] == REDACTED and count == 1
        spoiled = body.replace('"rows": -1', '"rows": NaN').encode()  # not JSON Flow45 accepts: redacted as text
        assert key not in redact_body(spoiled)[0].decode()
    trigger = json.dumps({"type": "trigger", "workflow": "w", "key": "order 2026-10/17"}).encode()
    assert redact_body(trigger) == (trigger, 0)
    for odd in (b'{"type": [], "key": "k"}', b'{"type": {}, "key": "k"}', b'[{"type": "callback_fail"}]'):
        assert redact_body(odd) == (odd, 0)
