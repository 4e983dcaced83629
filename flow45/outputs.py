"""Checks on a submitted output: size cap, declared type (unknown keys refused), no secrets."""

from __future__ import annotations

import json
import re
from typing import Any

from pydantic import ValidationError

from flow45.config import SECRET_NAME
from flow45.errors import InvalidOutput
from flow45.types import TypeRegistry, describe_errors

SECRET_VALUES = [
    (re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"), "a private key"),
    (re.compile(r"\bBearer\s+[A-Za-z0-9\-._~+/]{16,}=*", re.I), "a bearer token"),
    (re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}"), "a JSON web token"),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), "an AWS access key"),
    (re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{20,}|github_pat_\w{20,}|xox[abprs]-[A-Za-z0-9-]{10,}|sk_live_\w{10,}"
                r"|sk-[A-Za-z0-9]{20,})"), "an API key"),
    (re.compile(r"://[^/\s:@]+:[^/\s@]+@"), "a URL with a password"),
    # a query string's, a DSN's or a command line's: ?api_key=..., "host=db password=...", --token=...
    (re.compile(r"(?<![^?&#;\s-])(?:pass(?:word|wd)?|pwd|secret|client_secret|(?:access_|auth_|refresh_)?token"
                r"|api_?key|access_key|private_key)=[^\s&;,'\"]+", re.I), "a secret given as name=value"),
]


def find_secret(value: Any, path: str = "output") -> str | None:
    """Where `value` seems to hold a secret, and why; None if it looks clean."""
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}"
            if SECRET_NAME.search(str(key)) and item not in (None, "", False):
                return f"{where}: the field name looks like a secret"
            if found := find_secret(item, where):
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            if found := find_secret(item, f"{path}.{index}"):
                return found
    elif isinstance(value, str):
        for pattern, what in SECRET_VALUES:
            if pattern.search(value):
                return f"{path}: the value looks like {what}"
    return None


def json_size(value: Any) -> int:
    """Bytes of `value` as compact JSON, as the caps count them; TypeError or ValueError if not JSON."""
    return len(json.dumps(value, separators=(",", ":")).encode())


def check_output(types: TypeRegistry, type_name: str, output: Any, max_bytes: int, what: str) -> Any:
    """The output as it will be stored; raises InvalidOutput naming the problem."""
    try:
        size = json_size(output)
    except (TypeError, ValueError) as exc:
        raise InvalidOutput(f"{what}: output is not JSON: {exc}") from exc
    if size > max_bytes:
        raise InvalidOutput(
            f"{what}: output is {size} bytes of JSON, over the cap of {max_bytes}: outputs describe where the "
            "data went, never the data itself"
        )
    if secret := find_secret(output):
        raise InvalidOutput(f"{what}: refused, {secret}; outputs never carry secrets")
    try:
        return types.validate(type_name, output)
    except ValidationError as exc:
        raise InvalidOutput(f"{what}: output is not a valid {type_name}: {describe_errors(exc, 'output')}") from exc
