"""Declares what the bridge needs on the broker: exchanges, each team's inbox, offer and undo queues,
dead letters."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import pika
from pika.exceptions import ChannelClosedByBroker

from flow45 import names
from flow45.settings import Settings
from flow45.store.queries import deployed_functions

log = logging.getLogger("flow45.bridge")


class _SharedInboxGone(logging.Filter):
    """pika warns of every channel the broker closes; the look for the retired shared inbox is
    refused so wherever it is gone, which is no news."""

    def filter(self, record: logging.LogRecord) -> bool:
        return f"no queue '{names.SHARED_INBOX}'" not in record.getMessage()


logging.getLogger("pika.channel").addFilter(_SharedInboxGone())


def inbox_arguments() -> dict:
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": names.INBOX_DELIVERY_LIMIT,
        "x-dead-letter-exchange": names.DEAD_EXCHANGE,
    }


def quarantine_arguments() -> dict:
    # A message the bridge cannot even file from here goes, as it is, to the administrators' queue.
    return {
        "x-queue-type": "quorum",
        "x-delivery-limit": names.INBOX_DELIVERY_LIMIT,
        "x-dead-letter-exchange": "",
        "x-dead-letter-routing-key": names.DEAD_QUEUE,
    }


DEPLOY_DECLARE_TIMEOUT = 2.0  # seconds the queues a deploy added may take to declare before it is answered

@dataclass(frozen=True)
class Declared:
    offer_queues: int
    inboxes: tuple[str, ...]  # what the bridge consumes: each team's inbox, and the shared one while it lasts
    functions: frozenset[tuple[str, str, bool]] = frozenset()  # (team, function, notify) whose queues it declared


def declare(channel, settings: Settings) -> Declared:
    """Declare everything for the configured teams and every deployed function. Idempotent: run at
    start and after each deploy."""
    channel.exchange_declare(names.TASKS_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(names.DEAD_EXCHANGE, "fanout", durable=True)
    channel.queue_declare(names.DEAD_QUEUE, durable=True)
    # Messages that failed delivery go to the quarantine, which the bridge files by team, redacted;
    # the administrators' queue was bound here before and held every team's bodies as they came.
    channel.queue_unbind(names.DEAD_QUEUE, names.DEAD_EXCHANGE)
    channel.queue_declare(names.QUARANTINE_QUEUE, durable=True, arguments=quarantine_arguments())
    channel.queue_bind(names.QUARANTINE_QUEUE, names.DEAD_EXCHANGE)
    declare_reads(channel, settings)
    channel.exchange_declare(names.EVENTS_EXCHANGE, "topic", durable=True)
    functions = deployed_functions()
    teams = sorted(set(settings.teams) | {team for team, _, _ in functions})
    for team in teams:
        exchange, inbox = names.inbound_exchange(team), names.inbox_queue(team)
        channel.exchange_declare(exchange, "fanout", durable=True)
        channel.queue_declare(inbox, durable=True, arguments=inbox_arguments())
        channel.queue_bind(inbox, exchange)
        channel.queue_declare(names.dead_queue(team), durable=True)  # the bridge publishes to it by name
    declare_functions(channel, functions)
    inboxes = [names.inbox_queue(team) for team in teams]
    if _shared_inbox_remains(channel.connection, teams):
        inboxes.append(names.SHARED_INBOX)
    return Declared(len(functions), tuple(inboxes), frozenset(functions))


def declare_functions(channel, functions: list[tuple[str, str, bool]]) -> None:
    """Each function's offer queue, and its undo queue when a task of it has `undo: notify`."""
    for team, function, notify in functions:
        queue = names.offer_queue(team, function)
        channel.queue_declare(queue, durable=True, arguments={"x-max-priority": names.MAX_PRIORITY})
        channel.queue_bind(queue, names.TASKS_EXCHANGE, names.offer_key(team, function))
        if notify:
            undo = names.undo_queue(team, function)
            channel.queue_declare(undo, durable=True)
            channel.queue_bind(undo, names.TASKS_EXCHANGE, names.undo_key(team, function))


def declare_reads(channel, settings: Settings) -> list[str]:
    """The operators' read exchanges and queues: the shared ones, and each configured team's own.
    Returns the queues, which the bridge's reader consumes."""
    ttl = {"x-message-ttl": names.READS_TTL_MS}
    channel.exchange_declare(names.READ_EXCHANGE, "fanout", durable=True)
    channel.queue_declare(names.READS_QUEUE, durable=True, arguments=ttl)
    channel.queue_bind(names.READS_QUEUE, names.READ_EXCHANGE)
    queues = [names.READS_QUEUE]
    for team in sorted(settings.teams):
        exchange, queue = names.read_exchange(team), names.reads_queue(team)
        channel.exchange_declare(exchange, "fanout", durable=True)
        channel.queue_declare(queue, durable=True, arguments=ttl)
        channel.queue_bind(queue, exchange)
        queues.append(queue)
    return queues


def _shared_inbox_remains(connection, teams: list[str]) -> bool:
    """The inbox every team shared before each had its own: unbound from the teams' exchanges, and
    deleted once no message waits in it and no bridge consumes it (a message routed there while an
    older bridge bound it went to the team's inbox too). True while it remains: its messages are
    consumed as before. A quorum queue takes no conditional delete, hence the look first."""
    found = _on_new_channel(connection, lambda ch: ch.queue_declare(names.SHARED_INBOX, passive=True))
    if found is None:
        return False
    for exchange in map(names.inbound_exchange, teams):
        _on_new_channel(connection, lambda ch, exchange=exchange: ch.queue_unbind(names.SHARED_INBOX, exchange))
    if found.method.message_count or found.method.consumer_count:
        return True
    if _on_new_channel(connection, lambda ch: ch.queue_delete(names.SHARED_INBOX)) is None:
        return True
    log.info("topology: the shared inbox %s was empty; deleted", names.SHARED_INBOX)
    return False


def _on_new_channel(connection, step):
    """What `step` returned on a channel of its own, or None if the broker refused it (a refusal
    closes that channel only)."""
    channel = connection.channel()
    try:
        return step(channel)
    except ChannelClosedByBroker:
        return None
    finally:
        if channel.is_open:
            channel.close()


def declare_new_functions(url: str, team: str, known: frozenset[tuple[str, str, bool]]) -> list[tuple[str, str, bool]]:
    """The queues of `team`'s deployed functions not among `known`, declared now (none: no connection
    opened); returns them. What a deploy needs before it is answered, and no more: the whole
    topology, every team's, waits for the bridge's next declaration."""
    new = [function for function in deployed_functions(team) if function not in known]
    if new:
        parameters = pika.URLParameters(url)
        # The bridge's IO loop waits for this: a broker slow to answer costs the deploy its early
        # declaration (made at the next one), not every team's messages a long stall.
        parameters.socket_timeout = parameters.blocked_connection_timeout = DEPLOY_DECLARE_TIMEOUT
        connection = pika.BlockingConnection(parameters)
        try:
            declare_functions(connection.channel(), new)
        finally:
            connection.close()
    return new


def declare_with_new_connection(url: str, settings: Settings) -> Declared:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        declared = declare(connection.channel(), settings)
        log.info("topology declared: %d offer queues, %d inboxes", declared.offer_queues, len(declared.inboxes))
        return declared
    finally:
        connection.close()
