"""One webhook post, retried with capped backoff until the receiver takes it (2xx). A refusal that
repeating cannot change (4xx other than 408 and 429) is logged and given up, so one bad hook does
not stop the others for ever. So is a redirect (3xx): followed, a POST would arrive elsewhere as a
GET without its body, and count as delivered. Every copy of a post carries the same `Idempotency-Key`."""

from __future__ import annotations

import http.client
import json
import logging
import urllib.error
import urllib.parse
import urllib.request

from flow45.metrics import NOTIFY_POSTS
from flow45.notify.events import slack_escaped
from flow45.notify.hooks import Webhook, receiver
from flow45.outage import Backoff
from flow45.views import EventView

log = logging.getLogger("flow45.notify")
TIMEOUT = 10.0
ANSWER_READ = 65536  # bytes of an answer's body read, at most
RETRYABLE_4XX = (408, 429)


class _NoRedirects(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, req, fp, code, msg, headers, newurl):
        return None  # the 3xx comes back as an HTTPError


_OPENER = urllib.request.build_opener(_NoRedirects)


def idempotency_key(event: EventView) -> str:
    """The same for every copy of this event's post (ledger ids are unique in an installation)."""
    return f"flow45-event-{event.id}"


def body(hook: Webhook, event: EventView, kinds: list[str], text: str) -> bytes:
    if hook.format == "slack":
        payload = {"text": slack_escaped(text)}
    else:
        payload = {"text": text, "notify": kinds, "event": event.to_json()}
    return json.dumps(payload, separators=(",", ":")).encode()


def deliver(hook: Webhook, event: EventView, kinds: list[str], text: str, backoff: Backoff) -> bool:
    """Post until taken or refused for good (True), or until stopped (False: the caller keeps its place)."""
    request = urllib.request.Request(hook.url, data=body(hook, event, kinds, text), method="POST", headers={
        "Content-Type": "application/json", "Idempotency-Key": idempotency_key(event),
        "X-Flow45-Event": str(event.id), "X-Flow45-Notify": ",".join(kinds), "User-Agent": "flow45-notify",
    })
    backoff.reset()
    while not backoff.stop.is_set():
        try:
            with _OPENER.open(request, timeout=TIMEOUT) as answer:
                answer.read(ANSWER_READ)  # its status is the answer: a body without end is not waited for
            NOTIFY_POSTS.labels("sent").inc()
            return True
        except urllib.error.HTTPError as exc:
            if 300 <= exc.code < 400:
                where = exc.headers.get("Location") if exc.headers is not None else None
                log.error("%s answered event %s with a redirect (HTTP %s%s); webhooks are not followed: set the "
                          "hook's url to the receiver itself. Not posting it again", _host(hook), event.id, exc.code,
                          f" to {receiver(urllib.parse.urljoin(hook.url, where))}" if where else "")
                NOTIFY_POSTS.labels("failed").inc()
                return True
            if 400 <= exc.code < 500 and exc.code not in RETRYABLE_4XX:
                log.error("%s refused event %s with HTTP %s; not posting it again", _host(hook), event.id, exc.code)
                NOTIFY_POSTS.labels("failed").inc()
                return True
            why = f"HTTP {exc.code}"
        except (urllib.error.URLError, OSError) as exc:
            why = str(getattr(exc, "reason", exc))
        except http.client.HTTPException as exc:  # what answered does not speak HTTP (or stopped mid-answer)
            why = f"not an HTTP answer: {type(exc).__name__}: {str(exc)[:80]}"
        delay = backoff.delay
        NOTIFY_POSTS.labels("retried").inc()
        log.warning("posting event %s to %s failed (%s); again in %.1fs", event.id, _host(hook), why, delay)
        if not backoff.wait():
            break
    return False


def _host(hook: Webhook) -> str:
    return receiver(hook.url)
