"""Log links and tails on the wire: what a worker may send, and the words of each refusal."""

from __future__ import annotations

import pytest
from pydantic import TypeAdapter, ValidationError

from flow45 import messages as m
from flow45.settings import Settings, use_settings

PARSE = TypeAdapter(m.WorkerMessage)
BASE = {"instance": 7, "token": "t0k"}


@pytest.mark.parametrize("kind, fields", [
    ("progress", {"percent": 5, "log_url": "https://ci.example.org/jobs/7/log?from=120#end"}),
    ("fail", {"error": "boom", "log_url": "http://10.0.0.5:8080/logs/7", "log_tail": "line 1\r\n\tline 2\n"}),
    ("submit", {"output": {}, "log_tail": "déjà vu ✓\n" * 10}),
])
def test_accepted(kind, fields):
    message = PARSE.validate_python({"type": kind, **BASE, **fields})
    assert {k: getattr(message, k) for k in fields if k.startswith("log_")} == {
        k: v for k, v in fields.items() if k.startswith("log_")}


@pytest.mark.parametrize("field, value, words", [
    ("log_url", "ftp://files.example.org/log", "must be an http:// or https:// URL with a host"),
    ("log_url", "javascript:alert(1)", "must be an http:// or https:// URL with a host"),
    ("log_url", "https:///no-host", "must be an http:// or https:// URL with a host"),
    ("log_url", "https://ann:pw@logs.example.org/7", "carries a user name or password"),
    ("log_url", "https://logs.example.org/7?X-Amz-Security-Token=abc", "query parameter 'X-Amz-Security-Token' that looks like a secret"),
    ("log_url", "https://logs.example.org/a b", "has a space or control character (' ') at 26"),
    ("log_url", "https://logs.example.org/\x1b[2J", "has a space or control character ('\\x1b')"),
    ("log_url", "https://logs.example.org:99999/", "is not a URL"),
    ("log_url", "https://logs.example.org/" + "a" * 2048, "at most 2048 characters"),
    ("log_url", 17, "valid string"),
    ("log_tail", "ok\n\x1b]0;title\x07", "log_tail has a control character ('\\x1b') at 3"),
    ("log_tail", "€" * 1400, "log_tail is 4200 bytes, over 4096: send the last lines, or a log_url"),
    ("log_tail", "auth: Bearer abcdefghijklmnopqrstuvwxyz0123", "looks like a bearer token"),
])
def test_refused_with_words_naming_the_field(field, value, words):
    with pytest.raises(ValidationError) as caught:
        PARSE.validate_python({"type": "progress", **BASE, field: value})
    [error] = caught.value.errors()
    assert error["loc"] == ("progress", field) and words in error["msg"]


def test_a_tail_stays_within_a_smaller_output_cap():
    use_settings(Settings(output_max_bytes=1024))
    with pytest.raises(ValidationError, match="log_tail is 2000 bytes, over 1024"):
        PARSE.validate_python({"type": "fail", **BASE, "error": "x", "log_tail": "x" * 2000})
