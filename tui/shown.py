"""The dashboard's client: what it reads comes back with control characters as escapes
(`flow45.shown`). Textual draws a string's characters as they are, so a worker's progress message
holding ESC [2J cleared the operator's screen, and a worker's name retitled the terminal. Every
screen reads through `app.client`: wrapped here, once, nothing it shows can skip it."""

from __future__ import annotations

from typing import Any, Callable

from flow45.client import Client
from flow45.shown import visible_all


class ShownClient:
    """The operator's client, its answers filtered; what is sent to it goes as it is."""

    def __init__(self, client: Client) -> None:
        self._client = client

    def subscribe(self, wake: Callable[[], None], deliver: Callable[[Any], None],
                  settle: Callable[[int], None] | None = None):
        """The event stream's events pass through the same filter as what is read."""
        return self._client.subscribe(wake, lambda event: deliver(visible_all(event)), settle)

    def __getattr__(self, name: str) -> Any:
        found = getattr(self._client, name)
        if not callable(found):
            return visible_all(found)

        def call(*args: Any, **kwargs: Any) -> Any:  # a read, or an action whose answer is shown
            return visible_all(found(*args, **kwargs))
        return call
