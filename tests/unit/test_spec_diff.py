"""What a deploy changed is said for any two stored documents: never an error (a deploy must not fail
on its own report), nothing when they are the same, and something when they differ."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from flow45.store.spec_diff import MOST_CHANGES, spec_changes

names = st.sampled_from(["tasks", "extract", "retries", "lease", "due", "schedule", "cron", "a", "b"])
values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False, allow_infinity=False),
              st.text(max_size=80)),
    lambda kids: st.one_of(st.lists(kids, max_size=3), st.dictionaries(names, kids, max_size=4)),
    max_leaves=30,
)
documents = st.fixed_dictionaries({"workflow": st.dictionaries(names, values, max_size=5)},
                                  optional={"types": st.dictionaries(names, values, max_size=3)})


@settings(max_examples=300, deadline=None)
@given(documents, documents)
def test_any_two_documents_are_told_apart_without_an_error(before, after):
    told = spec_changes(before, after)
    assert (told == []) == (before == after or _same_as_read(before) == _same_as_read(after))
    assert len(told) <= MOST_CHANGES + 1
    assert all(": " in line or (n == MOST_CHANGES and line.startswith("... and ")) for n, line in enumerate(told))
    assert spec_changes(after, after) == []


def _same_as_read(document: dict) -> dict:
    return {**document.get("workflow", {}), **({"types": document["types"]} if "types" in document else {})}


def test_durations_are_shown_as_a_config_writes_them():
    before = {"workflow": {"tasks": {"a": {"lease": 90.0, "due": 172800.0, "reminders": [3600.0]}}}}
    after = {"workflow": {"tasks": {"a": {"lease": 0.5, "due": 259200.0, "reminders": [3600.0, 86400.0]}}}}
    assert spec_changes(before, after) == ["tasks.a.lease: 90s -> 0.5s", "tasks.a.due: 2d -> 3d",
                                           "tasks.a.reminders: [1h] -> [1h, 1d]"]
