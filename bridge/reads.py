"""Operators' reads (`flow45.read`): answered on a thread of their own, with its own broker
connection and its own database connection (peewee keeps one per thread), so a burst of dashboard
reads never queues in the workers' inbox nor holds up a batch of their messages.

Each read is answered for the sender's team alone, through `LocalClient(team=...)`: another team's
id is `not_found` in the very words a missing id gets. Lists come in pages of at most
`messages.MAX_PAGE`.

Reads are taken in as they come (up to PREFETCH from each team's queue at once, and all of the
shared queue's) and lined up by team; teams take turns, one read each, and a read (all its
statements together) stops after the installation's `read_timeout` (code `too_slow`). So one team's heavy reads hold
another team's read up for one read each at most, and for a bounded time. Identical reads of one
team waiting together are answered by one query: a team's dashboards, woken by the same events, ask
the same things at the same moment. Every read among them had arrived before that query began, so
none gets an answer older than its question; nothing is kept for later reads.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel, ValidationError

from bridge import answers, read_pages
from bridge.setup_broker import READS_WAITING_MAX
from bridge.side_thread import SideThread
from bridge.topology import declare_reads
from bridge.inbound import Delivery, Refusal, _check_ids, _errors, _shown, delivery_from
from bridge.inbound import is_direct_reply_to, json_object, team_of_user
from flow45 import messages as m
from flow45 import names
from flow45.client import LocalClient, RunFilter
from flow45.db import describe_db_error, dialect, drop_connection
from flow45.errors import Flow45Error, TooSlow
from flow45.messages.base import utc_time
from flow45.models import WorkflowVersion
from flow45.settings import Settings

log = logging.getLogger("flow45.bridge")

PREFETCH = 20  # reads in hand at once: identical ones among them are answered once
IDLE_WAIT = 0.25  # seconds a wait for reads lasts at most: the loop beats the heartbeat between waits
# Reads whose answer depends on who asks, not only on the team: never shared between users.
PER_USER = frozenset({"whoami", "inbox"})


def parse_read(settings: Settings, delivery: Delivery) -> tuple[str, str, BaseModel]:
    """(team, user, read) of a delivery from flow45.read or a team's flow45.read.TEAM, or a Refusal
    naming what is wrong."""
    if not is_direct_reply_to(delivery.reply_to):
        raise Refusal("invalid_reply_to", f"reply_to is {_shown(delivery.reply_to)}: a read is answered only on "
                      "direct reply-to (amq.rabbitmq.reply-to)")
    user = delivery.user_id
    if not user:
        raise Refusal("unauthorized", "the message has no user_id property: set it to your broker user name")
    found = team_of_user(settings, user)
    if found is None:
        raise Refusal("unauthorized", f"user {_shown(user)} is not a worker or operator of any team in the settings")
    team, role = found
    if role != "operator":
        raise Refusal("unauthorized", f"reads are for operators; user {user} is a {role} of team {team}")
    sent_as = names.team_of_read_exchange(delivery.exchange)
    if sent_as is not None and sent_as != team:  # the broker lets none but its own through: a user set up wrongly
        raise Refusal("unauthorized", f"user {user} reads for team {team}: send to {names.read_exchange(team)} "
                      f"or {names.READ_EXCHANGE}, not {delivery.exchange}")
    data = json_object(delivery)
    kind = data["type"]
    if kind not in m.READ_TYPES:
        if kind in m.OPERATOR_TYPES:
            raise Refusal("invalid_message", f"`{kind}` is not a read: publish it to {names.inbound_exchange(team)}")
        raise Refusal("invalid_message", f"unknown read {_shown(kind)}; reads are {', '.join(sorted(m.READ_TYPES))}")
    try:
        message = m.operator_reads().validate_python(data)
    except ValidationError as exc:
        raise Refusal("invalid_message", f"{kind}: {_errors(exc)}") from exc
    _check_ids(team, message)
    return team, user, message


def answer_read(team: str, user: str, read: BaseModel) -> Any:
    """The result of a read, as JSON, for `team` only."""
    client = LocalClient(user, team=team)
    if isinstance(read, m.WhoAmI):
        return {"user": user, "team": team}
    if isinstance(read, m.ReadWorkflows):
        return {"workflows": [w.to_json() for w in client.workflows()]}
    if isinstance(read, m.ReadRuns):
        where = _run_filter(team, read)
        return {"runs": [r.to_json() for r in client.runs(where, before=read.before, limit=read.limit, ids=read.ids)]}
    if isinstance(read, m.ReadRunInstances):
        found = client.run_instances(_run_filter(team, read), task=read.task, state=read.state, before=read.before,
                                     limit=read.limit, ids=read.ids)
        return {"runs": [r.to_json() for r in found]}
    if isinstance(read, m.ReadRun):
        if read.as_of is not None and read.as_of_time is not None:
            raise Refusal("invalid_message", "run: give `as_of` or `as_of_time`, not both")
        if read.as_of is not None:
            found = client.run_as_of(read.run, event=read.as_of).to_json()
        elif read.as_of_time is not None:
            found = client.run_as_of(read.run, at=utc_time(read.as_of_time)).to_json()
        else:
            found = client.run(read.run, attempts=read.attempts).to_json()
        found["instances"] = found["instances"][read.instances_from:]  # the rest of a run sent in parts
        return found
    if isinstance(read, m.ReadStats):
        return client.stats(team, read.workflow, read.runs).to_json()
    if isinstance(read, m.ReadVersions):
        return client.versions(team, read.workflow, read.limit, since=read.since).to_json()
    if isinstance(read, m.ReadInstance):
        found = client.instance(read.instance).to_json()
        found["attempts"] = found["attempts"][read.attempts_from:]  # the rest of an instance sent in parts
        return found
    if isinstance(read, m.ReadEvents):
        window = {"since": utc_time(read.since), "until": utc_time(read.until)}
        if read.newest:
            events = client.tail_events(run=read.run, instance=read.instance, n=read.limit, before=read.before,
                                        **window)
        else:
            events = client.events(read.after, run=read.run, instance=read.instance, limit=read.limit, **window)
        return {"events": [e.to_json() for e in events]}
    if isinstance(read, m.ReadCounts):
        return {"counts": client.status_counts(RunFilter(team, read.workflow, None, read.text))}
    if isinstance(read, m.ReadInbox):
        items = client.human_inbox(limit=read.tasks_from + read.limit, show=read.show)[read.tasks_from:]
        return {"tasks": [item.to_json() for item in items]}  # from tasks_from: the rest of an inbox sent in parts
    if isinstance(read, m.ReadSpec):
        if (read.run is None) == (read.workflow is None):
            raise Refusal("invalid_message", "spec: give either `run` or `workflow`")
        spec = client.run_spec(read.run) if read.run is not None else client.workflow_spec(team, read.workflow)
        return {"id": spec.id, "team": spec.team, "workflow": spec.workflow_name, "version": spec.number,
                "document": WorkflowVersion.get_by_id(spec.id).spec}
    if isinstance(read, m.ReadSchema):
        return client.schema(team)
    raise Refusal("invalid_message", f"unknown read {read.type!r}")


def _run_filter(team: str, read: m.ReadRuns | m.ReadRunInstances) -> RunFilter:
    if read.version is not None and read.workflow is None:
        raise Refusal("invalid_message", f"{read.type}: `version` needs `workflow`: each workflow numbers its own "
                      "versions")
    return RunFilter(team, read.workflow, read.status, read.text, tuple(sorted((read.params or {}).items())),
                     utc_time(read.since), utc_time(read.until), read.version, read.key)


@dataclass
class Asked:
    """A read waiting for its team's turn."""

    delivery: Delivery
    user: str
    read: BaseModel
    same_as: tuple  # reads of one team with the same `same_as` are answered by one query


