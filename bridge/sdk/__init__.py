"""The worker SDK for Python workers: handlers per function, typed inputs and outputs, two transports.

    from bridge.sdk import AmqpTransport, Worker, load_types, run_forever

    types = load_types("config/reports.yaml", "reports")
    worker = Worker(AmqpTransport("amqp://reports-worker:…@rabbit/flow45", "reports", "render-1"))

    @worker.handler("render_pdf")
    def render(task, sales: types.SalesExtract) -> types.Document:
        task.progress(50, "rendering")
        return types.Document(uri=..., pages=12)

    run_forever(worker, concurrency=4)
"""

from bridge.sdk.errors import (
    ConnectionLost, InboxFull, PermanentError, RequestTimeout, SkipTask, TaskCancelled, TransportError, Unroutable,
)
from bridge.sdk.run import run_forever, transport_from_settings
from bridge.sdk.task import Task
from bridge.sdk.transport import Delivery, Subscription, Transport
from bridge.sdk.typed import DeclaredModel, TeamTypes, load_types
from bridge.sdk.worker import Worker


def __getattr__(name: str):
    # The transports load lazily: LocalTransport needs no pika, AmqpTransport no database.
    if name == "AmqpTransport":
        from bridge.sdk.amqp import AmqpTransport

        return AmqpTransport
    if name == "LocalTransport":
        from bridge.sdk.local import LocalTransport

        return LocalTransport
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "AmqpTransport", "ConnectionLost", "DeclaredModel", "Delivery", "InboxFull", "LocalTransport", "PermanentError",
    "RequestTimeout", "SkipTask", "Subscription", "Task", "TaskCancelled", "TeamTypes", "Transport",
    "TransportError", "Unroutable", "Worker", "load_types", "run_forever", "transport_from_settings",
]
