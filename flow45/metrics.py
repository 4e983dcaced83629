"""Prometheus metrics of the long-running processes (`serve`, `scheduler`, `bridge run`, `notify`).

Counters and histograms are updated where things happen (a batch applied, a refusal, a reconnect).
Figures that need the store are read only when a scraper asks, by `StoreCollector`, with the bounded
queries of `flow45.store.stats`, on a thread and database connection of their own."""

from __future__ import annotations

import logging
import threading
from concurrent import futures
from typing import Callable, Iterable

from prometheus_client import REGISTRY, CollectorRegistry, Counter, Gauge, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from flow45 import names
from flow45.clock import utcnow
from flow45.db import connect, describe_db_error, drop_connection
from flow45.errors import Flow45Error

log = logging.getLogger("flow45.metrics")

_SECONDS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

HOP_LATENCY = Histogram(
    "flow45_hop_latency_seconds",
    "From the bridge receiving the earliest message of a batch to the broker confirming an offer that "
    "batch wrote (a submit applied to its downstream offer published), or to the answer of a submit that "
    "carries a downstream attempt claimed for its worker (eager dispatch)", buckets=_SECONDS)
BATCH_SIZE = Histogram(
    "flow45_batch_size", "Inbox messages applied in one batch (its _count is the number of batches)",
    buckets=(1, 2, 5, 10, 20, 50, 100, 200, 500, 1000))
BATCH_PHASES = Histogram(
    "flow45_batch_phase_seconds", "Where a batch of worker messages spends its time in the bridge: wait (its "
    "earliest message, from receipt until a committer takes the batch), apply (the locking read and the "
    "lifecycle rules), commit (the writes and COMMIT: one round trip with the disk flush), answer (from "
    "the commit to the answers published and the deliveries acked)", ["phase"],
    buckets=(0.00025, 0.0005, 0.001, 0.002, 0.004, 0.008, 0.016, 0.032, 0.064, 0.128, 0.256, 0.512, 1.0, 2.5))
KEPT_RUNS = Counter(
    "flow45_kept_runs_batches", "bridge: batches of worker messages by how their runs were had: kept (from the "
    "bridge's last batches, checked with the commit: one round trip), read (locked and read first: two), changed "
    "(kept, but changed since: applied again, read)", ["outcome"])
INBOX_LAG = Histogram(
    "flow45_inbox_lag_seconds", "From the bridge receiving an inbox message to its batch being applied",
    buckets=_SECONDS)
INBOX_WAITING = Gauge("flow45_inbox_waiting_messages", "Inbox messages received by the bridge, not yet applied")
REFUSALS = Counter("flow45_refusals", "Inbox messages refused, by the refusal's code", ["code"])
RECONNECTS = Counter("flow45_reconnects", "Connections to the broker or the database opened again after a loss",
                     ["part", "server"])
SCHEDULER_ACTIONS = Counter("flow45_scheduler_actions", "What the scheduler's ticks did", ["action"])
NOTIFY_POSTS = Counter("flow45_notify_posts", "notify: webhook posts by outcome: sent (taken), failed (refused "
                       "for good, not posted again), retried (a try failed; posted again after a wait)", ["outcome"])
NOTIFY_POSITION = Gauge("flow45_notify_position", "notify: the ledger event id up to which every event of the "
                        "team is handled", ["team"])
NOTIFY_LAG = Gauge("flow45_notify_lag_seconds", "notify: age of the team's oldest event read and not yet handled "
                   "(0 when caught up)", ["team"])


SCRAPE_WAIT = 5.0  # seconds a scrape waits for the store's figures (Prometheus gives up on a scrape at 10)


