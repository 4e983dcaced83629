"""A listing cut at its --limit says so: `runs`, `events` and `inbox` printed the first page alone, and
an operator took it for everything that matched. The note goes to stderr, so the table and --json stay
as they were. On the database (both backends)."""

from __future__ import annotations

import json

from flow45 import store
from flow45.wire import INT64_MAX as LARGEST
from tests.store.helpers import T0, deploy_text

DESK = """
    team: acme
    types:
      Ok:
        fields: {ok: boolean}
    workflows:
      desk:
        tasks:
          approve: {function: approve, output: Ok, human: true, assignees: [ops-ann]}
"""


def test_runs_says_when_more_match_than_its_limit_shows(flow45, tmp_path):
    deploy_text(tmp_path, DESK)
    runs = [store.trigger("acme", "desk", actor="ann", now=T0) for _ in range(3)]
    code, out, err = flow45("runs", "--limit", "2", "--json")
    assert code == 0 and [r["id"] for r in json.loads(out)] == runs[:0:-1]
    assert err == "flow45: more runs match than the 2 shown (the newest); --limit N shows more\n"
    code, out, err = flow45("runs", "--workflow", "desk", "--limit", "2")
    assert code == 0 and len(out.splitlines()) == 3 and "--limit N shows more" in err
    code, out, err = flow45("runs", "--limit", "3")
    assert code == 0 and len(out.splitlines()) == 4 and err == ""
    code, out, err = flow45("runs", "--limit", str(LARGEST), "--json")  # the one more is not past the store's range
    assert code == 0 and len(json.loads(out)) == 3 and err == ""


def test_events_says_when_more_match_than_its_limit_shows(flow45, tmp_path):
    deploy_text(tmp_path, DESK)
    run = store.trigger("acme", "desk", actor="ann", now=T0)
    for n in range(3):
        store.note_run(run, f"note {n}", actor="ann", now=T0)
    ids = [e.id for e in store.list_events(run=run, limit=100)]
    assert len(ids) >= 4
    code, out, err = flow45("events", "--run", str(run), "--limit", "2", "--json")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == ids[-2:]
    assert err == ("flow45: more events match than the 2 shown (the newest); --limit N shows more, "
                   "--after 0 reads from the start\n")
    code, out, err = flow45("events", "--run", str(run), "--after", "0", "--limit", "2", "--json")
    assert code == 0 and [json.loads(line)["id"] for line in out.splitlines()] == ids[:2]
    assert err == f"flow45: more events match than the 2 shown (the oldest after 0); --after {ids[1]} reads on\n"
    code, out, err = flow45("events", "--run", str(run), "--limit", str(len(ids)))
    assert code == 0 and len(out.splitlines()) == len(ids) and err == ""
    for after in ([], ["--after", "0"]):
        code, out, err = flow45("events", "--run", str(run), *after, "--limit", str(LARGEST))
        assert code == 0 and len(out.splitlines()) == len(ids) and err == ""
    code, out, err = flow45("events", "--run", str(run), "--after", str(ids[1]), "--limit", str(len(ids) - 2))
    assert code == 0 and len(out.splitlines()) == len(ids) - 2 and err == ""


def test_inbox_says_when_more_wait_than_its_limit_shows(flow45, tmp_path):
    deploy_text(tmp_path, DESK)
    for _ in range(3):
        store.trigger("acme", "desk", actor="ann", now=T0)
    code, out, err = flow45("inbox", "--limit", "2", "--json")
    assert code == 0 and len(json.loads(out)) == 2
    assert err == "flow45: more human tasks wait than the 2 shown; --limit N shows more\n"
    code, out, err = flow45("inbox", "--show", "mine", "--limit", "1")
    assert code == 0 and out.count("instance ") == 1 and "more human tasks wait than the 1 shown" in err
    code, out, err = flow45("inbox", "--limit", "3")
    assert code == 0 and out.count("instance ") == 3 and err == ""
    code, out, err = flow45("inbox", "--limit", str(LARGEST))
    assert code == 0 and out.count("instance ") == 3 and err == ""
