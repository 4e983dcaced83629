"""Reads larger than a message: a remote operator gets a run of hundreds of instances, a page of runs
with large params and a page of events whole, in as many answers as it takes, each under the
bridge's max_message_bytes, where one answer over it used to be an error and nothing else."""

from __future__ import annotations

import threading

import pytest

from bridge.remote import RemoteClient
from bridge.service import Bridge
from flow45 import store, wire
from flow45.client import LocalClient, RunFilter
from flow45.config import load_config
from flow45.models import TaskInstance
from flow45.settings import use_settings
from tests.bridge.test_team_inboxes import _stop

pytestmark = pytest.mark.integration

CAP = 64 * 1024  # the smallest the settings allow
TASKS = 300  # a run's view is about 500 bytes an instance: 150 KB
UNDONE = 8  # attempts of 12.5 KB outputs: 112 KB


def _deploy(tmp_path) -> None:
    tasks = "\n".join(f"      t{i:03d}: {{function: work, output: Doc}}" for i in range(TASKS))
    path = tmp_path / "large.yaml"
    path.write_text("team: reports\ntypes:\n  Doc: {fields: {uri: string}}\n  Note: {fields: {text: string}}\n"
                    f"workflows:\n  wide:\n    max_active_runs: null\n    tasks:\n{tasks}\n"
                    "  noted:\n    max_active_runs: null\n    params: Note\n    tasks:\n"
                    "      one: {function: work, output: Doc}\n")
    store.deploy(load_config(path), actor="reports-admin")


def _redone(run: int, times: int) -> int:
    """An instance of `run` submitted with a large output and undone `times` times, then submitted
    again: it keeps every attempt."""
    row = TaskInstance.get((TaskInstance.run == run) & (TaskInstance.task == "t000"))
    for n in range(times + 1):
        token = TaskInstance.get_by_id(row.id).token
        grant = store.claim(row.id, token, "w")
        store.submit(grant.instance, grant.token, {"uri": f"s3://bucket/{n}/" + "part/" * 2500})
        if n < times:
            store.undo(row.id, "redo", actor="reports-ops")
    return row.id


def _size(*views) -> int:
    """Bytes of these views as one answer would carry them."""
    return len(wire.dumps([v.to_json() for v in views]))


def test_reads_larger_than_a_message_come_whole_in_parts(bridge_env, tmp_path):
    _stop(bridge_env.bridge, bridge_env.thread)
    capped = bridge_env.settings.model_copy(update={"max_message_bytes": CAP})
    use_settings(capped)  # as one installation's processes read it
    bridge = Bridge(capped, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    _deploy(tmp_path)
    wide = store.trigger("reports", "wide", actor="reports-admin")
    for n in range(100):  # 100 runs of 1.5 KB params: 150 KB in one page
        store.trigger("reports", "noted", {"text": f"{n:04d}" + "x" * 1500}, actor="reports-admin")
    local = LocalClient("reports-ops", team="reports")
    client = RemoteClient(bridge_env.url("reports-ops"), timeout=10)
    try:
        assert bridge.started.wait(20), "the bridge did not start consuming"
        assert _size(local.run(wide)) > CAP
        run = client.run(wide)
        assert [(i.id, i.task, i.state) for i in run.instances] == [
            (i.id, i.task, i.state) for i in local.run(wide).instances]
        assert len(run.instances) == TASKS and not run.instances_more
        as_of = client.run_as_of(wide, event=local.latest_event_id())
        assert [i.task for i in as_of.instances] == [i.task for i in run.instances]

        noted = RunFilter(team="reports", workflow="noted")
        assert _size(*local.runs(noted, limit=100)) > CAP
        assert [(r.id, r.params) for r in client.runs(noted, limit=100)] == [
            (r.id, r.params) for r in local.runs(noted, limit=100)]

        redone = _redone(wide, UNDONE)
        assert _size(local.instance(redone)) > CAP
        instance = client.instance(redone)
        assert [(a.number, a.archived, a.output) for a in instance.attempts] == [
            (a.number, a.archived, a.output) for a in local.instance(redone).attempts]
        assert len(instance.attempts) == UNDONE + 1 and not instance.attempts_more

        assert _size(*local.events(0, limit=500)) > CAP and _size(*local.tail_events(n=500)) > CAP
        events = client.events(0, limit=500)
        assert [e.id for e in events] == [e.id for e in local.events(0, limit=500)] and len(events) == 500
        middle = local.events(0, limit=10_000)[-100].at
        assert [e.id for e in client.events(0, limit=500, since=middle)] == [
            e.id for e in local.events(0, limit=500, since=middle)]
        assert [e.id for e in client.tail_events(n=50, until=middle)] == [
            e.id for e in local.tail_events(n=50, until=middle)]
        total = len(local.events(0, limit=10_000))
        for n in (500, 520, total + 100):  # in as many answers as it takes, each the page before (500 a read)
            expected = [e.id for e in local.tail_events(n=n)]
            assert len(expected) == min(n, total) and [e.id for e in client.tail_events(n=n)] == expected
    finally:
        client.close()
        _stop(bridge, thread)


def test_an_inbox_larger_than_a_message_comes_whole_in_parts(bridge_env, tmp_path):
    """The bridge cut an inbox answer to fit its max_message_bytes and said `more`, but the remote
    client took the cut page for the inbox: of 12 human tasks with 12.5 KB inputs an operator saw 4."""
    _stop(bridge_env.bridge, bridge_env.thread)
    capped = bridge_env.settings.model_copy(update={"max_message_bytes": CAP})
    use_settings(capped)
    bridge = Bridge(capped, batch_size=50)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    path = tmp_path / "desk.yaml"
    path.write_text("team: reports\ntypes:\n  Doc: {fields: {uri: string}}\n  Ok: {fields: {ok: boolean}}\n"
                    "workflows:\n  desk:\n    max_active_runs: null\n    tasks:\n"
                    "      draft: {function: draft, output: Doc}\n"
                    "      decide: {function: decide, output: Ok, human: true, inputs: {doc: draft}}\n")
    store.deploy(load_config(path), actor="reports-admin")
    for n in range(12):
        run = store.trigger("reports", "desk", actor="reports-admin")
        row = TaskInstance.get((TaskInstance.run == run) & (TaskInstance.task == "draft"))
        grant = store.claim(row.id, row.token, "w")
        store.submit(grant.instance, grant.token, {"uri": f"s3://bucket/{n}/" + "part/" * 2500})
    local = LocalClient("reports-ops", team="reports")
    client = RemoteClient(bridge_env.url("reports-ops"), timeout=10)
    try:
        assert bridge.started.wait(20), "the bridge did not start consuming"
        everything = local.human_inbox()
        assert len(everything) == 12 and _size(*everything) > CAP
        assert [(i.instance.id, i.inputs) for i in client.human_inbox()] == [
            (i.instance.id, i.inputs) for i in everything]
        assert [i.instance.id for i in client.human_inbox(limit=7)] == [i.instance.id for i in everything[:7]]
    finally:
        client.close()
        _stop(bridge, thread)
