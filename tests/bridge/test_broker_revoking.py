"""setup-broker takes back what it granted: a team user the settings no longer name loses its
permissions on the vhost and its open connections, a user moved to another team holds that team's
permissions alone, and users Flow45 did not make keep theirs. Run as an administrator would, with
rabbitmqctl, on a vhost of the test's own on the session's node."""

from __future__ import annotations

import re
import time

import pika
import pytest

from flow45 import names
from flow45.cli import main
from flow45.settings import Settings, use_settings
from tests.harness.rabbitmq import BIN_DIR

pytestmark = pytest.mark.integration

VHOST = "flow45-revoking"
ADMINS_OWN = "revoking-admins-own"  # made by the administrator, not by setup-broker
USERS = ["revoking-keeper", "revoking-leaver", "revoking-mover", ADMINS_OWN]
REPORTS_QUEUE, RIVAL_QUEUE = names.offer_queue("reports", "render_pdf"), names.offer_queue("rival", "render_pdf")


@pytest.fixture
def broker(rabbitmq_server, monkeypatch):
    """The session's node; rabbitmqctl reaches it with the node's own environment (its cookie)."""
    for key, value in rabbitmq_server._env().items():
        if key == "HOME" or key.startswith("RABBITMQ_"):
            monkeypatch.setenv(key, value)
    yield rabbitmq_server
    for path in [f"/api/vhosts/{VHOST}", *(f"/api/users/{user}" for user in USERS)]:
        try:
            rabbitmq_server.http("DELETE", path)
        except RuntimeError as exc:
            if ": 404 " not in str(exc):  # never made: the test stopped early
                raise


def _url(broker, user: str, password: str) -> str:
    return f"amqp://{user}:{password}@127.0.0.1:{broker.port}/{VHOST}"


def _setup_broker(broker, capsys, teams: dict) -> tuple[str, dict[str, str]]:
    """Run `flow45 bridge setup-broker` for `teams`; its stdout, and the passwords it printed."""
    use_settings(Settings(amqp_url=_url(broker, "guest", "guest"), teams=teams))
    assert main(["bridge", "setup-broker", "--rabbitmqctl", f"{BIN_DIR}/rabbitmqctl -n {broker.nodename}"]) == 0
    out, err = capsys.readouterr()
    return out, dict(re.findall(r"^#   (\S+): ([0-9a-f]{32})$", err, re.M))


def _consume(url: str, queue: str) -> str:
    """"consumed" if the user could take a message from `queue`, else the broker's refusal."""
    try:
        connection = pika.BlockingConnection(pika.URLParameters(url))
    except pika.exceptions.AMQPConnectionError as exc:
        return f"refused: {exc!r}"
    try:
        method, _, _ = connection.channel().basic_get(queue)
        return "consumed" if method else "empty"
    except pika.exceptions.ChannelClosedByBroker as exc:
        return f"refused: {exc.reply_code} {exc.reply_text}"
    finally:
        if connection.is_open:
            connection.close()


def _offer(broker, queue: str) -> None:
    connection = pika.BlockingConnection(pika.URLParameters(_url(broker, "guest", "guest")))
    try:
        channel = connection.channel()
        channel.queue_declare(queue, durable=True)
        channel.basic_publish("", queue, b"{}")
    finally:
        connection.close()


def _closed(connection: pika.BlockingConnection) -> bool:
    """True once the broker closed `connection` (the offers it took come first)."""
    deadline = time.monotonic() + 10
    try:
        while connection.is_open and time.monotonic() < deadline:
            connection.process_data_events(time_limit=1)
    except pika.exceptions.AMQPConnectionError:
        return True
    return not connection.is_open


def test_a_run_takes_back_what_it_granted_to_users_the_settings_no_longer_name(broker, capsys):
    broker.http("PUT", f"/api/users/{ADMINS_OWN}", {"password": "own-secret", "tags": "monitoring"})
    before = {"reports": {"users": {"revoking-keeper": "worker", "revoking-leaver": "worker",
                                    "revoking-mover": "operator", ADMINS_OWN: "worker"}}}
    _, passwords = _setup_broker(broker, capsys, before)
    passwords[ADMINS_OWN] = "own-secret"
    url = {user: _url(broker, user, passwords[user]) for user in USERS}
    for queue in (REPORTS_QUEUE, RIVAL_QUEUE):
        _offer(broker, queue)  # taken unacknowledged: back in the queue when the taker's connection closes
    assert all(_consume(url[user], REPORTS_QUEUE) == "consumed" for user in USERS)
    # Two users consuming as the settings change: a channel keeps what it was allowed when it opened.
    leaver, mover = (pika.BlockingConnection(pika.URLParameters(url[user])) for user in ("revoking-leaver",
                                                                                          "revoking-mover"))
    for connection in (leaver, mover):
        connection.channel().basic_consume(REPORTS_QUEUE, lambda *_: None)

    after = {"reports": {"users": {"revoking-keeper": "worker"}}, "rival": {"users": {"revoking-mover": "worker"}}}
    out, _ = _setup_broker(broker, capsys, after)

    assert "NOT_ALLOWED - access to vhost" in _consume(url["revoking-leaver"], REPORTS_QUEUE)
    assert _closed(leaver)
    assert _closed(mover)
    assert "ACCESS_REFUSED" in _consume(url["revoking-mover"], REPORTS_QUEUE)
    assert _consume(url["revoking-mover"], RIVAL_QUEUE) == "consumed"
    assert _consume(url["revoking-keeper"], REPORTS_QUEUE) == "consumed"
    assert _consume(url[ADMINS_OWN], REPORTS_QUEUE) == "consumed"  # not made by Flow45: left as it is
    assert "revoking-leaver: not in the settings any more" in out
    assert "revoking-mover: permissions on vhost 'flow45-revoking' changed" in out
    assert ADMINS_OWN not in out and "revoking-keeper" not in out
    assert broker.http("GET", "/api/users/revoking-mover/topic-permissions") == []  # a worker now
    tags = {user: broker.http("GET", f"/api/users/{user}")["tags"] for user in USERS}
    assert tags == {"revoking-keeper": ["flow45"], "revoking-leaver": ["flow45"], "revoking-mover": ["flow45"],
                    ADMINS_OWN: ["monitoring"]}  # the leaver is kept, revoked; the administrator's tags are theirs
