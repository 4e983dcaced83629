"""The operator's client through the broker: reads on flow45.read, changes on flow45.in.TEAM, as
the broker user of the URL alone (no settings, no database). The bridge answers for that user's
team; the ledger's actor is that user.

Each thread that uses it gets a broker connection of its own (a pika connection is not to be
shared between threads): the dashboard reads from its UI thread and from its ledger feed's.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import threading
from pathlib import Path
from typing import Any, Callable, Sequence

from pika.exceptions import AMQPError

from bridge.failures import describe_amqp_error, open_blocking
from bridge.rpc import BridgeRefused, ExchangeRefused, Rpc
from flow45 import messages as m
from flow45 import names
from flow45.client.base import RUNS_PAGE, Client, RunFilter, ValidatedTeam
from flow45.clock import iso, to_utc
from flow45.errors import Flow45Error, NotAllowed, NotFound
from flow45.outage import Backoff
from flow45.store.specs import VersionSpec, spec_from_document
from flow45.views import (
    BackfillPlan,
    DeployReport, EventView, InboxItem, InstanceView, RunInstances, RunView, Triggered, UndoPlan, WorkflowStats,
    WorkflowVersions, WorkflowView,
)

log = logging.getLogger("flow45.client")

_CODES = {"not_found": NotFound, "not_allowed": NotAllowed}


class RemoteClient(Client):
    def __init__(self, url: str, timeout: float = 30.0, team: str | None = None):
        """`team`: the URL's user's team, when the operator says it (FLOW45_TEAM): even the first read
        goes to that team's own exchange, never to the shared one, which every team's operators may
        write to and one team's flood of reads could hold up."""
        self.url = url
        self.timeout = timeout
        self._identity: dict | None = None
        self._told_team = team
        self._team_reads = True  # False: the broker refused the team's read exchange; the shared one serves
        self._run_instances_read = True  # False: the bridge is older than `run_instances`; each run is read whole
        self._mine = threading.local()

    @property
    def rpc(self) -> Rpc:
        """This thread's connection to the broker."""
        rpc = getattr(self._mine, "rpc", None)
        if rpc is None:
            rpc = self._mine.rpc = Rpc(self.url, self.timeout)
        return rpc

    # ---- who we are ------------------------------------------------------------------------

    def _whoami(self) -> dict:
        if self._identity is None:
            self._identity = self._read({"type": "whoami"})
        return self._identity

    @property
    def team(self) -> str:  # type: ignore[override]
        return self._whoami()["team"]

    @property
    def actor(self) -> str:  # type: ignore[override]
        return self._whoami()["user"]

    def _other_team(self, asked: str | None) -> bool:
        return bool(asked and asked != self.team)

    # ---- the wire ----------------------------------------------------------------------------

    def _read(self, message: dict) -> Any:
        """To the team's own read exchange once the team is known (told, or from the first `whoami`,
        which goes to the shared one); to the shared one for good if the broker refuses the team's (an
        installation whose broker was set up before each team read apart)."""
        known = self._identity["team"] if self._identity is not None else self._told_team
        team = known if self._team_reads else None
        if team is None:
            return self._answered(self.rpc.read, message)
        try:
            return self._answered(lambda msg: self.rpc.read(msg, team), message)
        except ExchangeRefused as exc:
            if self._identity is None:  # told, not yet confirmed: the shared exchange says whose user this is
                log.warning("the broker refuses this user's reads to team %s (%s): is FLOW45_TEAM right?",
                            team, exc.message)
                self._told_team = None
            else:
                log.warning("reads go to %s, not the team's own exchange: %s (run `flow45 bridge setup-broker`)",
                            names.READ_EXCHANGE, exc.message)
                self._team_reads = False
            return self._answered(self.rpc.read, message)

    def _change(self, message: dict) -> Any:
        return self._answered(lambda msg: self.rpc.change(self.team, msg), message)

    @staticmethod
    def _answered(send, message: dict) -> Any:
        try:
            return send(message)
        except BridgeRefused as exc:  # as the local client raises it, so callers need not care which
            error = _CODES.get(exc.code, Flow45Error)(exc.message)
            error.code = exc.code
            raise error from None

    # ---- reads -------------------------------------------------------------------------------

    def workflows(self, team: str | None = None) -> list[WorkflowView]:
        if self._other_team(team):
            return []
        return [WorkflowView.from_json(w) for w in self._read({"type": "workflows"})["workflows"]]

    def runs(self, where: RunFilter = RunFilter(), *, before: int | None = None, limit: int = RUNS_PAGE,
             ids: Sequence[int] | None = None) -> list[RunView]:
        if self._other_team(where.team) or (ids is not None and not ids):
            return []
        return self._run_pages({"type": "runs"}, where, before, limit, ids, RunView.from_json)

    def run_instances(self, where: RunFilter = RunFilter(), *, task: str | None = None, state: str | None = None,
                      before: int | None = None, limit: int = RUNS_PAGE,
                      ids: Sequence[int] | None = None) -> list[RunInstances]:
        if self._other_team(where.team) or (ids is not None and not ids):
            return []
        if self._run_instances_read:
            try:
                return self._run_pages({"type": "run_instances", "task": task, "state": state}, where, before, limit,
                                       ids, lambda r: self._whole_if_cut(RunInstances.from_json(r), task, state))
            except Flow45Error as exc:
                if not (exc.code == "invalid_message" and "unknown read 'run_instances'" in exc.message):
                    raise
                log.warning("the bridge does not know the `run_instances` read (%s): each run is read whole",
                            exc.message)
                self._run_instances_read = False
        return super().run_instances(where, task=task, state=state, before=before, limit=limit, ids=ids)

    def _run_pages(self, asked: dict, where: RunFilter, before: int | None, limit: int, ids: Sequence[int] | None,
                   row: Callable[[dict], Any]) -> list:
        """What a `runs` or `run_instances` read (`asked`: its type and its own fields) answers for the runs
        `where` chooses, newest first, at most `limit`, each row made by `row`: in pages of at most MAX_PAGE,
        each after the last one's oldest run, and at most a page of `ids` a read."""
        if ids is not None and len(ids) > m.MAX_PAGE:
            wanted = sorted(set(ids), reverse=True)
            found = [run for n in range(0, len(wanted), m.MAX_PAGE)
                     for run in self._run_pages(asked, where, before, limit, wanted[n:n + m.MAX_PAGE], row)]
            return found[:limit]
        found: list = []
        while len(found) < limit:
            page = min(limit - len(found), m.MAX_PAGE)
            message = {**asked, **_choosing(where), "before": before, "limit": page}
            if ids is not None:
                message["ids"] = list(ids)
            answer = self._read(message)
            rows = answer["runs"]
            found.extend(row(r) for r in rows)
            if not rows or (len(rows) < page and not answer.get("more")):  # more: cut short to fit a message
                break
            before = rows[-1]["id"]
        return found

    def _whole_if_cut(self, run: RunInstances, task: str | None, state: str | None) -> RunInstances:
        """`run` as answered, or read whole when its instances did not fit one answer."""
        return RunInstances.of(self.run(run.id), task, state) if run.instances_more else run

    def run(self, run_id: int, *, attempts: bool = False) -> RunView:
        return self._whole_run({"type": "run", "run": run_id, "attempts": attempts})

    def _whole_run(self, message: dict) -> RunView:
        return RunView.from_json({**self._in_parts(message, "instances"), "instances_more": False})

    def _in_parts(self, message: dict, parts: str) -> dict:
        """A read whose list `parts` (a run's instances, an instance's attempts) may take several
        answers to fit each in a message. A live run's parts are read moments apart: each is as it was
        when its answer was read."""
        found = self._read(message)
        while found.get(f"{parts}_more"):
            rest = self._read({**message, f"{parts}_from": len(found[parts])})
            if not rest[parts]:
                break
            found[parts] += rest[parts]
            found[f"{parts}_more"] = rest.get(f"{parts}_more", False)
        return found

    def run_as_of(self, run_id: int, *, event: int | None = None, at: dt.datetime | None = None) -> RunView:
        message: dict[str, Any] = {"type": "run", "run": run_id}
        if event is not None:
            message["as_of"] = event
        if at is not None:
            message["as_of_time"] = iso(to_utc(at))
        return self._whole_run(message)

    def stats(self, team: str, workflow: str, runs: int = 50) -> WorkflowStats:
        if self._other_team(team):
            raise NotFound(f"workflow {team}/{workflow} is not deployed")
        return WorkflowStats.from_json(self._read({"type": "stats", "workflow": workflow, "runs": runs}))

    def versions(self, team: str, workflow: str, limit: int = 20, since: int | None = None) -> WorkflowVersions:
        if self._other_team(team):
            raise NotFound(f"workflow {team}/{workflow} is not deployed")
        read = {"type": "versions", "workflow": workflow, "limit": limit, **({"since": since} if since else {})}
        return WorkflowVersions.from_json(self._read(read))

    def run_row(self, run_id: int) -> RunView | None:
        found = self.runs(ids=[run_id], limit=1)  # not before=run_id + 1: past the largest id
        return found[0] if found else None

    def status_counts(self, where: RunFilter = RunFilter()) -> dict[str, int]:
        if self._other_team(where.team):
            return {}
        return self._read({"type": "counts", "workflow": where.workflow, "text": where.text})["counts"]

    def instance(self, instance_id: int) -> InstanceView:
        message = {"type": "instance", "instance": instance_id}
        return InstanceView.from_json({**self._in_parts(message, "attempts"), "attempts_more": False})

    def instance_ids(self, run_id: int, tasks: list[str]) -> dict[str, int]:
        return {i.task: i.id for i in self.run(run_id).instances if i.task in tasks}

    def events(self, after: int = 0, *, team: str | None = None, run: int | None = None,
               instance: int | None = None, limit: int = 200, since: dt.datetime | None = None,
               until: dt.datetime | None = None) -> list[EventView]:
        if self._other_team(team):
            return []
        found: list[EventView] = []
        while len(found) < limit:
            page = min(limit - len(found), m.MAX_PAGE)
            answer = self._read({"type": "events", "after": after, "run": run, "instance": instance, "limit": page,
                                 **_window(since, until)})
            rows = answer["events"]
            found.extend(EventView.from_json(e) for e in rows)
            if not rows or (len(rows) < page and not answer.get("more")):
                break
            after = rows[-1]["id"]
        return found

    def tail_events(self, *, team: str | None = None, run: int | None = None, instance: int | None = None,
                    n: int = 200, before: int | None = None, since: dt.datetime | None = None,
                    until: dt.datetime | None = None) -> list[EventView]:
        if self._other_team(team):
            return []
        found: list[dict] = []
        while len(found) < n:  # pages from the end backwards, each the one before
            page = min(n - len(found), m.MAX_PAGE)
            answer = self._read({"type": "events", "run": run, "instance": instance, "newest": True, "limit": page,
                                 **({"before": before} if before else {}), **_window(since, until)})
            rows = answer["events"]
            found[:0] = rows
            if not rows or (len(rows) < page and not answer.get("more")):
                break
            before = rows[0]["id"]
        return [EventView.from_json(e) for e in found]

    def latest_event_id(self) -> int:
        newest = self.tail_events(n=1)
        return newest[-1].id if newest else 0

    def human_inbox(self, team: str | None = None, limit: int = 500, *, show: str = "all") -> list[InboxItem]:
        if self._other_team(team):
            return []
        found: dict[int, InboxItem] = {}  # by instance: a task read twice as the inbox moves comes once
        given = 0
        while given < limit:  # pages of at most MAX_PAGE, each after the tasks the ones before gave
            page = min(limit - given, m.MAX_PAGE)
            message = {"type": "inbox", "show": show, "limit": page}
            if given:  # left out otherwise: a bridge from before it refuses unknown keys
                message["tasks_from"] = given
            answer = self._read(message)
            tasks = answer["tasks"]
            for task in tasks:
                item = InboxItem.from_json(task)
                found.setdefault(item.instance.id, item)
            given += len(tasks)
            if not tasks or (len(tasks) < page and not answer.get("more")):  # more: cut short to fit a message
                break
        return list(found.values())

    def run_spec(self, run_id: int) -> VersionSpec:
        return self._spec({"type": "spec", "run": run_id})

    def workflow_spec(self, team: str, workflow: str) -> VersionSpec:
        if self._other_team(team):
            raise NotFound(f"workflow {team}/{workflow} is not deployed")
        return self._spec({"type": "spec", "workflow": workflow})

    def _spec(self, message: dict) -> VersionSpec:
        found = self._read(message)
        return spec_from_document(found["id"], found["team"], found["workflow"], found["version"], found["document"])

    def schema(self, team: str | None = None) -> dict:
        return self._read({"type": "schema"})

    # ---- actions: the operator messages, as the URL's user -------------------------------------

    def trigger(self, team: str, workflow: str, params: Any = None, logical_time: dt.datetime | None = None,
                priority: int | None = None, key: str | None = None) -> Triggered:
        if self._other_team(team):
            raise NotFound(f"workflow {team}/{workflow} is not deployed")
        message = {"type": "trigger", "workflow": workflow, "params": params}
        if logical_time is not None:
            message["logical_time"] = iso(to_utc(logical_time))
        if priority is not None:
            message["priority"] = priority
        if key is not None:
            message["key"] = key
        return Triggered.from_json(self._change(message))

    def pause(self, team: str, workflow: str, triggers: str = "queue", reason: str | None = None) -> None:
        if self._other_team(team):
            raise NotFound(f"workflow {team}/{workflow} is not deployed")
        self._change({"type": "pause", "workflow": workflow, "triggers": triggers, "reason": reason})

    def resume(self, team: str, workflow: str) -> None:
        if self._other_team(team):
            raise NotFound(f"workflow {team}/{workflow} is not deployed")
        self._change({"type": "resume", "workflow": workflow})

    def backfill(self, team: str, workflow: str, start: dt.datetime, end: dt.datetime, *,
                 dry_run: bool = False) -> BackfillPlan:
        if self._other_team(team):
            raise NotFound(f"workflow {team}/{workflow} is not deployed")
        message = {"type": "backfill", "workflow": workflow, "start": iso(to_utc(start)), "end": iso(to_utc(end)),
                   "dry_run": dry_run}
        return BackfillPlan.from_json(self._change(message))

    def undo(self, instance_id: int, reason: str, *, hold: bool = False, dry_run: bool = False,
             cancel_connected: bool = False) -> UndoPlan:
        # A dry run before the reason is typed (the dashboard's) still needs one on the wire.
        reason = reason or ("(not given yet)" if dry_run else reason)
        message = {"type": "undo", "instance": instance_id, "reason": reason, "hold": hold, "dry_run": dry_run,
                   "cancel_connected": cancel_connected}
        return UndoPlan.from_json(self._change(message))

    def skip(self, instance_id: int, reason: str) -> None:
        self._change({"type": "skip", "instance": instance_id, "reason": reason})

    def retry(self, instance_id: int) -> None:
        self._change({"type": "retry", "instance": instance_id})

    def hold(self, instance_id: int, reason: str | None = None) -> None:
        self._change({"type": "hold", "instance": instance_id, "reason": reason})

    def release(self, instance_id: int) -> str:
        return self._change({"type": "release", "instance": instance_id})["state"]

    def cancel(self, run_id: int, reason: str | None = None) -> None:
        self._change({"type": "cancel", "run": run_id, "reason": reason})

    def submit(self, instance_id: int, output: Any, comment: str | None = None) -> str:
        return self._change({"type": "submit", "instance": instance_id, "output": output, "comment": comment})["state"]

    def take(self, instance_id: int, reason: str | None = None, for_user: str | None = None) -> str | None:
        message = {"type": "take", "instance": instance_id, "reason": reason}
        if for_user is not None:  # left out otherwise: a bridge from before assignments refuses unknown keys
            message["user"] = for_user
        return self._change(message)["previous"]

    def note(self, run_id: int, text: str, task: str | None = None) -> None:
        self._change({"type": "note", "run": run_id, "text": text, **({"task": task} if task else {})})

    def hand_back(self, instance_id: int) -> None:
        self._change({"type": "hand_back", "instance": instance_id})

    def set_output(self, instance_id: int, output: Any, reason: str) -> str:
        message = {"type": "set_output", "instance": instance_id, "output": output, "reason": reason}
        return self._change(message)["state"]

    def callback_complete(self, key: str, output: Any) -> tuple[int, str]:
        done = self._change({"type": "callback_submit", "key": key, "output": output})
        return done["instance"], done["state"]

    def callback_fail(self, key: str, error: str, retryable: bool = True) -> tuple[int, str]:
        done = self._change({"type": "callback_fail", "key": key, "error": error, "retryable": retryable})
        return done["instance"], done["state"]

    def deploy(self, path: Path, prune: bool = False, dry_run: bool = False) -> DeployReport:
        result = self._change({"type": "deploy", "files": _yaml_files(path), "prune": prune, "dry_run": dry_run})
        return DeployReport.from_json(result)

    def validate(self, path: Path) -> list[ValidatedTeam]:
        result = self._change({"type": "validate", "files": _yaml_files(path)})
        from flow45.config import load_config

        functions = {t.team: len(t.signatures()) for t in load_config(path)}  # the same files, read here too
        return [ValidatedTeam(t["team"], t["workflows"], t["types"], functions.get(t["team"], 0)) for t in result["teams"]]

    # ---- the team's event stream ---------------------------------------------------------------

    def subscribe(self, wake: Callable[[], None], deliver: Callable[[EventView], None],
                  settle: Callable[[int], None] | None = None) -> Callable[[], None]:
        stop = threading.Event()
        threading.Thread(target=self._follow, args=(wake, deliver, settle, stop), name="flow45-event-stream",
                         daemon=True).start()
        return stop.set

    def _follow(self, wake: Callable[[], None], deliver: Callable[[EventView], None],
                settle: Callable[[int], None] | None, stop: threading.Event) -> None:
        """A queue of our own on flow45.events, bound to our team's key (the only one the broker lets
        us bind). Every event of its pages is handed to `deliver`, then the page's settled mark to
        `settle`; each reconnection, a page that cannot be read, the first page from another publisher
        (after a bridge's restart or failover: what it did not stream is in the ledger) and a page
        number skipped (pages our capped queue dropped while we lagged) wake the follower to read by id."""
        backoff = Backoff(stop, cap=10.0)
        team = self.team
        self.close()  # the connection this thread may have opened to ask who we are: the stream has its own
        while not stop.is_set():
            try:
                connection = open_blocking(self.url)
                try:
                    channel = connection.channel()
                    queue = channel.queue_declare("", exclusive=True, auto_delete=True).method.queue
                    channel.queue_bind(queue, names.EVENTS_EXCHANGE, team)
                    backoff.reset()
                    publisher, page_expected = None, None
                    wake()  # what happened while we were not bound is read by ledger id
                    for method, properties, body in channel.consume(queue, auto_ack=True, inactivity_timeout=0.5):
                        if stop.is_set():
                            break
                        if method is None:
                            continue
                        headers = properties.headers or {}
                        number = headers.get(names.EVENT_PAGE_HEADER)
                        if properties.app_id != publisher:
                            if publisher is not None:
                                wake()
                            publisher, page_expected = properties.app_id, None
                        elif page_expected is not None and number != page_expected:
                            wake()
                        page_expected = number + 1 if isinstance(number, int) else None
                        page = _streamed_page(body)
                        if page is None:
                            wake()
                        for event in page or ():
                            deliver(event)
                        settled = headers.get(names.EVENT_SETTLED_HEADER)
                        if settle is not None and page is not None and type(settled) is int:
                            settle(settled)
                finally:
                    if connection.is_open:
                        connection.close()
            except (AMQPError, OSError) as exc:
                log.warning("event stream: %s", describe_amqp_error(exc, self.url) or exc)
            except Flow45Error as exc:
                log.warning("event stream: %s", exc.message)
            if not stop.is_set():
                backoff.wait()

    def close(self) -> None:
        rpc = getattr(self._mine, "rpc", None)
        if rpc is not None:
            self._mine.rpc = None
            rpc.close()


def _streamed_page(body: bytes) -> list[EventView] | None:
    """The events of a page of the stream; None when it is not one."""
    try:
        return [EventView.from_json(event) for event in json.loads(body)["events"]]
    except (ValueError, TypeError, KeyError):
        return None


def _yaml_files(path: Path) -> dict[str, str]:
    from flow45.config import config_texts

    return {file.name: text for file, text in config_texts(path).items()}


def _choosing(where: RunFilter) -> dict[str, Any]:
    """The filter's fields of a `runs` or `run_instances` read (the team is the sender's)."""
    fields = {"workflow": where.workflow, "status": where.status, "text": where.text,
              "params": dict(where.params) or None, "since": iso(where.since), "until": iso(where.until),
              "version": where.version}
    if where.key is not None:  # left out otherwise: a bridge from before keys refuses unknown keys
        fields["key"] = where.key
    return fields


def _window(since: dt.datetime | None, until: dt.datetime | None) -> dict[str, str]:
    """An events read's times, only those given: a bridge from before they were known still answers the others."""
    return {name: iso(moment) for name, moment in (("since", since), ("until", until)) if moment is not None}
