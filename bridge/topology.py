"""Declares what the bridge needs on the broker: exchanges, the inbox, offer and undo queues, dead letters."""

from __future__ import annotations

import logging

import pika

from flow45 import names
from flow45.settings import Settings
from flow45.store.queries import deployed_functions

log = logging.getLogger("flow45.bridge")


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


def declare(channel, settings: Settings) -> int:
    """Declare everything for the configured teams and every deployed function; returns the count
    of offer queues. Idempotent: run at start and after each deploy."""
    channel.exchange_declare(names.TASKS_EXCHANGE, "direct", durable=True)
    channel.exchange_declare(names.DEAD_EXCHANGE, "fanout", durable=True)
    channel.queue_declare(names.DEAD_QUEUE, durable=True)
    # Messages that failed delivery go to the quarantine, which the bridge files by team, redacted;
    # the administrators' queue was bound here before and held every team's bodies as they came.
    channel.queue_unbind(names.DEAD_QUEUE, names.DEAD_EXCHANGE)
    channel.queue_declare(names.QUARANTINE_QUEUE, durable=True, arguments=quarantine_arguments())
    channel.queue_bind(names.QUARANTINE_QUEUE, names.DEAD_EXCHANGE)
    channel.queue_declare(names.INBOX_QUEUE, durable=True, arguments=inbox_arguments())
    channel.exchange_declare(names.READ_EXCHANGE, "fanout", durable=True)
    channel.queue_declare(names.READS_QUEUE, durable=True, arguments={"x-message-ttl": names.READS_TTL_MS})
    channel.queue_bind(names.READS_QUEUE, names.READ_EXCHANGE)
    channel.exchange_declare(names.EVENTS_EXCHANGE, "topic", durable=True)
    functions = deployed_functions()
    for team in sorted(set(settings.teams) | {team for team, _, _ in functions}):
        exchange = names.inbound_exchange(team)
        channel.exchange_declare(exchange, "fanout", durable=True)
        channel.queue_bind(names.INBOX_QUEUE, exchange)
        channel.queue_declare(names.dead_queue(team), durable=True)  # the bridge publishes to it by name
    for team, function, notify in functions:
        queue = names.offer_queue(team, function)
        channel.queue_declare(queue, durable=True, arguments={"x-max-priority": names.MAX_PRIORITY})
        channel.queue_bind(queue, names.TASKS_EXCHANGE, names.offer_key(team, function))
        if notify:
            undo = names.undo_queue(team, function)
            channel.queue_declare(undo, durable=True)
            channel.queue_bind(undo, names.TASKS_EXCHANGE, names.undo_key(team, function))
    return len(functions)


def declare_with_new_connection(url: str, settings: Settings) -> int:
    connection = pika.BlockingConnection(pika.URLParameters(url))
    try:
        count = declare(connection.channel(), settings)
        log.info("topology declared: %d offer queues", count)
        return count
    finally:
        connection.close()
