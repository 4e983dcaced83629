"""The prune's export: JSON lines appended a transaction's worth at a time, each batch on the disk
before the rows it copies are removed.

A batch that cannot be written whole (a full disk, a quota) is taken back: the file is cut to its
size before the batch, so it holds whole lines of exactly the runs removed, and the transaction
that would have removed them is rolled back."""

from __future__ import annotations

import os
from pathlib import Path

from flow45.errors import Flow45Error


class ExportFailed(Flow45Error):
    """The export could not be written: the runs of that batch were not removed."""

    report = None  # the prune's report of what it removed before (flow45.store.prune sets it)


class ExportFile:
    """A new file (never one written before), appended to with `append`."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)  # FileExistsError: name a new one
        self.size = 0  # bytes on the disk, whole lines only

    def append(self, lines: list[str]) -> None:
        data = memoryview("".join(line + "\n" for line in lines).encode())
        try:
            while data:
                data = data[os.write(self._fd, data):]
            os.fsync(self._fd)
        except OSError as exc:
            self._take_back()
            raise ExportFailed(f"{self.path}: cannot write: {exc.strerror or exc}") from None
        self.size = os.lseek(self._fd, 0, os.SEEK_CUR)

    def _take_back(self) -> None:
        try:
            os.ftruncate(self._fd, self.size)
            os.lseek(self._fd, self.size, os.SEEK_SET)
            os.fsync(self._fd)
        except OSError:  # the disk refuses even that: the last line may be cut short
            pass

    def close(self) -> None:
        os.close(self._fd)

    def __enter__(self) -> ExportFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
