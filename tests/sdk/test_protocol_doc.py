"""docs/protocol.md stays in step with flow45/messages/, flow45/names.py and the plain pika example."""

import dataclasses
import re
from pathlib import Path

import pytest

from flow45 import names
from flow45 import messages as m
from flow45.views import WorkerReply

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "protocol.md").read_text()

SECTIONS = {
    "Offer": m.Offer, "UndoNotice": m.UndoNotice, "Reply": m.Reply,
    "`claim`": m.Claim, "`progress`": m.Progress, "`submit`": m.Submit, "`fail`": m.Fail, "`skip`": m.Skip,
    "`park`": m.Park, "`callback_submit`": m.CallbackSubmit, "`callback_fail`": m.CallbackFail,
    "`deploy`": m.Deploy, "`validate`": m.Validate, "`trigger`": m.Trigger, "`undo`": m.Undo,
    "`skip` (operator)": m.OperatorSkip, "`retry`": m.Retry, "`hold`": m.Hold, "`release`": m.Release,
    "`cancel`": m.Cancel, "`submit` (operator)": m.OperatorSubmit, "`take`": m.Take, "`hand_back`": m.HandBack,
    "`set_output`": m.SetOutput, "`backfill`": m.Backfill, "`pause`": m.Pause, "`resume`": m.Resume, "`status`": m.Status,
    "`whoami`": m.WhoAmI, "`workflows`": m.ReadWorkflows, "`versions`": m.ReadVersions, "`runs`": m.ReadRuns,
    "`run_instances`": m.ReadRunInstances,
    "`run`": m.ReadRun,
    "`instance`": m.ReadInstance, "`events`": m.ReadEvents, "`counts`": m.ReadCounts, "`inbox`": m.ReadInbox,
    "`spec`": m.ReadSpec, "`schema`": m.ReadSchema,
}


def section(heading: str) -> str:
    match = re.search(rf"^### {re.escape(heading)}\n(.*?)(?=^##)", DOC, re.M | re.S)
    assert match, f"docs/protocol.md has no section '### {heading}'"
    return match.group(1)


def table_fields(text: str) -> set[str]:
    return set(re.findall(r"^\| `([a-z_]+)` \|", text, re.M))


@pytest.mark.parametrize("heading", sorted(SECTIONS))
def test_every_field_of_every_message_is_documented(heading):
    assert table_fields(section(heading)) == set(SECTIONS[heading].model_fields)


def test_the_reply_results_are_documented():
    assert table_fields(section("Results")) == {f.name for f in dataclasses.fields(WorkerReply)}


def test_every_error_code_is_documented():
    codes = set(re.findall(r"^\| `([a-z_]+)` \|", section("Error codes"), re.M))
    in_reply_doc = re.search(r"code \(([^)]*)\)", " ".join(m.Reply.__doc__.split())).group(1).split(", ")
    assert len(in_reply_doc) >= 9 and set(in_reply_doc) <= codes


def test_names_and_arguments_match_the_topology():
    for text in (names.TASKS_EXCHANGE, names.inbox_queue("TEAM"), names.DEAD_EXCHANGE, names.inbound_exchange("TEAM"),
                 names.READ_EXCHANGE, names.READS_QUEUE, names.EVENTS_EXCHANGE, f"x-message-ttl: {names.READS_TTL_MS}",
                 names.offer_queue("TEAM", "FUNCTION"), names.undo_queue("TEAM", "FUNCTION"),
                 names.offer_key("TEAM", "FUNCTION"), names.undo_key("TEAM", "FUNCTION"),
                 f"x-max-priority: {names.MAX_PRIORITY}", f"x-delivery-limit: {names.INBOX_DELIVERY_LIMIT}"):
        assert f"`{text}`" in DOC, text


def test_the_worked_example_is_the_example_file():
    block = re.search(r"^## Worked example.*?^```python\n(.*?)^```$", DOC, re.M | re.S).group(1)
    assert block == (ROOT / "examples" / "plain_pika_worker.py").read_text()
