"""The event stream's pages stay under max_message_bytes: a larger message would close the
publishing channel (the broker's max_message_size), and the page would be lost to the followers."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from bridge.events import PAGE_ENVELOPE, Streamed, _pages_under


@given(sizes=st.lists(st.integers(1, 3000), max_size=60), cap=st.integers(3000 + PAGE_ENVELOPE + 1, 20_000))
def test_pages_hold_every_event_once_in_order_each_under_the_cap(sizes, cap):
    events = [Streamed(i, "acme", "x", b"x" * size) for i, size in enumerate(sizes, start=1)]
    pages = _pages_under(events, cap)
    assert [e for page in pages for e in page] == events
    assert all(page for page in pages)
    for page in pages:
        body = b'{"events":[' + b",".join(e.body for e in page) + b"]}"
        assert len(body) <= cap
    assert len(pages) <= max(1, 2 * sum(len(e.body) + 1 for e in events) // (cap - PAGE_ENVELOPE) + 1)
