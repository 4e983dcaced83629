"""The store's figures a scrape reports, on SQLite and on PostgreSQL: live work only, time passed in."""

from __future__ import annotations

import datetime as dt

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from flow45 import store
from flow45.db import connect
from flow45.metrics import StoreCollector
from flow45.models import Outbox
from flow45.store.stats import read_figures
from tests.store.helpers import BLOB, DIAMOND, T0, complete, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

HUMAN = """
    team: desk
    types:
      Ok:
        fields: {ok: boolean}
    workflows:
      review:
        tasks:
          decide: {function: decide, output: Ok, human: true, due: 2h}
"""


def test_live_instances_offers_and_human_tasks_by_team_and_function(tmp_path):
    deploy_text(tmp_path, DIAMOND.replace("max_active_runs: 1", "max_active_runs: 5"))
    deploy_text(tmp_path, HUMAN)
    first = store.trigger("acme", "diamond", actor="ann", now=T0)
    store.trigger("acme", "diamond", actor="ann", now=T0)
    store.trigger("desk", "review", actor="ann", now=T0)
    complete(first, "a", BLOB)  # b and c become available; a has finished and is no longer counted
    figures = read_figures(T0)
    assert figures.instances == {
        ("acme", "fa", "available"): 1, ("acme", "fb", "available"): 1, ("acme", "fc", "available"): 1,
        ("acme", "fb", "pending"): 1, ("acme", "fc", "pending"): 1, ("acme", "fd", "pending"): 2,
        ("desk", "decide", "available"): 1,
    }
    assert figures.offers_waiting == {("acme", "fa"): 1, ("acme", "fb"): 1, ("acme", "fc"): 1}, \
        "a human task is available, but never offered to workers: no offer waits in flow45.tasks.desk.decide"
    assert figures.human_waiting == {"desk": 1} and figures.human_overdue == {}
    assert figures.capped == []
    two_hours_on = read_figures(T0 + dt.timedelta(hours=2))
    assert (two_hours_on.human_waiting, two_hours_on.human_overdue) == ({"desk": 1}, {"desk": 1}), "due at T0 + 2h"


def test_outbox_backlog_and_the_age_of_its_oldest_row(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    complete(run, "a", BLOB, now=T0 + dt.timedelta(seconds=30))
    rows = list(Outbox.select().order_by(Outbox.id))
    assert len(rows) == 3, "a's offer, then b's and c's"
    figures = read_figures(T0 + dt.timedelta(seconds=90))
    assert (figures.outbox_backlog, figures.outbox_oldest_seconds) == (3, 90.0)
    store.outbox.mark_sent([rows[0].id])
    figures = read_figures(T0 + dt.timedelta(seconds=90))
    assert (figures.outbox_backlog, figures.outbox_oldest_seconds) == (2, 60.0)
    store.outbox.mark_sent([r.id for r in rows[1:]])
    assert (read_figures(T0).outbox_backlog, read_figures(T0).outbox_oldest_seconds) == (0, 0.0)


def _scrape(collector) -> dict[str, dict[tuple, float]]:
    registry = CollectorRegistry()
    registry.register(collector)
    found: dict[str, dict[tuple, float]] = {}
    for family in text_string_to_metric_families(generate_latest(registry).decode()):
        for sample in family.samples:
            found.setdefault(sample.name, {})[tuple(sorted(sample.labels.items()))] = sample.value
    return found


def test_a_queue_that_empties_reports_zero_and_a_store_that_fails_reports_down(tmp_path, db_url):
    deploy_text(tmp_path, DIAMOND)
    deploy_text(tmp_path, HUMAN)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    store.trigger("desk", "review", actor="ann", now=T0)
    collector = StoreCollector(clock=lambda: T0)
    queue = (("function", "fa"), ("queue", "flow45.tasks.acme.fa"), ("team", "acme"))
    first = _scrape(collector)
    assert first["flow45_offers_waiting"] == {queue: 1.0}, "the human task waits for a person, not in a queue"
    assert (first["flow45_human_tasks_waiting"], first["flow45_human_tasks_overdue"]) == (
        {(("team", "desk"),): 1.0}, {(("team", "desk"),): 0.0})
    complete(run, "a", BLOB)
    scraped = _scrape(collector)
    assert scraped["flow45_offers_waiting"][queue] == 0.0, "an autoscaler must read 0, not nothing"
    assert scraped["flow45_store_up"] == {(): 1.0}
    connect("postgresql://nobody:pw@127.0.0.1:1/flow45")  # a store that does not answer
    try:
        assert _scrape(collector) == {"flow45_store_up": {(): 0.0}}, "the scrape says so, and does not fail"
    finally:
        connect(db_url)


def test_a_metrics_port_in_use_is_refused_naming_it(db_url):
    import socket

    from flow45.errors import Flow45Error
    from flow45.metrics import serve_metrics

    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    port = taken.getsockname()[1]
    try:
        with pytest.raises(Flow45Error, match=f"metrics: cannot listen on 127.0.0.1:{port}: Address already in use"):
            serve_metrics(port, "127.0.0.1", db_url)
    finally:
        taken.close()


def test_a_store_that_hangs_is_reported_down_within_the_wait_and_holds_one_thread(db_url):
    """A database stopped (SIGSTOP) or cut off by a network: its port takes the connection and never
    answers. The scrape must still answer, in time for Prometheus, and scrapes meanwhile must not each
    leave a thread waiting on it."""
    import socket
    import threading

    silent = socket.socket()
    silent.bind(("127.0.0.1", 0))
    silent.listen()  # never accepted, never answered
    collector = StoreCollector(clock=lambda: T0, wait=0.5)
    connect(f"postgresql://nobody:pw@127.0.0.1:{silent.getsockname()[1]}/flow45")
    try:
        threads = threading.active_count()
        for _ in range(3):
            assert _scrape(collector) == {"flow45_store_up": {(): 0.0}}, "said, not waited for"
        assert threading.active_count() <= threads + 1, "one read waits on the store, not one per scrape"
    finally:
        silent.close()
        connect(db_url)
