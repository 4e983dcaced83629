"""The one interface both transports offer the worker: deliveries in, requests out.

A transport hands the worker `Delivery`s (offers and undo notices) for the functions it subscribed
to, at most `prefetch` unacknowledged per subscription, and answers `request(...)` with the
bridge's `Reply`. The worker logic above it never knows which transport it runs on.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Protocol

from flow45.messages import Reply

OFFER = "offer"
UNDO = "undo"


@dataclass(frozen=True)
class Subscription:
    """What a worker wants delivered."""

    functions: tuple[str, ...]  # offers of these functions
    undo_functions: tuple[str, ...] = ()  # undo notices of these functions
    prefetch: int = 1  # unacknowledged deliveries per subscribed queue


@dataclass
class Delivery:
    """One offer or undo notice; exactly one of `ack()` or `nack()` settles it."""

    kind: str  # offer | undo
    function: str
    body: bytes | dict  # raw AMQP body, or the outbox row's dict on the local transport
    redelivered: bool = False
    _settle: Callable[[bool, bool], None] | None = field(default=None, repr=False)
    _settled: bool = field(default=False, repr=False)

    def ack(self) -> None:
        self._finish(True, False)

    def nack(self, requeue: bool = True) -> None:
        self._finish(False, requeue)

    @property
    def settled(self) -> bool:
        return self._settled

    def _finish(self, ack: bool, requeue: bool) -> None:
        if self._settled:
            return
        self._settled = True
        if self._settle is not None:
            self._settle(ack, requeue)


class Transport(Protocol):
    """AmqpTransport and LocalTransport both look like this."""

    team: str
    worker_name: str

    def open(self, subscription: Subscription, deliver: Callable[[Delivery], None]) -> None:
        """Start delivering; `deliver` is called from the transport's own thread."""

    def request(self, message: dict[str, Any], message_id: str, timeout: float) -> Reply:
        """Send one worker message and wait for its Reply; raises TransportError when unanswered.
        Thread-safe. Sending the same `message_id` again is safe: it takes effect once."""

    def stop_consuming(self) -> None:
        """No more deliveries; unsettled ones may still be acked or nacked, requests still work."""

    def close(self) -> None:
        """Release everything; requests fail afterwards."""

    def thread_done(self) -> None:
        """The calling thread will not use the transport again (frees per-thread resources)."""
