"""Running a worker as a process: the right transport for the installation, and signal handling."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import Any

from bridge.sdk.worker import Worker
from flow45.outage import on_stop_signals
from flow45.settings import Settings, current_settings

log = logging.getLogger(__name__)


def transport_from_settings(team: str, worker_name: str, settings: Settings | None = None, **options: Any):
    """AmqpTransport when the installation has an AMQP URL (FLOW45_AMQP_URL), else LocalTransport on
    its database (the embedded default)."""
    settings = settings or current_settings()
    if settings.amqp_url:
        from bridge.sdk.amqp import AmqpTransport

        return AmqpTransport(settings.amqp_url, team, worker_name, **options)
    from bridge.sdk.local import LocalTransport

    return LocalTransport(team, worker_name, database_url=settings.database_url, **options)


def run_forever(worker: Worker, concurrency: int = 1) -> None:
    """Run until SIGTERM or SIGINT, then stop cleanly: running handlers finish and report.
    A second signal exits at once. Call from the main thread."""
    if threading.current_thread() is not threading.main_thread():
        raise RuntimeError("run_forever() handles signals, so it must run in the main thread")
    received = []

    def on_signal(signum: int) -> None:
        if received:  # this runs off the main thread, so it ends the process rather than raise there
            log.warning("%s again: exiting now", signal.Signals(signum).name)
            logging.shutdown()
            os._exit(128 + signum)
        received.append(signum)
        log.info("%s: finishing running tasks, then stopping (send it again to exit at once)",
                 signal.Signals(signum).name)
        worker.stop()

    with on_stop_signals(on_signal):
        worker.run(concurrency)
