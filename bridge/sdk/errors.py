"""What a handler raises to steer its task, and what a transport raises when a request goes unanswered."""

from __future__ import annotations


class PermanentError(Exception):
    """Raise from a handler when trying again cannot help: the task fails without a retry."""


class SkipTask(Exception):
    """Raised by `task.skip(reason)`: the task is skipped, downstream tasks get null for its output."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class TaskCancelled(Exception):
    """Raised by `task.raise_if_cancelled()`: the attempt is no longer current (its token went stale)."""


class TransportError(Exception):
    """A request got no answer (timeout, lost connection): sending it again with the same message id is safe."""


class RequestTimeout(TransportError):
    """No reply within the timeout."""


class ConnectionLost(TransportError):
    """The connection closed before the reply came."""


class Unroutable(TransportError):
    """The broker could not route the request: the team's inbound exchange has no binding to the bridge."""


class InboxFull(TransportError):
    """The broker refused the request: the team's inbox is at its cap (the bridge is behind or
    stopped). It took no effect."""
