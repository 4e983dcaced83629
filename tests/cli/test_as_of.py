"""`flow45 show RUN --as-of EVENT_ID|TIME`, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

from flow45 import store
from flow45.models import Event
from tests.store.helpers import BLOB, DIAMOND, T0, complete, deploy_text


def test_show_as_of_an_event_and_a_time(flow45, tmp_path):  # noqa: F811
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    complete(run, "a", BLOB, worker="w1", now=T0 + dt.timedelta(minutes=5))
    offered = Event.get((Event.run == run) & (Event.kind == "ready")).id  # a offered, nothing else yet

    code, out, _ = flow45("show", str(run), "--as-of", str(offered))
    assert code == 0
    assert out.splitlines()[0] == f"run {run}  acme/diamond v1  running  (as of ledger event {offered}, 2026-03-01 12:00:00)"
    rows = {line.split()[1]: line.split()[2] for line in out.splitlines() if line[:1].isdigit()}
    assert rows == {"a": "available", "b": "pending", "c": "pending", "d": "pending"}

    code, out, _ = flow45("show", "--json", str(run), "--as-of", "2026-03-01T12:05:00Z")
    shown = json.loads(out)
    assert code == 0 and shown["as_of_at"] == "2026-03-01T12:05:00Z"
    assert {i["task"]: (i["state"], i["worker"]) for i in shown["instances"]} == {
        "a": ("succeeded", "w1"), "b": ("available", None), "c": ("available", None), "d": ("pending", None)}
    # A time with an offset is the same moment in UTC.
    assert json.loads(flow45("show", "--json", str(run), "--as-of", "2026-03-01T13:05:00+01:00")[1]) == shown


def test_as_of_refusals_name_the_problem(flow45, tmp_path):  # noqa: F811
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    code, _, err = flow45("show", str(run), "--as-of", "yesterday")
    assert code == 2 and "expected a ledger event id or a time such as 2026-03-01T06:00:00Z, got 'yesterday'" in err
    code, _, err = flow45("show", str(run), "--as-of", "2026-03-01T11:00:00Z")
    assert code == 1 and err == f"flow45: run {run} had not been triggered at 2026-03-01 11:00:00 UTC (it was triggered 2026-03-01 12:00:00 UTC)\n"
