"""Broker failures in one line: a wrong password, port or vhost is the operator's to fix, so it is
told as one line naming the URL (password hidden) and what failed, never as pika's traceback."""

from __future__ import annotations

import socket
from urllib.parse import unquote, urlsplit

import pika
import pika.exceptions as px
from pika.adapters.utils import connection_workflow

from bridge.logs import quiet_pika
from bridge.pika_sends import coalesce_sends
from flow45 import names
from flow45.errors import Flow45Error
from flow45.urls import hide_password

coalesce_sends()  # every module that opens a connection imports this one

BROKER_FAILURES = (  # what opening or using a broker connection raises when the broker fails
    px.AMQPError, OSError, connection_workflow.AMQPConnectionWorkflowFailed, connection_workflow.AMQPConnectorException,
)


class BrokerUnavailable(Flow45Error):
    """The broker cannot be reached with the URL given."""

    code = "broker_unavailable"


def refused_as_full(exchange: str, kind: str) -> str:
    """Why the broker nacked a message to a team's exchange: the queue behind it is at its cap."""
    if team := names.team_of_inbound_exchange(exchange):
        queue = f"the inbox of team {team} ({names.inbox_queue(team)})"
    elif team := names.team_of_read_exchange(exchange):
        queue = f"the queue of team {team}'s reads ({names.reads_queue(team)})"
    else:
        queue = f"the queue behind {exchange!r}"
    return (f"the broker refused the {kind}: {queue} is full, the bridge being behind or stopped; "
            "nothing was done, send it again later")


def describe_amqp_error(exc: BaseException, url: str) -> str | None:
    """One line naming the broker URL (password hidden) and what failed, or None if `exc` is not
    a broker or socket failure."""
    if not isinstance(exc, BROKER_FAILURES):
        return None
    shown = hide_password(url)
    parts = urlsplit(url)
    user = unquote(parts.username or "guest")
    vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
    root = _root_cause(exc)
    if isinstance(root, (px.ProbableAuthenticationError, px.AuthenticationError)) or _broker_code(root) == 403:
        return f"cannot connect to {shown}: access refused: wrong user name or password"
    if isinstance(root, px.ProbableAccessDeniedError) or _broker_code(root) == 530:
        return f"cannot connect to {shown}: vhost {vhost!r} not found or not allowed for user {user!r}"
    if isinstance(root, px.IncompatibleProtocolError):
        return f"cannot connect to {shown}: the server there does not speak AMQP (wrong port?)"
    if isinstance(root, ConnectionRefusedError):
        port = _port(parts)
        return f"cannot connect to {shown}: connection refused (is RabbitMQ running and listening on port {port}?)"
    if isinstance(root, socket.gaierror):
        return f"cannot connect to {shown}: unknown host {parts.hostname!r}"
    if isinstance(root, (TimeoutError, socket.timeout, connection_workflow.AMQPConnectorStackTimeout)):
        return f"cannot connect to {shown}: timed out"
    if isinstance(root, px.ChannelClosed):
        return f"the channel to {shown} was closed: {root.reply_text}"
    if isinstance(root, px.ConnectionClosedByBroker):
        return f"the broker at {shown} closed the connection: {root.reply_text}"
    if isinstance(root, (px.StreamLostError, px.AMQPHeartbeatTimeout, px.ConnectionClosed, ConnectionError)):
        return f"lost the connection to {shown}: {_text(root)}"
    if isinstance(root, OSError):
        return f"cannot connect to {shown}: {root.strerror or _text(root)}"
    if isinstance(root, (px.AMQPConnectionError, connection_workflow.AMQPConnectorException)):
        return f"cannot connect to {shown}: {_text(root)}"
    return f"broker {shown}: {type(root).__name__}: {_text(root)}"


def open_blocking(url: str, attempts: int = 1, timeout: float | None = None) -> pika.BlockingConnection:
    """A blocking connection, or BrokerUnavailable with the one line that says why. `timeout`
    bounds each step of opening it (socket, AMQP handshake)."""
    quiet_pika()
    try:
        params = pika.URLParameters(url)
    except (ValueError, TypeError) as exc:
        raise BrokerUnavailable(f"broker URL {hide_password(url)}: {exc}") from None
    params.connection_attempts = attempts
    if timeout is not None:
        params.socket_timeout = params.stack_timeout = timeout
    try:
        return pika.BlockingConnection(params)
    except BROKER_FAILURES as exc:
        raise BrokerUnavailable(describe_amqp_error(exc, url)) from None


def _root_cause(exc: BaseException) -> BaseException:
    """The failure pika wrapped, through its connection workflow's layers."""
    for _ in range(10):
        if isinstance(exc, connection_workflow.AMQPConnectionWorkflowFailed) and exc.exceptions:
            exc = exc.exceptions[-1]
        elif isinstance(getattr(exc, "exception", None), BaseException):  # the connector's errors
            exc = exc.exception
        elif type(exc) is px.AMQPConnectionError and exc.args and isinstance(exc.args[0], BaseException):
            exc = exc.args[0]
        else:
            break
    return exc


def _broker_code(exc: BaseException) -> int | None:
    return exc.reply_code if isinstance(exc, px.ConnectionClosedByBroker) else None


def _port(parts) -> int:
    try:
        return parts.port or (5671 if parts.scheme == "amqps" else 5672)
    except ValueError:
        return 5672


def _text(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__
