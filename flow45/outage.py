"""Riding out outages and stopping cleanly: capped backoff that a stop request interrupts, telling a
server that is away (retry) from a setting that can never work (give up, so a supervisor sees the
failure), and the SIGTERM/SIGINT handling every long-running process shares."""

from __future__ import annotations

import contextlib
import logging
import queue
import signal
import threading
import time
from typing import Callable, Iterator

from flow45.errors import Flow45Error

# A refused login or a missing database/vhost does not heal by waiting; seen this many times in a
# row (not once: a server coming up may refuse briefly), the process gives up.
GIVE_UP_AFTER = 3
_PERMANENT_DB = ("password authentication failed", "does not exist", "no pg_hba.conf entry",
                 "authentication failed", "permission denied for database", "unable to open database file")


class CannotWork(Flow45Error):
    """A part of a service cannot do its job and will not by retrying: the process exits non-zero."""

    code = "cannot_work"


def permanent_reason(exc: BaseException | None) -> str | None:
    """Why `exc` will not go away by retrying, or None if it may (a restart, a lost connection)."""
    if exc is None:
        return None
    exc = _root_cause(exc)
    kind = type(exc).__name__
    text = " ".join(str(exc).split())
    if kind in ("ProbableAuthenticationError", "AuthenticationError", "ProbableAccessDeniedError"):
        return f"the broker refused the login ({text or kind})"
    if kind == "ConnectionClosedByBroker" and getattr(exc, "reply_code", None) in (403, 530) \
            and "is down" not in text:
        return f"the broker refused the connection ({text})"
    if kind in ("OperationalError", "InterfaceError") and any(p in text for p in _PERMANENT_DB):
        return text
    return None


def _root_cause(exc: BaseException) -> BaseException:
    """The failure a client library wrapped (pika wraps a refused login in its connection workflow)."""
    for _ in range(10):
        inner = getattr(exc, "exceptions", None) or [getattr(exc, "exception", None)]
        if not isinstance(inner[-1], BaseException) and type(exc).__name__ == "AMQPConnectionError" and exc.args:
            inner = [exc.args[0]]
        if not isinstance(inner[-1], BaseException):
            return exc
        exc = inner[-1]
    return exc


class Backoff:
    """Capped exponential delays between attempts; `wait` returns early when `stop` is set and calls
    `beat` about once a second meanwhile (the process is alive, only waiting)."""

    def __init__(self, stop: threading.Event | None = None, first: float = 0.5, cap: float = 10.0,
                 beat: Callable[[], None] | None = None):
        self.stop = stop or threading.Event()
        self.first = first
        self.cap = max(first, cap)
        self.delay = first
        self.beat = beat
        self._permanent: list[str] = []

    def reset(self) -> None:
        self.delay = self.first
        self._permanent = []

    def failed(self, exc: BaseException | None, what: str,
               describe: Callable[[BaseException], str | None] | None = None) -> None:
        """Count a failure; raise CannotWork once a permanent one has repeated GIVE_UP_AFTER times,
        told by `describe` (one line naming the server) when it knows the failure."""
        reason = permanent_reason(exc)
        self._permanent = self._permanent + [reason] if reason else []
        if len(self._permanent) >= GIVE_UP_AFTER:
            raise CannotWork(f"{what}: {(describe and describe(exc)) or reason}")

    def next_delay(self) -> float:
        """The delay to wait now (for a caller that waits its own way); the next one is doubled, up to the cap."""
        delay = self.delay
        self.delay = min(self.delay * 2, self.cap)
        return delay

    def wait(self) -> bool:
        """Sleep the current delay (then double it, up to the cap); False if stopped meanwhile."""
        deadline = time.monotonic() + self.next_delay()
        while not self.stop.is_set():
            left = deadline - time.monotonic()
            if left <= 0:
                return True
            if self.beat is not None:
                self.beat()
            self.stop.wait(min(left, 1.0))
        return False


STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


@contextlib.contextmanager
def on_stop_signals(handler: Callable[[int], None]) -> Iterator[None]:
    """While inside, SIGTERM and SIGINT call `handler(signum)`; the previous handlers are back after.
    Only the main thread can take signals: on another thread this does nothing.

    The handler runs on a thread of its own, not in the signal's context: a signal can land while
    the main thread is inside a log line's write or holds a lock, and a handler that logs or locks
    there fails ("reentrant call") or waits forever, and the stop is lost. Leaving the block runs
    the handlers of signals already received."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: queue.SimpleQueue = queue.SimpleQueue()  # its put() is safe in a signal's context

    def dispatch() -> None:
        while (signum := received.get()) is not None:
            try:
                handler(signum)
            except Exception:  # noqa: BLE001 - the next signal must still be handled
                logging.getLogger("flow45").exception("handling %s failed", signal.Signals(signum).name)

    dispatcher = threading.Thread(target=dispatch, name="flow45-signals", daemon=True)
    dispatcher.start()
    previous = {sig: signal.signal(sig, lambda signum, _frame: received.put(signum)) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)
        received.put(None)
        dispatcher.join()
