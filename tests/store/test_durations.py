"""Queue wait, run time and attempts of runs and instances, on both databases; what is still going is
measured up to a `now` passed in."""

from __future__ import annotations

import datetime as dt

import pytest
import time_machine

from flow45 import store
from flow45.cli import main
from flow45.settings import Settings, use_settings
from flow45.timing import instance_time, instance_wait, run_time, run_wait, short_span
from tests.store.helpers import BLOB, DIAMOND, T0, claim, complete, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")


def at(seconds: int) -> dt.datetime:
    return T0 + dt.timedelta(seconds=seconds)


def story(tmp_path) -> int:
    """a waits 30 s, fails, is offered again at 40 s after its retry delay, claimed at 100 s, done at 160 s;
    b is offered at 160 s and claimed at 190 s."""
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=at(0))
    grant = claim(run, "a", now=at(30))
    store.fail(grant.instance, grant.token, "flaky", retryable=True, now=at(30))
    store.release_due_retries(now=at(40))
    complete(run, "a", BLOB, now=at(100))  # claimed and done at once
    claim(run, "b", now=at(190))
    return run


def test_instance_and_run_times_and_attempts(tmp_path):
    run = story(tmp_path)
    view = store.get_run(run)
    a, b, c, d = view.instances
    now = at(250)
    assert (instance_wait(a, now), instance_time(a, now), a.attempt) == (60.0, 0.0, 2)  # the current attempt: 40 s -> 100 s
    assert (instance_wait(b, now), instance_time(b, now), b.attempt) == (90.0, 60.0, 1)  # still running at 250 s
    assert (instance_wait(c, now), instance_time(c, now)) == (150.0, None)  # offered at 100 s, not claimed
    assert (instance_wait(d, now), instance_time(d, now)) == (None, None)
    assert (run_wait(view, now), run_time(view, now), view.attempts_made) == (0.0, 250.0, 4)
    listed = store.list_runs("acme")[0]
    assert (listed.attempts_made, run_time(listed, at(300))) == (4, 300.0)


def test_a_queued_run_waits_and_a_finished_one_stops_the_clock(tmp_path):
    deploy_text(tmp_path, DIAMOND)  # max_active_runs: 1
    first = store.trigger("acme", "diamond", actor="ann", now=at(0))
    second = store.trigger("acme", "diamond", actor="ann", now=at(10))
    assert run_wait(store.get_run(second), at(50)) == 40.0
    for n, task in enumerate("abcd"):
        complete(first, task, BLOB, now=at(60 + n))
    done, started = store.get_run(first), store.get_run(second)
    assert (run_time(done, at(1000)), run_wait(started, at(1000)), run_time(started, at(100))) == (63.0, 53.0, 37.0)


def test_the_run_as_it_was_has_the_times_of_then(tmp_path):
    run = story(tmp_path)
    from flow45.models import Event

    claimed = Event.get((Event.instance == store.get_run(run).instances[0].id) & (Event.kind == "claim")).id
    then = store.run_as_of(run, event=claimed)  # a's first claim, at 30 s
    a = then.instances[0]
    assert (a.offered_at, a.started_at, a.finished_at, a.attempt) == (at(0), at(30), None, 1)
    assert (instance_wait(a, then.as_of_at), instance_time(a, then.as_of_at), then.attempts_made) == (30.0, 0.0, 1)


def test_show_and_runs_print_waits_run_times_and_attempts(tmp_path, db_url, capsys):
    run = story(tmp_path)
    use_settings(Settings(database_url=db_url))
    with time_machine.travel(dt.datetime(2026, 3, 1, 12, 4, 10, tzinfo=dt.timezone.utc), tick=False):  # 250 s in
        assert main(["show", str(run)]) == 0
        shown = capsys.readouterr().out
        assert main(["runs"]) == 0
        listed = capsys.readouterr().out
    assert "  queued 0s  ran 4m10s  attempts 4\n" in shown
    rows = {line.split()[1]: line.split()[2:6] for line in shown.splitlines() if line[:1].isdigit()}
    assert rows["a"] == ["succeeded", "2", "1m00s", "0s"] and rows["b"] == ["running", "1", "1m30s", "1m00s"]
    assert rows["c"][:3] == ["available", "1", "2m30s"] and rows["d"] == ["pending", "-", "-", "-"]
    header, row = listed.splitlines()[:2]
    assert header.split()[9:12] == ["QUEUED", "RAN", "ATTEMPTS"] and row.split()[9:12] == ["0s", "4m10s", "4"]


def test_short_spans():
    assert [short_span(s) for s in (None, 0, 0.25, 42, 185, 7620, 273600)] == [
        "-", "0s", "250ms", "42s", "3m05s", "2h07m", "3d04h"]