class StoreCollector(Collector):
    """Gauges read from the store at scrape time. A query that fails, or that the store does not
    answer within `wait` seconds, makes `flow45_store_up` 0 and leaves the others out, rather than
    failing the scrape."""

    def __init__(self, clock: Callable = utcnow, wait: float = SCRAPE_WAIT):
        self.clock = clock
        self.wait = wait
        self._seen_queues: set[tuple[str, str]] = set()  # reported 0 once empty: scale-to-zero needs a 0
        self._lock = threading.Lock()
        self._reading: futures.Future | None = None

    def describe(self) -> Iterable[Metric]:
        return []  # read only when scraped, never at registration

    def collect(self) -> Iterable[Metric]:
        up = GaugeMetricFamily("flow45_store_up", "1 when the store answered this scrape's queries")
        try:
            figures = self._figures()
        except Exception as exc:  # noqa: BLE001 - a scrape reports the store down, it does not fail
            log.warning("metrics: cannot read the store: %s", describe_db_error(exc) or f"{type(exc).__name__}: {exc}")
            up.add_metric([], 0)
            yield up
            return
        up.add_metric([], 1)
        yield up
        instances = GaugeMetricFamily(
            "flow45_instances", "Task instances in a live state (pending, queued, available, running, "
            "retry_wait, waiting, held), by team, function and state", labels=["team", "function", "state"])
        for (team, function, state), count in sorted(figures.instances.items()):
            instances.add_metric([team, function, state], count)
        yield instances
        offers = GaugeMetricFamily(
            "flow45_offers_waiting", "Instances available to workers, by function queue (what an autoscaler reads)",
            labels=["queue", "team", "function"])
        waiting = figures.offers_waiting
        self._seen_queues |= set(waiting)
        for team, function in sorted(self._seen_queues):
            offers.add_metric([names.offer_queue(team, function), team, function], waiting.get((team, function), 0))
        yield offers
        human = GaugeMetricFamily("flow45_human_tasks_waiting", "Human tasks available to decide, by team",
                                  labels=["team"])
        late = GaugeMetricFamily("flow45_human_tasks_overdue", "Human tasks available to decide past their due "
                                 "time, by team", labels=["team"])
        for team, count in sorted(figures.human_waiting.items()):
            human.add_metric([team], count)
            late.add_metric([team], figures.human_overdue.get(team, 0))
        yield human
        yield late
        yield GaugeMetricFamily("flow45_outbox_backlog", "Outbox rows not yet confirmed by the broker",
                                value=figures.outbox_backlog)
        yield GaugeMetricFamily("flow45_outbox_oldest_age_seconds", "Age of the oldest outbox row not yet confirmed",
                                value=figures.outbox_oldest_seconds)
        capped = GaugeMetricFamily("flow45_store_figures_capped", "1 when a figure reached the rows a scrape reads "
                                   "(it is then a lower bound)", labels=["figure"])
        for name in ("instances", "outbox"):
            capped.add_metric([name], 1 if name in figures.capped else 0)
        yield capped

    def _figures(self):
        """The store's figures, read on a thread of its own: a store that hangs (stopped, or cut off by
        the network) holds that thread, not the scrape. While it does, the next scrapes wait for the
        same read rather than each starting one."""
        with self._lock:
            if self._reading is None or self._reading.done():
                self._reading = futures.Future()
                threading.Thread(target=self._read, args=(self._reading,), name="flow45-metrics-store",
                                 daemon=True).start()
            reading = self._reading
        try:
            return reading.result(timeout=self.wait)
        except futures.TimeoutError:
            raise TimeoutError(f"the store did not answer within {self.wait:g}s") from None

    def _read(self, reading: futures.Future) -> None:
        from flow45.store.stats import read_figures

        try:
            reading.set_result(read_figures(self.clock()))
        except Exception as exc:  # noqa: BLE001 - told by the scrape that waits for it
            reading.set_exception(exc)
        finally:
            drop_connection()  # a thread of its own: no connection left behind it


_serving: dict[int, object] = {}


def serve_metrics(port: int, address: str, database_url: str | None, registry: CollectorRegistry = REGISTRY) -> None:
    """Answer GET /metrics on `address:port` from a thread of its own, with the figures of the store
    at `database_url` (bound here, as the process's parts bind it; none: the process's own figures only,
    as for `notify` through the broker)."""
    if port in _serving:
        return
    if database_url:
        connect(database_url)
    try:
        _serving[port] = start_http_server(port, address, registry=registry)
    except OSError as exc:
        raise Flow45Error(f"metrics: cannot listen on {address}:{port}: {exc.strerror or exc}") from None
    if database_url:
        registry.register(StoreCollector())
    log.info("metrics on http://%s:%d/metrics", address, port)
