"""A read's answer over the bridge's max_message_bytes is cut short, never refused: what is kept is a
prefix of the list (the newest events: a suffix), the answer fits the cap and says there is more."""

from __future__ import annotations

import json

from hypothesis import given, settings
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
