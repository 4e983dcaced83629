"""A part of the bridge that runs on a thread of its own, with its own broker and database
connections (operators' reads, the team event streams): it serves until stopped, and after any
failure starts again with capped backoff, so neither ever holds up the workers' inbox.

Each beats the process's heartbeat as its own part (`bridge.reads`, `bridge.events`) at every turn
of its loop, and with the reason while it waits to start again, so `flow45 health` tells a stuck or
failing side thread as it tells a stuck main loop."""

from __future__ import annotations

import logging
import threading

from pika.exceptions import AMQPError

from bridge.failures import describe_amqp_error, open_blocking
from flow45.db import database, describe_db_error, drop_connection
from flow45.errors import Flow45Error
from flow45.outage import Backoff
from flow45.settings import Settings

log = logging.getLogger("flow45.bridge")


class SideThread:
    """Subclasses name themselves (`part`, for the log) and serve in `_serve`, setting `ready`
    while they are connected and returning or raising when they stop serving."""

    part = "side thread"

    def __init__(self, settings: Settings, heartbeat=None) -> None:
        self.settings = settings
        self.heartbeat = heartbeat  # a flow45.heartbeat.Heartbeat, or None
        self.ready = threading.Event()
        self._stop = threading.Event()
        self._error: str | None = None  # why the last attempt to serve failed
        self._waits_on = None  # the BlockingConnection whose process_data_events `_serve` waits in: stop() wakes it

    def beat(self) -> None:
        """One turn of the loop done (cheap: the heartbeat writes at most once a second)."""
        if self.heartbeat is not None:
            self.heartbeat.beat(f"bridge.{self.part}", None if self.ready.is_set() else self._error)

    def stop(self) -> None:
        """From any thread: the part stops now, not when its wait for the broker times out."""
        self._stop.set()
        connection = self._waits_on
        if connection is not None:
            try:
                connection.add_callback_threadsafe(_nothing)  # returns from process_data_events
            except AMQPError:  # closed meanwhile: nothing waits on it
                pass

    def _open_connection(self):
        """The broker connection `_serve` waits on, which stop() wakes; give it to `_close_connection`."""
        self._waits_on = open_blocking(self.settings.amqp_url)
        return self._waits_on

    def _close_connection(self, connection) -> None:
        self._waits_on = None
        if connection.is_open:
            connection.close()

    def _serve(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        backoff = Backoff(self._stop, cap=self.settings.reconnect_max, beat=self.beat)
        self.beat()  # listed from the start, so one that never gets going shows up as stale
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                    backoff.reset()
                except (AMQPError, OSError) as exc:
                    self._failed(describe_amqp_error(exc, self.settings.amqp_url) or str(exc) or type(exc).__name__)
                except Flow45Error as exc:  # the broker cannot be reached (open_blocking says why)
                    self._failed(exc.message)
                except Exception as exc:
                    message = describe_db_error(exc)
                    if message is None:  # a bug: the part must come back after it, as the inbox does
                        log.exception("bridge %s: failed; starting again", self.part)
                        self._error = f"failed ({type(exc).__name__}); starting again"
                    else:
                        drop_connection()
                        self._failed(message)
                self.ready.clear()
                if not self._stop.is_set():
                    backoff.wait()
        finally:
            if not database.is_closed():
                database.close()  # this thread's connection only

    def _failed(self, message: str) -> None:
        log.warning("bridge %s: %s", self.part, message)
        self._error = " ".join(message.split())


def _nothing() -> None:
    pass
