"""A write whose transaction is held open: its ledger ids are taken before others' and committed after
them, as a slow writer's are."""

from __future__ import annotations

import threading
from typing import Any, Callable

from flow45.db import atomic


class HeldOpen:
    """`with HeldOpen(write) as slow:` runs `write()` in a transaction on a thread of its own and keeps it
    open until `slow.commit()`, or the block's end; `slow.result` is what `write()` returned."""

    def __init__(self, write: Callable[[], Any]):
        self._opened, self._commit, self._result = threading.Event(), threading.Event(), []
        self._thread = threading.Thread(target=self._hold, args=(write,), daemon=True)

    def _hold(self, write: Callable[[], Any]) -> None:
        with atomic():
            self._result.append(write())
            self._opened.set()
            self._commit.wait(30)

    def __enter__(self) -> HeldOpen:
        self._thread.start()
        assert self._opened.wait(10), "the held write did not happen"
        return self

    @property
    def result(self) -> Any:
        return self._result[0]

    def commit(self) -> None:
        self._commit.set()
        self._thread.join(10)

    def __exit__(self, *exc_info) -> None:
        self.commit()
