"""The machine's own ceilings, measured beside Flow45 in the same sitting: what a bare PostgreSQL
commit costs, what bare pika publishes and consumes, and the broker-only round trip of a hop."""

from __future__ import annotations

import multiprocessing
import statistics
import threading
import time
from dataclasses import dataclass

import pika
import psycopg2

ROUND_TRIP_IN, ROUND_TRIP_OUT = "bench.round_trip.in", "bench.round_trip.out"


@dataclass
class Commits:
    per_second: float
    p50_ms: float


class BareCommit:
    """One connection that inserts a row and commits: the least a commit can cost (fsync on)."""

    def __init__(self, url: str) -> None:
        self.connection = psycopg2.connect(url)
        self.cursor = self.connection.cursor()
        self.cursor.execute("CREATE TABLE IF NOT EXISTS bench_commit (id serial primary key, at timestamp)")
        self.connection.commit()

    def __call__(self) -> float:
        """Insert and commit; returns the seconds it took."""
        started = time.monotonic()
        self.cursor.execute("INSERT INTO bench_commit (at) VALUES (now())")
        self.connection.commit()
        return time.monotonic() - started

    def close(self) -> None:
        self.connection.close()


def postgres_commits(url: str, seconds: float = 3.0) -> Commits:
    """One connection inserting a row and committing, over and over (fsync on)."""
    commit = BareCommit(url)
    each: list[float] = []
    started = time.monotonic()
    while time.monotonic() < started + seconds:
        each.append(commit())
    commit.close()
    return Commits(len(each) / (time.monotonic() - started), statistics.median(each) * 1000)


def _publish_with_confirms(amqp_url: str, messages: int) -> float:
    """Persistent messages published on pika's asynchronous connection, confirms tracked by delivery
    tag (as the relay does): messages per second until the last one is confirmed."""
    state = {"acked": 0, "started": 0.0, "done": 0.0}

    def on_open(connection):
        connection.channel(on_open_callback=on_channel)

    def on_channel(channel):
        def on_declared(_frame):
            channel.confirm_delivery(on_confirm)
            properties = pika.BasicProperties(delivery_mode=2)
            state["started"] = time.monotonic()
            for _ in range(messages):
                channel.basic_publish("", "bench.ceiling", b'{"noop": true}', properties)

        def on_confirm(frame):
            state["acked"] = frame.method.delivery_tag
            if state["acked"] >= messages:
                state["done"] = time.monotonic()
                channel.connection.close()

        channel.queue_declare("bench.ceiling", durable=True, callback=on_declared)

    connection = pika.SelectConnection(pika.URLParameters(amqp_url), on_open_callback=on_open,
                                       on_close_callback=lambda c, _r: c.ioloop.stop())
    connection.ioloop.start()
    return messages / (state["done"] - state["started"])


def pika_rates(amqp_url: str, messages: int = 20000) -> tuple[float, float]:
    """(published/s with publisher confirms, consumed/s with manual acks), persistent messages."""
    published = _publish_with_confirms(amqp_url, messages)
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.basic_qos(prefetch_count=1000)
    received = 0
    started = time.monotonic()
    for method, _props, _body in channel.consume("bench.ceiling", inactivity_timeout=2):
        if method is None:
            break
        received += 1
        if received % 100 == 0 or received == messages:
            channel.basic_ack(method.delivery_tag, multiple=True)
        if received == messages:
            break
    consumed = received / (time.monotonic() - started)
    connection.close()
    return published, consumed


def paced_commits(url: str, rate: float, seconds: float = 3.0) -> float:
    """A bare commit's latency (p50, ms) at `rate` commits per second on one connection, idle between:
    on this machine a process woken from idle commits several times slower than one committing
    back to back, and a hop at a moderate rate wakes from idle too."""
    commit = BareCommit(url)
    each: list[float] = []
    next_at = time.monotonic()
    for _ in range(int(rate * seconds)):
        each.append(commit())
        next_at += 1.0 / rate
        time.sleep(max(0.0, next_at - time.monotonic()))
    commit.close()
    return statistics.median(each) * 1000


