"""Exchange and queue names, chosen so RabbitMQ's per-user permission regexes isolate teams."""

from __future__ import annotations

import re

TASKS_EXCHANGE = "flow45.tasks"  # direct: offers and undo notices, routing key TEAM.FUNCTION[.undo]
SHARED_INBOX = "flow45.inbox"  # the one inbox every team's exchange was bound to before each had its own;
# a bridge drains it where it still holds messages, and deletes it once it is empty and unused
DEAD_EXCHANGE = "flow45.dead"  # fanout: the inboxes' dead-letter exchange (a message that failed delivery 5 times)
QUARANTINE_QUEUE = "flow45.quarantine"  # bound to it; the bridge redacts each and files it by team
DEAD_QUEUE = "flow45.dead"  # the administrators' dead letters: refusals that name no team, and what the
# bridge could not file even from the quarantine
READ_EXCHANGE = "flow45.read"  # fanout: operators' reads, shared by every team (the bridge takes the team
# from the broker-validated user): the first `whoami`, and clients from before each team read apart;
# answered on direct reply-to, off the workers' path
READS_QUEUE = "flow45.reads"  # bound to it; read by the bridge's own reader
READS_TTL_MS = 30_000  # a read nobody answered in this long is dropped: its asker stopped waiting
EVENTS_EXCHANGE = "flow45.events"  # topic: every ledger event, routing key its TEAM; a team's operators
# may bind only their own team's key
EVENT_PAGE_HEADER = "x-flow45-page"  # a page's number among its team's pages of one publishing spell
EVENT_SETTLED_HEADER = "x-flow45-settled"  # every ledger id up to it was published in this spell or never will be
NAME = r"^[a-z][a-z0-9_-]{0,62}$"  # a team, workflow, task or function: safe in queue names and regexes
MAX_PRIORITY = 10
INBOX_DELIVERY_LIMIT = 5


def inbound_exchange(team: str) -> str:
    return f"flow45.in.{team}"


def offer_key(team: str, function: str) -> str:
    return f"{team}.{function}"


def offer_queue(team: str, function: str) -> str:
    return f"flow45.tasks.{team}.{function}"


def undo_key(team: str, function: str) -> str:
    return f"{team}.{function}.undo"


def undo_queue(team: str, function: str) -> str:
    return f"flow45.tasks.{team}.{function}.undo"


def team_of_inbound_exchange(exchange: str) -> str | None:
    match = re.fullmatch(r"flow45\.in\.([a-z][a-z0-9_-]*)", exchange or "")
    return match.group(1) if match else None


def team_of_read_exchange(exchange: str) -> str | None:
    match = re.fullmatch(r"flow45\.read\.([a-z][a-z0-9_-]*)", exchange or "")
    return match.group(1) if match else None


def team_of_exchange(exchange: str | None) -> str | None:
    """The team of a team's own exchange, inbound or reads: only its users may publish there."""
    return team_of_inbound_exchange(exchange) or team_of_read_exchange(exchange)


def inbox_queue(team: str) -> str:
    """The team's inbox: its workers' and operators' messages, bound to its inbound exchange. One per
    team, so that a team sending faster than the bridge applies waits behind its own messages alone."""
    return f"flow45.inbox.{team}"


def read_exchange(team: str) -> str:
    """The team's operators' reads, once they know their team: a queue of their own behind it, so a
    team asking faster than the bridge answers waits behind its own reads alone."""
    return f"flow45.read.{team}"


def reads_queue(team: str) -> str:
    return f"flow45.reads.{team}"


def dead_queue(team: str) -> str:
    """The team's dead-letter queue: its refused messages, readable by its operators."""
    return f"flow45.dead.{team}"
