"""One webhook post against receivers that misbehave: it is tried again, never the end of `notify`."""

from __future__ import annotations

import datetime as dt
import socket
import threading

from flow45.notify.hooks import Webhook
from flow45.notify.post import deliver
from flow45.outage import Backoff
from flow45.views import EventView

EVENT = EventView(id=7, at=dt.datetime(2026, 3, 1, 6), team="acme", run=1, instance=None, kind="run",
                  from_state="running", to_state="failed", actor="scheduler", detail=None, task=None)


def patient(seconds: float = 10.0) -> Backoff:
    """Retries close together, given up after `seconds` (deliver then returns False)."""
    stop = threading.Event()
    timer = threading.Timer(seconds, stop.set)
    timer.daemon = True
    timer.start()
    return Backoff(stop, first=0.01, cap=0.05)


def receiver(answers: list[bytes]) -> tuple[str, list[bytes]]:
    """A raw TCP receiver on loopback: each connection gets the next answer as is, then is closed."""
    server = socket.create_server(("127.0.0.1", 0))
    asked: list[bytes] = []

    def serve() -> None:
        for answer in answers:
            connection, _ = server.accept()
            with connection:
                asked.append(connection.recv(65536))
                connection.sendall(answer)
        server.close()

    threading.Thread(target=serve, daemon=True).start()
    return f"http://127.0.0.1:{server.getsockname()[1]}/hook", asked


def test_an_answer_that_is_not_http_is_tried_again_until_one_is(caplog):
    url, asked = receiver([b"garbage, not a status line\r\n\r\n", b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    hook = Webhook.model_validate({"url": url, "events": ["run_failed"]})
    assert deliver(hook, EVENT, ["run_failed"], "acme/job failed", patient())
    assert len(asked) == 2 and all(b"Idempotency-Key: flow45-event-7" in request for request in asked)
    assert "not an HTTP answer: BadStatusLine" in caplog.text


def test_a_body_without_end_is_not_waited_for():
    endless = b"HTTP/1.1 200 OK\r\nContent-Length: 1000000000\r\n\r\n" + b"x" * 200_000
    url, asked = receiver([endless])
    hook = Webhook.model_validate({"url": url, "events": ["run_failed"]})
    assert deliver(hook, EVENT, ["run_failed"], "acme/job failed", patient())
    assert len(asked) == 1


def test_a_redirect_is_not_followed_and_not_counted_as_delivered(caplog):
    """Followed, the POST would reach the new address as a GET without its body, answered 200: the
    event would count as posted while no receiver saw it. It is logged as refused, with where it points."""
    moved = b"HTTP/1.1 302 Found\r\nLocation: https://hooks.example.org/other/secret\r\nContent-Length: 0\r\n\r\n"
    url, asked = receiver([moved, b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"])
    hook = Webhook.model_validate({"url": url, "events": ["run_failed"]})
    assert deliver(hook, EVENT, ["run_failed"], "acme/job failed", patient())
    assert len(asked) == 1 and asked[0].startswith(b"POST /hook ")
    assert "redirect (HTTP 302 to https://hooks.example.org)" in caplog.text
    assert "secret" not in caplog.text
