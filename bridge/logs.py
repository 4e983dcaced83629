"""pika's own logging, kept quiet unless asked (FLOW45_DEBUG). No pika import: the command line
calls this before it knows whether a command will need the broker.

pika logs INFO lines for every connection step and, for each failed attempt, ERROR lines with a
stack. Flow45 reports the same failures itself, once and in one line (bridge/failures.py), so
pika's connection loggers are silenced and the rest of pika logs from WARNING up."""

from __future__ import annotations

import logging
import os

_CONNECTION_LOGGERS = (
    "pika.adapters.utils.connection_workflow",
    "pika.adapters.utils.io_services_utils",
    "pika.adapters.utils.selector_ioloop_adapter",
    "pika.adapters.blocking_connection",
    "pika.adapters.base_connection",
    "pika.connection",
)


def quiet_pika() -> None:
    """pika at WARNING and its connection loggers silent, unless FLOW45_DEBUG is set or the
    application chose levels for these loggers itself."""
    if os.environ.get("FLOW45_DEBUG"):
        return
    root = logging.getLogger("pika")
    if root.level == logging.NOTSET:
        root.setLevel(logging.WARNING)
    for name in _CONNECTION_LOGGERS:
        logger = logging.getLogger(name)
        if logger.level == logging.NOTSET:
            logger.setLevel(logging.CRITICAL)