class ReadServer(SideThread):
    """Consumes flow45.reads until stopped; reconnects with capped backoff."""

    part = "reads"

    def __init__(self, settings: Settings, prefetch: int = PREFETCH, heartbeat=None):
        super().__init__(settings, heartbeat)
        self.prefetch = prefetch
        self.answered = 0
        self.shared = 0  # reads answered with another identical read's query
        self._waiting: dict[str, list[Asked]] = {}  # team -> its reads not yet answered, oldest first
        self._turns = 0
        self._last_turn: dict[str, int] = {}  # team -> the number of its last turn

    def _serve(self) -> None:
        connection = self._open_connection()
        try:
            channel = connection.channel()
            dead = connection.channel()
            dead.confirm_delivery()  # a refused read's copy is kept before the read is acked
            arrived: list[Delivery] = []
            for queue in declare_reads(channel, self.settings):
                # Per consumer: a team asking faster than the reads are answered has `prefetch` of them
                # in hand at most, and the other teams' reads come beside them, not behind them. The
                # shared queue is every team's line at once: all of it is taken in hand (the broker
                # keeps READS_WAITING_MAX there at most), so that its reads are lined up by team too.
                shared = queue == names.READS_QUEUE
                channel.basic_qos(prefetch_count=READS_WAITING_MAX if shared else self.prefetch)
                channel.basic_consume(queue, lambda _ch, method, properties, body:
                                      arrived.append(delivery_from(method, properties, body)))
            self.ready.set()
            while not self._stop.is_set():
                self.beat()
                # Returns as soon as reads came; at once while reads wait for their team's turn.
                connection.process_data_events(time_limit=0 if self._waiting else IDLE_WAIT)
                if arrived:
                    taken, arrived[:] = list(arrived), []
                    self._take(channel, dead, taken)
                self._answer_turn(channel, dead)
        finally:
            self._waiting.clear()  # unacked: the broker delivers them again to the next connection
            self._close_connection(connection)

    def _take(self, channel, dead, deliveries: list[Delivery]) -> None:
        """Refuse at once what is not a read one may ask; line up the rest by team."""
        for delivery in deliveries:
            try:
                team, user, read = parse_read(self.settings, delivery)
            except Refusal as exc:
                self._publish(channel, answers.reply(delivery, self._refused(dead, delivery, exc)))
                channel.basic_ack(delivery.tag)
                self.answered += 1
                continue
            same_as = (user if read.type in PER_USER else None, read.model_dump_json())
            self._waiting.setdefault(team, []).append(Asked(delivery, user, read, same_as))

    def _answer_turn(self, channel, dead) -> bool:
        """The next team's turn: its oldest waiting read, with the identical reads of that team waiting
        behind it, answered by one query. The team whose last turn is oldest goes next, whether or not
        its line ran empty in between, so a team's slow reads hold another team's read up for one read
        each at most. False if none waited."""
        if not self._waiting:
            return False
        team = min(self._waiting, key=lambda waiting: self._last_turn.get(waiting, -1))  # ties: first come
        self._turns += 1
        self._last_turn[team] = self._turns
        lined_up = self._waiting.pop(team)
        first = lined_up[0]
        now = [asked for asked in lined_up if asked.same_as == first.same_as]
        later = [asked for asked in lined_up if asked.same_as != first.same_as]
        if later:
            self._waiting[team] = later
        outcome = self._answer(team, first.user, first.read, first.delivery)
        if isinstance(outcome, Refusal):
            for asked in now:
                self._publish(channel, answers.reply(asked.delivery, self._refused(dead, asked.delivery, outcome)))
        else:  # written once for all who asked
            body = read_pages.encoded(first.read, outcome, self.settings.max_message_bytes)
            if body is None or len(body) > self.settings.max_message_bytes:  # says why, as an error
                body = answers.encode_answer({"ok": True, "result": outcome}, first.delivery.message_id)
            for asked in now:
                self._publish(channel, answers.reply_with(asked.delivery, body))
        for asked in now:
            channel.basic_ack(asked.delivery.tag)
        self.answered += len(now)
        self.shared += len(now) - 1
        return True

    def _answer(self, team: str, user: str, read: BaseModel, delivery: Delivery) -> Any:
        """The read's result, or the Refusal to answer instead."""
        limit = self.settings.read_timeout
        try:
            if isinstance(read, m.WhoAmI):  # needs no store: answered even while it is away
                return answer_read(team, user, read)
            with dialect().time_limit(limit):
                return answer_read(team, user, read)
        except Refusal as exc:
            return exc
        except TooSlow:
            log.warning("bridge reads: a %s read of team %s stopped after %gs (read_timeout)", read.type, team, limit)
            return Refusal("too_slow", f"the {read.type} read ran longer than {limit:g}s, the installation's "
                           "read_timeout, and was stopped: narrow it (a workflow, a status, a time range, a smaller "
                           "limit) or ask again later", routine=True)
        except Flow45Error as exc:  # not_found: an answer like any other, nothing to file
            return Refusal(exc.code, exc.message, routine=True)
        except Exception as exc:
            message = describe_db_error(exc)
            if message is None:
                log.exception("bridge reads: cannot answer %r", delivery.message_id)
                return Refusal("internal", f"unexpected error: {type(exc).__name__}", routine=True)
            drop_connection()  # the next read reconnects
            return Refusal("unavailable", f"the store cannot be read now ({message}); ask again", routine=True)

    def _refused(self, dead, delivery: Delivery, refusal: Refusal) -> dict:
        """The answer to a refused read; a copy filed in the dead letters unless the refusal is routine."""
        if not refusal.routine:
            log.warning("bridge reads: refused a read from %r: %s: %s", delivery.user_id, refusal.code,
                        refusal.message[:300])
            copy = answers.dead_letter(self.settings, delivery, refusal)
            dead.basic_publish(copy.exchange, copy.routing_key, copy.body, copy.properties)
        return {"ok": False, "code": refusal.code, "error": refusal.message}

    @staticmethod
    def _publish(channel, reply: answers.Publish | None) -> None:
        if reply is not None:
            channel.basic_publish(reply.exchange, reply.routing_key, reply.body, reply.properties)
