"""A part of the bridge that runs on a thread of its own, with its own broker and database
connections (operators' reads, the team event streams): it serves until stopped, and after any
failure starts again with capped backoff, so neither ever holds up the workers' inbox."""

from __future__ import annotations

import logging
import threading

from pika.exceptions import AMQPError

from bridge.failures import describe_amqp_error
from flow45.db import database, describe_db_error, drop_connection
from flow45.errors import Flow45Error
from flow45.outage import Backoff
from flow45.settings import Settings

log = logging.getLogger("flow45.bridge")


class SideThread:
    """Subclasses name themselves (`part`, for the log) and serve in `_serve`, setting `ready`
    while they are connected and returning or raising when they stop serving."""

    part = "side thread"

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ready = threading.Event()
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def _serve(self) -> None:
        raise NotImplementedError

    def run(self) -> None:
        backoff = Backoff(self._stop, cap=self.settings.reconnect_max)
        try:
            while not self._stop.is_set():
                try:
                    self._serve()
                    backoff.reset()
                except (AMQPError, OSError) as exc:
                    log.warning("bridge %s: %s", self.part, describe_amqp_error(exc, self.settings.amqp_url) or exc)
                except Flow45Error as exc:  # the broker cannot be reached (open_blocking says why)
                    log.warning("bridge %s: %s", self.part, exc.message)
                except Exception as exc:
                    message = describe_db_error(exc)
                    if message is None:  # a bug: the part must come back after it, as the inbox does
                        log.exception("bridge %s: failed; starting again", self.part)
                    else:
                        drop_connection()
                        log.warning("bridge %s: %s", self.part, message)
                self.ready.clear()
                if not self._stop.is_set():
                    backoff.wait()
        finally:
            if not database.is_closed():
                database.close()  # this thread's connection only
