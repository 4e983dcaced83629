"""A run that uses every message kind, through the real bridge: each message on the wire matches
`flow45 schema` (checked by tests/wirecheck.py with jsonschema), offers carry the normalised
outputs their function's inputs schema describes, and submits match their function's output schema."""

from __future__ import annotations

import json
import time

import pytest
from jsonschema import Draft202012Validator

from bridge.rpc import BridgeRefused, call
from flow45.models import Attempt
from flow45.schema import full_schema, schema_for
from tests.bridge.broker_helpers import wait_offer

pytestmark = pytest.mark.integration

CONFIG = """
team: reports
types:
  Part:
    fields: {side: {type: enum, values: [left, right]}, at: {type: datetime, optional: true}}
  Doc:
    fields:
      uri: string
      parts: {type: list, items: Part}
      main: {type: Part, optional: true}
      ratio: {type: number, optional: true}
  Params:
    fields: {day: date}
workflows:
  wire:
    params: Params
    tasks:
      make: {function: wire_make, output: Doc, undo: notify}
      use: {function: wire_use, output: Part, inputs: {doc: make}}
      maybe: {function: wire_maybe, output: Part}
"""

SUBMITTED = {"uri": "s3://d", "parts": [{"side": "left", "at": "2026-03-01T14:00:00.5+02:00"}], "ratio": 7}
NORMALISED = {"uri": "s3://d", "parts": [{"side": "left", "at": "2026-03-01T12:00:00.500000Z"}], "main": None,
              "ratio": 7.0}


def wait_undo_notice(env, function: str, timeout: float = 10.0) -> dict:
    channel = env.channel("reports-worker")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        method, _props, body = channel.basic_get(f"flow45.tasks.reports.{function}.undo", auto_ack=True)
        if method:
            channel.connection.close()
            return json.loads(body)
        time.sleep(0.02)
    raise AssertionError(f"no undo notice for {function}")


def test_every_message_of_a_run_matches_flow45_schema(bridge_env, wire_log):
    ops, worker = bridge_env.url("reports-ops"), bridge_env.url("reports-worker")

    def operator(kind: str, **fields):
        return call(ops, "reports", {"type": kind, **fields})

    def work(kind: str, offer: dict, **fields):
        return call(worker, "reports", {"type": kind, "instance": offer["instance"], "token": offer["token"], **fields})

    operator("validate", files={"wire.yaml": CONFIG})
    operator("deploy", files={"wire.yaml": CONFIG})
    run = operator("trigger", workflow="wire", params={"day": "2026-03-01"})["run"]
    make = wait_offer(bridge_env, "reports", "wire_make")
    maybe = wait_offer(bridge_env, "reports", "wire_maybe")

    work("claim", make, worker="w1")
    with pytest.raises(BridgeRefused, match="no longer open"):
        work("claim", make, worker="w2")
    work("progress", make, percent=50, message="half way", log_url="https://logs.example.org/make/1")
    with pytest.raises(BridgeRefused, match="progress.log_url: Value error, log_url carries a user name or password"):
        work("progress", make, log_url="https://ann:pw@logs.example.org/make/1")
    work("submit", make, output=SUBMITTED, log_tail="made 1 doc\n")
    use = wait_offer(bridge_env, "reports", "wire_use")
    assert use["inputs"] == {"doc": NORMALISED}, "offers carry the stored form: UTC with Z, null for omitted fields"

    assert work("claim", maybe, worker="w1")["checkpoint"] is None
    work("progress", maybe, checkpoint={"source": "day-2026-03-01", "offset": 4096})
    with pytest.raises(BridgeRefused, match="progress.checkpoint: Value error, checkpoint refused, checkpoint.token"):
        work("progress", maybe, checkpoint={"token": "abc"})
    assert work("fail", maybe, error="cannot", retryable=False, log_tail="no source\n")["state"] == "failed"
    operator("retry", instance=maybe["instance"])
    maybe = wait_offer(bridge_env, "reports", "wire_maybe")
    resumed = work("claim", maybe, worker="w1")
    assert resumed["checkpoint"] == {"source": "day-2026-03-01", "offset": 4096}, "the retry goes on from there"
    work("skip", maybe, reason="nothing to do")

    operator("hold", instance=use["instance"], reason="look first")
    operator("release", instance=use["instance"])
    use = wait_offer(bridge_env, "reports", "wire_use")
    work("claim", use, worker="w1")
    work("submit", use, output={"side": "right"})

    operator("undo", instance=make["instance"], reason="redo it", dry_run=True)
    operator("undo", instance=make["instance"], reason="redo it")
    notice = wait_undo_notice(bridge_env, "wire_make")
    assert notice["output"] == NORMALISED
    operator("skip", instance=make["instance"], reason="by hand")
    operator("status", run=run)
    operator("status")
    operator("cancel", run=run)
    with pytest.raises(BridgeRefused, match="not found"):
        operator("status", run=run + 1000)

    made = Attempt.get((Attempt.instance == make["instance"]) & (Attempt.number == 1))
    assert (made.log_url, made.log_tail) == ("https://logs.example.org/make/1", "made 1 doc\n")

    problems = wire_log.check()
    assert problems == []
    every = {"Offer", "UndoNotice", "WorkerMessage", "OperatorMessage"} | {
        f"{kind}Reply" for kind in ("Claim", "Progress", "Submit", "Fail", "Skip", "Deploy", "Validate", "Trigger",
                                    "Undo", "OperatorSkip", "Retry", "Hold", "Release", "Cancel", "Status")}
    assert every <= set(wire_log.checked), every - set(wire_log.checked)

    # The functions' own schemas, from the store the bridge wrote.
    document = full_schema("reports")
    inputs = Draft202012Validator(schema_for(document, "reports.wire_use.inputs"),
                                  format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert list(inputs.iter_errors(use["inputs"])) == []
    assert not inputs.is_valid({"doc": {k: v for k, v in NORMALISED.items() if k != "main"}})
    output = Draft202012Validator(schema_for(document, "reports.wire_make.output"),
                                  format_checker=Draft202012Validator.FORMAT_CHECKER)
    assert list(output.iter_errors(SUBMITTED)) == []
    assert not output.is_valid({**SUBMITTED, "ratio": "7"})
