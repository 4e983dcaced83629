"""What the runs screen reads when events come (`tui.data.changed_runs`): the runs the events touched,
and the counts per status only when a run's status moved."""

from __future__ import annotations

from flow45 import store
from flow45.client import RunFilter
from flow45.client.local import LocalClient
from tests.tui.conftest import T0, instance
from tui import data


class Counting:
    """A client whose reads are counted by name."""

    def __init__(self, client):
        self.client, self.calls = client, []

    def __getattr__(self, name):
        found = getattr(self.client, name)

        def counted(*args, **kwargs):
            self.calls.append(name)
            return found(*args, **kwargs)
        return counted


def test_instance_moves_read_the_touched_run_alone_and_a_run_that_is_cancelled_reads_the_counts_too(tui_db):
    client = Counting(LocalClient("admin"))
    run = store.trigger("reports", "nightly_sales", None, actor="cron", now=T0)
    loaded = frozenset({run})
    after = client.latest_event_id()

    row = instance(run, "load_emea")
    store.claim(row.id, row.token, "w1", now=T0)
    events = client.events(after)
    after = events[-1].id
    client.calls.clear()
    rows, counts = data.changed_runs(client, RunFilter(), loaded, events)
    assert [r.id for r in rows] == [run] and rows[0].counts.get("running") == 1
    assert counts is None and client.calls == ["runs"]  # no run moved: the counts stand

    store.cancel_run(run, actor="ann", now=T0)
    events = client.events(after)
    client.calls.clear()
    rows, counts = data.changed_runs(client, RunFilter(), loaded, events)
    assert rows[0].status == "cancelled" and counts == {"cancelled": 1}
    assert client.calls == ["runs", "status_counts"]


def test_a_small_runs_page_reads_the_whole_run_once_and_a_large_ones_the_changed_instances():
    client = Counting(LocalClient("admin"))
    run = store.trigger("reports", "nightly_sales", None, actor="cron", now=T0)
    size = len(store.get_run(run).instances)
    after = client.latest_event_id()
    row = instance(run, "load_emea")
    store.claim(row.id, row.token, "w1", now=T0)
    events = client.events(after)

    client.calls.clear()
    view, instances = data.changed_instances(client, run, events, size)
    assert client.calls == ["run"] and view.id == run and not view.instances  # one read for the page
    assert {i.id: i.state for i in instances}[row.id] == "running" and len(instances) == size

    client.calls.clear()
    view, instances = data.changed_instances(client, run, events, data.SMALL_RUN + 1)
    assert client.calls == ["run_row", "instance"] and view.id == run
    assert [(i.id, i.state) for i in instances] == [(row.id, "running")]

    assert data.changed_instances(client, run + 1, events, size) is None  # another run's events: no read
