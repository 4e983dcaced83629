"""`flow45 workflows` says when each schedule's next run is due, and when no scheduler has made it."""

from __future__ import annotations

import datetime as dt
import json
import textwrap

import time_machine

from flow45 import scheduler, store
from flow45.config import load_config

AMSTERDAM_NIGHTLY = """
    team: acme
    types:
      Done:
        fields: {ok: boolean}
    workflows:
      nightly:
        schedule: {cron: "30 2 * * *", timezone: Europe/Amsterdam}
        tasks:
          load: {function: load, output: Done}
      by_hand:
        tasks:
          load: {function: load, output: Done}
"""


def at(text: str):
    return time_machine.travel(dt.datetime.fromisoformat(text).replace(tzinfo=dt.timezone.utc), tick=False)


def row(out: str, workflow: str) -> str:
    return next(line for line in out.splitlines() if f" {workflow} " in line)


def test_next_run_follows_the_cursor_across_the_night_the_clocks_go_forward(flow45, tmp_path):
    (tmp_path / "acme.yaml").write_text(textwrap.dedent(AMSTERDAM_NIGHTLY))
    with at("2026-03-28T12:00:00"):
        store.deploy(load_config(tmp_path / "acme.yaml"), actor="tester", now=dt.datetime(2026, 3, 28, 12))
        code, out, err = flow45("workflows")
        assert code == 0, err
        # 02:30 does not exist in Amsterdam on 29 March: the run comes at 03:00 CEST, 01:00 UTC
        assert "2026-03-29 01:00:00 (in 13h00m)" in row(out, "nightly")
        assert row(out, "by_hand").split()[-1] == "-"
    with at("2026-03-29T01:00:30"):
        assert "2026-03-29 01:00:00 (due now)" in row(flow45("workflows")[1], "nightly")
    with at("2026-03-29T03:00:00"):
        code, out, _ = flow45("workflows")
        assert "2026-03-29 01:00:00 (overdue 2h00m: is a scheduler running?)" in row(out, "nightly")
        scheduler.tick(dt.datetime(2026, 3, 29, 3))  # catchup latest: the missed tick's run is made now
        assert "2026-03-30 00:30:00 (in 21h30m)" in row(flow45("workflows")[1], "nightly")
        code, out, err = flow45("workflows", "--json")
        by_name = {w["name"]: w["next_run"] for w in json.loads(out)}
        assert by_name == {"by_hand": None, "nightly": "2026-03-30T00:30:00Z"}, err
        flow45("pause", "acme/nightly", "--reason", "source migrating")
        code, out, _ = flow45("workflows", "--json")
        assert {w["name"]: w["next_run"] for w in json.loads(out)}["nightly"] is None
        assert "(paused, triggers queued)  paused " in row(flow45("workflows")[1], "nightly")
