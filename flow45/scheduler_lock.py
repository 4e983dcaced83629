"""The single-scheduler lock. The database's dialect picks one (`scheduler_lock`): on PostgreSQL a
session advisory lock (`flow45.dialect.postgres_locks`), on SQLite the lease row below."""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import logging
from typing import Protocol

from flow45.clock import iso, to_utc
from flow45.db import atomic
from flow45.models import SchedulerLock

log = logging.getLogger("flow45.scheduler")


class SchedulerLockHolder(Protocol):
    held: bool

    def hold(self, now: dt.datetime, wait: float = 0.0) -> bool: ...
    def holder(self) -> str | None: ...
    def release(self) -> None: ...
    def close(self) -> None: ...


LOCK_KEY = int.from_bytes(hashlib.blake2b(b"flow45.scheduler", digest_size=8).digest(), "big", signed=True)


class LeaseLock:
    """SQLite: a row naming the holder and when its lease expires, renewed at each tick. Another
    scheduler takes over once the lease has expired without renewal."""

    NAME = "scheduler"

    def __init__(self, holder: str, ttl: float):
        self.holder_id = holder
        self.ttl = dt.timedelta(seconds=ttl)
        self.held = False
        self.other: str | None = None

    def hold(self, now: dt.datetime, wait: float = 0.0) -> bool:
        at = to_utc(now)
        with atomic():
            row = SchedulerLock.get_or_none(SchedulerLock.name == self.NAME)
            if row is None:
                SchedulerLock.create(name=self.NAME, holder=self.holder_id, acquired_at=at, expires_at=at + self.ttl)
                held = True
            elif row.holder == self.holder_id or row.expires_at <= at:
                changes = {"holder": self.holder_id, "expires_at": at + self.ttl}
                if row.holder != self.holder_id:
                    changes["acquired_at"] = at
                SchedulerLock.update(**changes).where(SchedulerLock.name == self.NAME).execute()
                held = True
            else:
                held = False
                self.other = f"{row.holder} until {iso(row.expires_at)}"
        if self.held and not held:
            log.error("scheduler lock lost: %s took over after our lease expired", self.other)
        self.held = held
        return held

    def holder(self) -> str | None:
        return self.other

    def release(self) -> None:
        if self.held:
            with contextlib.suppress(Exception), atomic():
                SchedulerLock.delete().where(
                    (SchedulerLock.name == self.NAME) & (SchedulerLock.holder == self.holder_id)
                ).execute()
        self.held = False

    def close(self) -> None:
        self.held = False
