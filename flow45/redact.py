"""Copies of refused messages with secret-looking values blanked, for the dead-letter queues.

The same detector that refuses secrets in outputs (`flow45.outputs`), applied to the whole body:
a value under a secret-looking name (except a message's own fencing `token`, which its team already
reads in every offer), a callback message's `key`, and any string that looks like a private key, a bearer token, a JSON web
token, an API key or a URL with a password. A body that is not acceptable JSON is redacted as text.
"""

from __future__ import annotations

import json
import re
from typing import Any

from flow45.config import SECRET_NAME
from flow45.outputs import SECRET_VALUES
from flow45.strictjson import JSONRefused, loads

REDACTED = "[redacted]"
_PEM_BLOCK = re.compile(r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(?:-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.S)
# A `"name": value` pair in text that is not JSON we can parse: a string, or a scalar up to , [ ] { }
# (an object or array value is left to the pairs inside it).
_PAIR = re.compile(r'"(?P<key>[^"\\]{1,100})"\s*:\s*(?P<value>"(?:[^"\\]|\\.)*"?|[^\s,\[\]{}]+)', re.S)
_KEPT_TOP_LEVEL = {"token"}  # the attempt's fencing token: needed to replay the message
# A callback key completes its parked attempt for whoever holds it; elsewhere `key` names a run.
_CALLBACK_TYPES = {"callback_submit", "callback_fail"}
_CALLBACK_IN_TEXT = re.compile(r'"type"\s*:\s*"callback_(submit|fail)"')


def _secret_string(text: str) -> bool:
    return any(pattern.search(text) for pattern, _ in SECRET_VALUES)


class _Redactor:
    def __init__(self, callback: bool = False) -> None:
        self.count = 0
        self.secret_top_level = {"key"} if callback else set()  # `key`: a callback message's key

    def blank(self) -> str:
        self.count += 1
        return REDACTED

    def value(self, value: Any, top: bool = False) -> Any:
        # Recursion is safe here: the parser refused anything nested deeper than MAX_DEPTH.
        if isinstance(value, dict):
            out = {}
            for key, item in value.items():
                name = self.blank() + f" {self.count}" if _secret_string(key) else key
                secret_name = (SECRET_NAME.search(key) and not (top and key in _KEPT_TOP_LEVEL)
                               or top and key in self.secret_top_level)
                out[name] = self.blank() if secret_name and item not in (None, "", False) else self.value(item)
            return out
        if isinstance(value, list):
            return [self.value(item) for item in value]
        if isinstance(value, str) and _secret_string(value):
            return self.blank()
        return value

    def text(self, text: str) -> str:
        def pair(match: re.Match) -> str:
            secret = (SECRET_NAME.search(match["key"]) and match["key"] not in _KEPT_TOP_LEVEL
                      or match["key"] in self.secret_top_level)
            if not secret:
                return match.group()
            return match.group()[: match.start("value") - match.start()] + json.dumps(self.blank())

        text = _PEM_BLOCK.sub(lambda _m: self.blank(), text)
        for pattern, _ in SECRET_VALUES:
            text = pattern.sub(lambda _m: self.blank(), text)
        return _PAIR.sub(pair, text)


def redact_text(text: str) -> tuple[str, int]:
    """Free text (a refusal's reason, a property) with secret-looking values replaced."""
    redactor = _Redactor()
    return redactor.text(text), redactor.count


def redact_body(body: bytes) -> tuple[bytes, int]:
    """The body with secret-looking values replaced by `[redacted]`, and how many were replaced."""
    text = body.decode("utf-8", errors="replace")
    try:
        data = loads(text)
    except JSONRefused:
        redactor = _Redactor(callback=bool(_CALLBACK_IN_TEXT.search(text)))
        redacted = redactor.text(text)
        return (body, 0) if not redactor.count else (redacted.encode("utf-8"), redactor.count)
    kind = data.get("type") if isinstance(data, dict) else None
    redactor = _Redactor(callback=isinstance(kind, str) and kind in _CALLBACK_TYPES)
    clean = redactor.value(data, top=True)
    if not redactor.count:
        return body, 0
    return json.dumps(clean, ensure_ascii=False).encode("utf-8"), redactor.count
