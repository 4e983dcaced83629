"""What a handler gets first: the claimed attempt, with progress, skip and cancellation."""

from __future__ import annotations

import datetime as dt
import re
import threading
from typing import Any, Callable, NoReturn

from bridge.sdk.errors import SkipTask, TaskCancelled
from flow45.checkpoints import checkpoint_problem
from flow45.logs import LOG_TAIL_MAX, tail_problem, url_problem
from flow45.messages import Offer

MAX_TEXT = 2000


class Task:
    """One claimed attempt of a task instance.

    `cancelled` is an Event, set when Flow45 answers that this attempt is no longer current (its lease
    expired, or it was retried or undone): whatever the handler does next will be refused, so a long
    handler should look at it between steps (or call `raise_if_cancelled()`)."""

    def __init__(self, offer: Offer, grant: dict[str, Any], worker: str, send_progress: Callable[..., bool],
                 send_park: Callable[..., str] | None = None):
        self.offer = offer
        self.instance: int = offer.instance
        self.run: int = offer.run
        self.team: str = offer.team
        self.workflow: str = offer.workflow
        self.version: int = offer.version
        self.name: str = offer.task  # the task's name in its workflow
        self.function: str = offer.function
        self.attempt: int = grant.get("attempt", offer.attempt)
        self.token: str = grant.get("token") or offer.token
        inputs = grant.get("inputs")
        self.inputs: dict[str, Any] = inputs if inputs is not None else dict(offer.inputs)
        params = grant.get("params")
        self.params: dict[str, Any] = params if params is not None else dict(offer.params)
        self.lease_seconds: float = offer.lease_seconds
        # The schedule tick the run works for (which night, which month), in UTC; None if it has none.
        self.logical_time: dt.datetime | None = _parse_time(offer.logical_time)
        self.lease_expires_at: dt.datetime | None = _parse_time(grant.get("lease_expires_at"))
        # When the task's `timeout` ends this attempt, whatever its progress (None: it has none); a
        # handler that will not finish by then can stop early: its submit would be refused as stale.
        self.timeout_at: dt.datetime | None = _parse_time(grant.get("timeout_at"))
        # Where the work got to: the last checkpoint an earlier attempt of this instance sent (a retry,
        # or after its lease expired), then the last one this handler sent; None to start from the top.
        self.checkpoint: Any = grant.get("checkpoint")
        self.worker = worker
        self.cancelled = threading.Event()
        self.callback_key: str | None = None  # set by park()
        self.log_url: str | None = None  # set by log(); sent with the submit or fail
        self.log_tail: str | None = None
        self.log_unsent = False  # log() since the last progress the bridge accepted
        self._send_progress = send_progress
        self._send_park = send_park

    def log(self, url: str | None = None, tail: str | None = None) -> None:
        """Say where this attempt's log is (an http(s) URL without credentials) and/or give its last
        lines; Flow45 keeps them with the attempt and shows them to the team's operators. Sent with the
        next progress and with the submit or fail. A tail is cut to its last 4 KiB and loses its
        terminal colour codes; raises ValueError for what Flow45 would refuse (another control
        character, a secret-looking value, a URL with a password)."""
        if url is not None:
            if problem := url_problem(url):
                raise ValueError(f"log_url {problem}")
            self.log_url = url
        if tail is not None:
            tail = _last_bytes(_COLOURS.sub("", str(tail)), LOG_TAIL_MAX)
            if problem := tail_problem(tail):
                raise ValueError(f"log_tail {problem}")
            self.log_tail = tail
        self.log_unsent = self.log_unsent or url is not None or tail is not None

    def progress(self, percent: float | None = None, message: str | None = None, *, log_url: str | None = None,
                 log_tail: str | None = None, checkpoint: Any = None) -> bool:
        """Report progress (0-100 and/or a line of text); it also renews the lease. `log_url` and
        `log_tail`: as `log()`. `checkpoint`: where the work got to, any small JSON value (at most 4 KiB,
        no secrets; ValueError otherwise); the instance's next attempt gets it as `task.checkpoint` if
        this one does not finish. Returns False, and sets `cancelled`, when the attempt is no longer current."""
        if self.cancelled.is_set():
            return False
        if checkpoint is not None and (problem := checkpoint_problem(checkpoint)):
            raise ValueError(f"checkpoint {problem}")
        self.log(log_url, log_tail)
        if percent is not None:
            percent = max(0.0, min(100.0, float(percent)))
        if message is not None:
            message = plain_text(message)
        if checkpoint is None:
            return self._send_progress(self, percent, message)
        self.checkpoint = checkpoint
        return self._send_progress(self, percent, message, checkpoint=checkpoint)

    def park(self, deadline_seconds: float | None = None) -> str:
        """Park this attempt and return its callback key (a secret): hand the key to the service
        that will finish the work, then return from the handler; what it returns is not sent. Whoever
        holds the key completes the attempt with its output (`callback_submit` through the broker,
        `flow45 callback complete KEY`) or fails it. Past `deadline_seconds` (none: no deadline) it
        fails as an expired lease does. Raises TaskCancelled if the attempt is no longer current."""
        if self._send_park is None:
            raise RuntimeError("this task cannot be parked: it was not made by a Worker")
        if self.callback_key is None:
            self.callback_key = self._send_park(self, deadline_seconds)
        return self.callback_key

    def skip(self, reason: str) -> NoReturn:
        """Nothing to do for this instance: it ends as skipped and downstream tasks get null for it."""
        raise SkipTask(plain_text(reason))

    def raise_if_cancelled(self) -> None:
        if self.cancelled.is_set():
            raise TaskCancelled(f"task instance {self.instance} attempt {self.attempt} is no longer current")

    def __repr__(self) -> str:
        return f"<Task {self.function} instance={self.instance} attempt={self.attempt} run={self.run}>"


def plain_text(value: object) -> str:
    """`value` as text Flow45 can store, within MAX_TEXT: U+0000 and lone surrogates (the undecodable
    bytes of a file name, say), which the bridge refuses, written as escapes."""
    text = str(value).replace("\x00", "\\x00")
    return text.encode("utf-8", "backslashreplace").decode("utf-8")[:MAX_TEXT]


_COLOURS = re.compile(r"\x1b\[[0-9;]*m")  # terminal colour codes, common in logs


def _last_bytes(text: str, limit: int) -> str:
    """The end of `text` within `limit` bytes of UTF-8, from a line start when one is near."""
    data = text.encode("utf-8")
    if len(data) <= limit:
        return text
    kept = data[-limit:].decode("utf-8", errors="ignore")
    newline = kept.find("\n")
    return kept[newline + 1:] if 0 <= newline < 200 else kept


def _parse_time(value: Any) -> dt.datetime | None:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        return dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    return None