def _echo(amqp_url: str, ready, commit_url: str | None = None) -> None:
    """The bridge without the database: consume the quorum inbox, publish each message on to the
    offer queue (persistent, mandatory, confirms tracked but not waited for), ack the inbox. With
    `commit_url`, the bridge with the least a database can cost: a row inserted and committed before
    each message is passed on, its latency (ms) appended to the message."""
    commit = BareCommit(commit_url) if commit_url else None

    def on_open(connection):
        connection.channel(on_open_callback=on_publish_channel)

    def on_publish_channel(publish):
        publish.confirm_delivery(lambda _frame: None)
        publish.connection.channel(on_open_callback=lambda consume: on_consume_channel(publish, consume))

    def on_consume_channel(publish, consume):
        def on_message(_channel, method, _properties, body):
            if commit is not None:
                body += f" {commit() * 1000:.3f}".encode()
            publish.basic_publish("", ROUND_TRIP_OUT, body, pika.BasicProperties(delivery_mode=2), mandatory=True)
            consume.basic_ack(method.delivery_tag)

        consume.basic_qos(prefetch_count=1000)
        consume.basic_consume(ROUND_TRIP_IN, on_message)
        ready.set()

    connection = pika.SelectConnection(pika.URLParameters(amqp_url), on_open_callback=on_open)
    connection.ioloop.start()


def broker_round_trip(amqp_url: str, rate: float, seconds: float = 5.0, commit_url: str | None = None) -> list[float]:
    """A hop with no database: messages published persistent at `rate` per second into a quorum
    queue (as a worker's submit goes into the inbox), passed on by an echo process into a durable
    queue (as the bridge's offer), consumed here. Returns each message's round trip in ms, sorted.
    With `commit_url`, the echo commits a row on that database before passing each message on."""
    return round_trips_and_commits(amqp_url, rate, seconds, commit_url)[0]


def round_trips_and_commits(amqp_url: str, rate: float, seconds: float = 5.0, commit_url: str | None = None,
                            started: threading.Event | None = None) -> tuple[list[float], list[float], list[float]]:
    """As `broker_round_trip`; also the echo's commits' latencies and each round trip less its own
    commit (ms, sorted; none without `commit_url`). `started` is set as the first message is published."""
    connection = pika.BlockingConnection(pika.URLParameters(amqp_url))
    channel = connection.channel()
    channel.queue_declare(ROUND_TRIP_IN, durable=True, arguments={"x-queue-type": "quorum"})
    channel.queue_declare(ROUND_TRIP_OUT, durable=True)
    ready = multiprocessing.Event()
    echo = multiprocessing.Process(target=_echo, args=(amqp_url, ready, commit_url), daemon=True)
    echo.start()
    ready.wait(30)
    found: list[float] = []
    commits: list[float] = []
    brokered: list[float] = []
    count = int(rate * seconds)

    def consume() -> None:
        inbound = pika.BlockingConnection(pika.URLParameters(amqp_url))
        consumer = inbound.channel()
        consumer.basic_qos(prefetch_count=100)
        for method, _props, body in consumer.consume(ROUND_TRIP_OUT, auto_ack=True, inactivity_timeout=5):
            if method is None:
                break
            sent, *committed = body.split()
            found.append(trip := (time.monotonic() - float(sent)) * 1000)
            for ms in map(float, committed):
                commits.append(ms)
                brokered.append(trip - ms)
            if len(found) == count:
                break
        inbound.close()

    consumer = threading.Thread(target=consume)
    consumer.start()
    time.sleep(0.2)
    properties = pika.BasicProperties(delivery_mode=2, content_type="application/json")
    if started is not None:
        started.set()
    next_at = time.monotonic()
    for _ in range(count):
        channel.basic_publish("", ROUND_TRIP_IN, repr(time.monotonic()).encode(), properties)
        next_at += 1.0 / rate
        connection.sleep(max(0.0, next_at - time.monotonic()))
    consumer.join(30)
    echo.terminate()
    connection.close()
    return sorted(found), sorted(commits), sorted(brokered)


class RoundTripsMeanwhile:
    """The broker-only round trip with a bare commit in it (`round_trips_and_commits`), a few a second
    while a phase runs: the least a hop that keeps its promise costs on the machine and the disk as
    that phase's load keeps them busy (a commit that finds the WAL flushing waits for that flush first).
    Few, so that it hardly adds to the load it measures."""

    def __init__(self, amqp_url: str, commit_url: str, seconds: float, rate: float = 5.0) -> None:
        self.rate = rate
        self.trips: list[float] = []  # ms, sorted
        self.commits: list[float] = []  # the echo's commits, ms, sorted
        self.brokered: list[float] = []  # each round trip less its echo's commit: the broker's part, ms, sorted
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(amqp_url, commit_url, seconds, started),
                                        name="bench-round-trips-meanwhile", daemon=True)
        self._thread.start()
        started.wait(60)  # the echo is up: the phase and the round trips start together

    def _run(self, amqp_url: str, commit_url: str, seconds: float, started: threading.Event) -> None:
        try:
            self.trips, self.commits, self.brokered = round_trips_and_commits(
                amqp_url, self.rate, seconds, commit_url, started)
        finally:
            started.set()  # failed before the first message: the phase need not wait for it

    def wait(self) -> "RoundTripsMeanwhile":
        self._thread.join()
        return self
