"""Answers to reads kept under the bridge's `max_message_bytes`: a list that would pass it is cut
short and says so, and the reader asks on from where the answer stopped.

A team's own data can make an answer large: 500 runs with 16 KiB of params each, 500 events carrying
outputs, a run of thousands of instances. Whole, such an answer is more than the broker takes; the
reader would get an error in its place and nothing else.

- `runs`, `run_instances`, `events`, `inbox`: the page keeps as many items as fit, from its start
  (`events` with `newest`: from its end, so the newest stay) and says `more`. A run of `run_instances`
  that does not fit alone keeps as many of its instances as fit and says `instances_more`: the reader
  reads that run whole (`run`, in parts).
- `run`: the run keeps as many of its instances as fit and says `instances_more`; the reader asks
  again with `instances_from`, the number it has. `instance`, likewise with its attempts
  (`attempts_more`, `attempts_from`): retried and undone, an instance keeps every attempt.
"""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from flow45 import wire

ENVELOPE = 256  # bytes of the reply around its result, with room to spare
LISTS = {"runs": ("runs", "more"), "run_instances": ("runs", "more"), "events": ("events", "more"),
         "inbox": ("tasks", "more"), "run": ("instances", "instances_more"), "instance": ("attempts", "attempts_more")}


def encoded(read: BaseModel, result: Any, cap: int) -> bytes | None:
    """The ok reply to `read` as sent, its list cut to keep it within `cap` bytes; None if it
    cannot be written (the caller reports why)."""
    try:
        body = wire.dumps({"ok": True, "result": result}).encode()
        if len(body) <= cap or read.type not in LISTS or not isinstance(result, dict):
            return body
        result = cut(read, result, cap - ENVELOPE)
        body = wire.dumps({"ok": True, "result": result}).encode()
        if len(body) > cap and read.type == "run_instances":  # one run left, too large alone
            [run] = result["runs"]
            room = cap - ENVELOPE - len(wire.dumps({**result, "runs": []}))
            body = wire.dumps({"ok": True, "result": {**result, "runs": [
                _cut_list(run, "instances", "instances_more", room)]}}).encode()
        return body
    except wire.NotJSON:
        return None


def cut(read: BaseModel, result: dict, budget: int) -> dict:
    """`result` with its list shortened so that it writes in `budget` bytes, and its flag set. At
    least one item stays: one item larger than the budget is for the caller's cap to refuse."""
    key, flag = LISTS[read.type]
    return _cut_list(result, key, flag, budget, from_end=read.type == "events" and getattr(read, "newest", False))


def _cut_list(result: dict, key: str, flag: str, budget: int, from_end: bool = False) -> dict:
    items = result[key]
    room = budget - len(wire.dumps({**result, key: [], flag: True}))
    kept = 0
    for item in (reversed(items) if from_end else items):
        room -= len(wire.dumps(item)) + 1  # with its comma
        if room < 0 and kept:
            break
        kept += 1
    return {**result, key: items[len(items) - kept:] if from_end else items[:kept], flag: True}
