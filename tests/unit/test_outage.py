"""Telling an outage (wait it out) from a setting that cannot work (give up), and the heartbeat
file `flow45 health` reads."""

from __future__ import annotations

import io
import json
import logging
import signal
import threading

import peewee
import pika.exceptions as px
import pytest

from flow45 import heartbeat
from flow45.outage import GIVE_UP_AFTER, Backoff, CannotWork, on_stop_signals, permanent_reason
from flow45.scheduler import stop_on_signals

REFUSED = peewee.OperationalError('connection to server at "127.0.0.1", port 5432 failed: Connection refused')
BAD_PASSWORD = peewee.OperationalError(
    'connection to server at "127.0.0.1", port 5432 failed: FATAL:  password authentication failed for user "x"')


@pytest.mark.parametrize("exc", [
    REFUSED,
    peewee.InterfaceError("connection already closed"),
    peewee.OperationalError("server closed the connection unexpectedly"),
    peewee.OperationalError("FATAL:  the database system is starting up"),
    px.AMQPConnectionError(ConnectionRefusedError(111, "Connection refused")),
    px.ConnectionClosedByBroker(530, "NOT_ALLOWED - vhost / is down"),
    px.StreamLostError("Transport indicated EOF"),
    None,
])
def test_outages_are_waited_out(exc):
    assert permanent_reason(exc) is None


@pytest.mark.parametrize("exc, words", [
    (BAD_PASSWORD, "password authentication failed"),
    (peewee.OperationalError('FATAL:  database "nope" does not exist'), 'database "nope" does not exist'),
    (px.ProbableAuthenticationError("ACCESS_REFUSED"), "the broker refused the login"),
    (px.AMQPConnectionError(px.ProbableAuthenticationError("ACCESS_REFUSED")), "the broker refused the login"),
    (px.ConnectionClosedByBroker(530, "NOT_ALLOWED - vhost nope not found"), "vhost nope not found"),
])
def test_a_refused_login_or_missing_database_is_permanent(exc, words):
    assert words in permanent_reason(exc)


def test_backoff_gives_up_only_after_the_same_kind_of_refusal_in_a_row():
    backoff = Backoff(threading.Event(), first=0.5, cap=2.0)
    for _ in range(GIVE_UP_AFTER - 1):
        backoff.failed(BAD_PASSWORD, "bridge")
    backoff.failed(REFUSED, "bridge")  # the server was away: the count starts over
    for _ in range(GIVE_UP_AFTER - 1):
        backoff.failed(BAD_PASSWORD, "bridge")
    with pytest.raises(CannotWork, match="^bridge: .*password authentication failed"):
        backoff.failed(BAD_PASSWORD, "bridge")


def test_backoff_doubles_up_to_its_cap_and_a_stop_ends_the_wait():
    stop = threading.Event()
    backoff = Backoff(stop, first=0.5, cap=2.0)
    stop.set()
    delays = []
    for _ in range(4):
        delays.append(backoff.delay)
        assert backoff.wait() is False  # stopped: no waiting at all
    assert delays == [0.5, 1.0, 2.0, 2.0]
    backoff.reset()
    assert backoff.delay == 0.5


def test_heartbeat_file_names_each_part_and_goes_on_a_clean_stop(tmp_path):
    path = tmp_path / "beat.json"
    beats = heartbeat.Heartbeat(path)
    beats.beat("scheduler")
    beats.beat("bridge", "database x: connection refused")
    data = heartbeat.read(path)
    assert set(data["parts"]) == {"scheduler", "bridge"}
    now = data["parts"]["scheduler"]["at"]
    assert heartbeat.problems(data, now, max_age=30) == ["bridge: database x: connection refused"]
    assert heartbeat.problems(data, now + 31, max_age=30)[0].startswith("bridge: no heartbeat for 31s")
    beats.remove()
    assert not path.exists()


def test_no_heartbeat_file_is_written_without_one_configured(tmp_path):
    heartbeat.Heartbeat(None).beat("bridge")
    assert list(tmp_path.iterdir()) == []


def test_a_heartbeat_of_a_process_that_is_gone_is_dead(tmp_path):
    data = {"pid": 2**22 + 12345, "parts": {"bridge": {"at": 100.0, "error": None}}}  # above Linux's pid_max
    assert heartbeat.problems(json.loads(json.dumps(data)), 100.0, 30) == [f"process {2**22 + 12345} is not running"]


def test_a_heartbeat_file_that_cannot_be_written_is_said_once_and_again_when_it_can(tmp_path, caplog):
    folder = tmp_path / "not-yet"
    beats = heartbeat.Heartbeat(folder / "hb.json")
    with caplog.at_level(logging.INFO, logger="flow45"):
        beats.beat("scheduler")
        beats.beat("bridge")  # still failing: not said again
        folder.mkdir()
        beats.beat("scheduler", error="database x: connection refused")
    said = [r.getMessage() for r in caplog.records]
    assert len(said) == 2, said
    assert said[0].startswith(f"heartbeat file {folder / 'hb.json'}: cannot write it (No such file or directory)")
    assert said[1] == f"heartbeat file {folder / 'hb.json'}: written again"
    assert set(heartbeat.read(folder / "hb.json")["parts"]) == {"scheduler", "bridge"}


class OneWriterStream(io.StringIO):
    """A stream like a buffered file: one write at a time. `signal_inside` raises that signal in the
    middle of the next write, as a SIGTERM can land while the process writes a log line."""

    def __init__(self) -> None:
        super().__init__()
        self.busy = threading.Lock()
        self.signal_inside: signal.Signals | None = None

    def write(self, text: str) -> int:
        if not self.busy.acquire(timeout=5):
            raise RuntimeError("reentrant write: a signal handler wrote inside a write")
        try:
            if self.signal_inside is not None:
                sig, self.signal_inside = self.signal_inside, None
                signal.raise_signal(sig)
            return super().write(text)
        finally:
            self.busy.release()


def test_a_stop_signal_landing_inside_a_log_write_still_stops_and_is_logged():
    stream = OneWriterStream()
    handler = logging.StreamHandler(stream)
    log = logging.getLogger("flow45.scheduler")
    log.addHandler(handler)
    level, log.level = log.level, logging.INFO
    stop = threading.Event()
    try:
        with stop_on_signals(stop):
            stream.signal_inside = signal.SIGTERM
            log.info("a tick's line")
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert stop.is_set()
    lines = stream.getvalue().splitlines()  # a scheduler left running by another test may log too
    assert lines.index("a tick's line") < lines.index("scheduler: SIGTERM received, stopping")


def test_a_stop_handler_that_fails_leaves_the_next_signal_handled(caplog):
    seen: list[int] = []

    def handler(signum: int) -> None:
        seen.append(signum)
        if len(seen) == 1:
            raise RuntimeError("the first one breaks")

    with on_stop_signals(handler):
        signal.raise_signal(signal.SIGTERM)
        signal.raise_signal(signal.SIGINT)
    assert seen == [signal.SIGTERM, signal.SIGINT]
    assert "handling SIGTERM failed" in caplog.text and "the first one breaks" in caplog.text
