"""A read's answer over the bridge's max_message_bytes is cut short, never refused: what is kept is a
prefix of the list (the newest events: a suffix), the answer fits the cap and says there is more."""

from __future__ import annotations

import json

from hypothesis import example, given, settings
from hypothesis import strategies as st

from bridge.read_pages import encoded
from flow45 import messages as m

READS = {
    "runs": m.ReadRuns(type="runs"), "events": m.ReadEvents(type="events"),
    "newest events": m.ReadEvents(type="events", newest=True), "inbox": m.ReadInbox(type="inbox"),
    "run": m.ReadRun(type="run", run=1), "instance": m.ReadInstance(type="instance", instance=1),
}
LIST = {"runs": "runs", "events": "events", "newest events": "events", "inbox": "tasks", "run": "instances",
        "instance": "attempts"}
FLAG = {"run": "instances_more", "instance": "attempts_more"}

items = st.lists(st.builds(lambda n, text: {"id": n, "text": text},
                           st.integers(1, 10**9), st.text(max_size=3000)), max_size=60)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(sorted(READS)), rows=items, cap=st.integers(4096, 60_000))
def test_an_answer_over_the_cap_keeps_what_fits_in_order_and_says_more(kind, rows, cap):
    read, key = READS[kind], LIST[kind]
    result = {"id": 7, "status": "running", key: rows}
    answer = json.loads(encoded(read, result, cap))
    assert answer["ok"] is True
    kept = answer["result"][key]
    flag = FLAG.get(kind, "more")
    whole = len(json.dumps({"ok": True, "result": result}, separators=(",", ":")).encode())
    if whole <= cap:
        assert answer["result"] == result  # nothing cut, nothing added
        return
    assert answer["result"][flag] is True and 1 <= len(kept) < len(rows)
    assert kept == (rows[len(rows) - len(kept):] if kind == "newest events" else rows[:len(kept)])
    if len(kept) > 1:  # one item alone may pass the cap: the caller then refuses it, saying why
        assert len(encoded(read, result, cap)) <= cap
    assert answer["result"]["id"] == 7 and answer["result"]["status"] == "running"


def test_a_small_answer_is_sent_as_it_is():
    result = {"runs": [{"id": 1}], "more": False}
    assert json.loads(encoded(READS["runs"], result, 65536)) == {"ok": True, "result": result}


briefs = st.lists(st.builds(lambda n, task: {"id": n, "task": task, "state": "failed"},
                            st.integers(1, 10**9), st.text(min_size=1, max_size=64)), max_size=400)


@settings(max_examples=200, deadline=None)
@given(runs=st.lists(briefs, min_size=1, max_size=20), cap=st.integers(4096, 30_000))
@example(runs=[[{"id": n, "task": "load", "state": "failed"} for n in range(300)]] * 2, cap=4096)
def test_a_run_instances_page_is_cut_between_runs_and_a_run_too_large_alone_within_its_instances(runs, cap):
    """A bulk plan's page always fits: one run whose chosen instances pass the cap alone was an error
    (`internal`), and the plan with it."""
    read = m.ReadRunInstances(type="run_instances")
    result = {"runs": [{"id": 100 - n, "status": "failed", "instances": rows, "instances_more": False}
                       for n, rows in enumerate(runs)]}
    body = encoded(read, result, cap)
    answer = json.loads(body)["result"]
    assert len(body) <= cap
    if answer == result:
        return
    kept = answer["runs"]
    assert answer["more"] is True and kept[:-1] == result["runs"][:len(kept) - 1]
    last, whole = kept[-1], result["runs"][len(kept) - 1]
    if last["instances_more"]:
        assert len(kept) == 1 and last["instances"] == whole["instances"][:len(last["instances"])]
        assert len(last["instances"]) < len(whole["instances"])
    else:
        assert last == whole


def test_a_run_cut_within_its_instances_is_read_whole_by_the_remote_client():
    from types import SimpleNamespace

    from bridge.remote import RemoteClient
    from flow45.client import RunFilter

    whole = [SimpleNamespace(id=n, task="load" if n % 2 else "extract", state="failed") for n in range(1, 9)]

    class Answering(RemoteClient):
        """Answers as a bridge with a small max_message_bytes would: run 7 cut after two of its loads."""

        def _read(self, message):
            cut = [{"id": n, "task": "load", "state": "failed"} for n in (1, 3)]
            return {"runs": [{"id": 7, "status": "failed", "instances": cut, "instances_more": True}], "more": True} \
                if message.get("before") is None else {"runs": [], "more": False}

        def run(self, run_id, *, attempts=False):
            return SimpleNamespace(id=run_id, status="failed", instances=whole)

    client = Answering("amqp://nobody@localhost")
    [run] = client.run_instances(RunFilter(), task="load", state="failed")
    assert (run.id, [i.id for i in run.instances], run.instances_more) == (7, [1, 3, 5, 7], False)
