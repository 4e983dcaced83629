"""Every message published over pika in this process, checked against `flow45 schema` with the
independent `jsonschema` package (Draft 2020-12, formats checked), never with pydantic.

The `wire_log` fixture (autouse in tests/bridge and tests/sdk) records what the bridge, the SDK,
operators' RPCs and the tests' stand-ins publish: offers, undo notices, requests and replies. After
each test it checks them: offers and undo notices always; a request once its reply shows it was
well-formed (a reply `invalid_message` or `unauthorized` means the test sent garbage on purpose);
every reply against the reply schema of its request. Refused copies in flow45.dead are not checked.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any, get_args

import pika.channel
import pytest
from jsonschema import Draft202012Validator

from flow45 import names
from flow45 import messages as m
from flow45.schema import message_schema, schema_for

WORKER = {"claim": m.Claim, "progress": m.Progress, "submit": m.Submit, "fail": m.Fail, "skip": m.Skip, "park": m.Park}
CALLBACK = {"callback_submit": m.CallbackSubmit, "callback_fail": m.CallbackFail}
# Taken from the unions themselves, so that a message added to one is checked too (`note` was missed).
OPERATOR = {cls.model_fields["type"].annotation.__args__[0]: cls for cls in get_args(get_args(m.OperatorMessage)[0])}
READ = {cls.model_fields["type"].annotation.__args__[0]: cls for cls in get_args(get_args(m.OperatorRead)[0])}
ON_PURPOSE = {"invalid_message", "unauthorized"}  # the request itself was refused as malformed


@lru_cache(maxsize=1)
def _messages() -> dict:
    return message_schema()  # needs no store; functions are checked where a test has one


@lru_cache(maxsize=None)
def validator(name: str) -> Draft202012Validator:
    return Draft202012Validator(schema_for(_messages(), name), format_checker=Draft202012Validator.FORMAT_CHECKER)


@dataclass
class Published:
    exchange: str
    routing_key: str
    body: bytes
    properties: Any

    def json(self) -> Any:
        try:
            return json.loads(self.body)
        except (ValueError, RecursionError):  # hostile bodies on purpose: 10,000 levels deep
            return None


@dataclass
class WireLog:
    published: list[Published] = field(default_factory=list)
    checked: Counter = field(default_factory=Counter)  # schema name -> messages that passed
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def record(self, exchange: str, routing_key: str, body: Any, properties: Any) -> None:
        raw = body.encode() if isinstance(body, str) else bytes(body)
        with self._lock:
            self.published.append(Published(exchange, routing_key, raw, properties))

    def _expect(self, name: str, body: Any, what: str, problems: list[str]) -> None:
        errors = sorted(validator(name).iter_errors(body), key=lambda e: list(e.absolute_path))
        if errors:
            where = "/".join(str(p) for p in errors[0].absolute_path) or "(top)"
            problems.append(f"{what} is not a valid {name}: at {where}: {errors[0].message}\n  {str(body)[:300]}")
        else:
            self.checked[name] += 1

    def check(self) -> list[str]:
        """Check everything recorded so far; returns one line per message that does not match."""
        with self._lock:
            published, self.published = self.published, []
        problems: list[str] = []
        requests: dict[str, tuple[Published, Any]] = {}  # correlation id -> the latest request
        for message in published:
            props = message.properties
            if message.exchange == names.TASKS_EXCHANGE:
                undo = getattr(props, "type", None) == "undo" or message.routing_key.endswith(".undo")
                self._expect("UndoNotice" if undo else "Offer", message.json(), "an offer", problems)
            elif message.exchange == names.EVENTS_EXCHANGE:
                self._expect("EventPage", message.json(), "a page of the event stream", problems)
            elif message.exchange.startswith("flow45.in.") or message.exchange == names.READ_EXCHANGE:
                if getattr(props, "correlation_id", None):
                    requests[props.correlation_id] = (message, message.json())
            elif message.exchange == "" and message.routing_key.startswith("amq.rabbitmq.reply-to"):
                reply = message.json()
                request = requests.get(getattr(props, "correlation_id", None) or "")  # a resend is answered again
                self._check_exchange(request, reply, problems)
        return problems

    def _check_exchange(self, request: tuple[Published, Any] | None, reply: Any, problems: list[str]) -> None:
        if request is None:
            self._expect("Reply", reply, "a reply to nothing recorded", problems)
            return
        body = request[1]
        kind = body.get("type") if isinstance(body, dict) else None
        refused_as_malformed = isinstance(reply, dict) and reply.get("code") in ON_PURPOSE
        cls = None
        if request[0].exchange == names.READ_EXCHANGE:
            if kind in READ and validator("OperatorRead").is_valid(body):
                cls = READ[kind]
        elif kind in WORKER and validator("WorkerMessage").is_valid(body):
            cls = WORKER[kind]
        elif kind in CALLBACK and validator("CallbackMessage").is_valid(body):
            cls = CALLBACK[kind]
        elif kind in OPERATOR and validator("OperatorMessage").is_valid(body):
            cls = OPERATOR[kind]
        if cls is None:
            if not refused_as_malformed:
                problems.append(f"a {kind!r} request answered {str(reply)[:200]} matches no message schema:\n  {str(body)[:300]}")
            self._expect("Refused", reply, "the refusal of a malformed request", problems)
            return
        schema = ("WorkerMessage" if cls in WORKER.values() else "CallbackMessage" if cls in CALLBACK.values()
                  else "OperatorRead" if cls in READ.values() else "OperatorMessage")
        self._expect(schema, body, f"a {kind}", problems)
        self._expect(f"{cls.__name__}Reply", reply, f"the reply to a {kind}", problems)


@pytest.fixture(autouse=True)
def wire_log(monkeypatch):
    log = WireLog()
    publish = pika.channel.Channel.basic_publish

    def recording(self, exchange, routing_key, body, properties=None, mandatory=False):
        log.record(exchange, routing_key, body, properties)
        return publish(self, exchange, routing_key, body, properties, mandatory)

    monkeypatch.setattr(pika.channel.Channel, "basic_publish", recording)
    yield log
    problems = log.check()
    assert not problems, "messages on the wire that flow45 schema refuses:\n" + "\n".join(problems)
