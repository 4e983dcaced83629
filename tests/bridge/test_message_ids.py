"""A message_id is the sender's idempotency key: a copy of a message applied already gets its answer
again, and nothing more. An id given to another message already (another kind, or about another
instance) is refused as `invalid_message`, naming what it was given to, and nothing is applied: never
answered with the other message's answer (a cancel said done and not done), nor as a bug (`internal`,
logged with a traceback, the rest of its batch applied again one by one). On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging

import pytest

from bridge.batch import apply_batch
from bridge.inbound import Delivery
from flow45 import store
from flow45.config import load_config
from flow45.models import TaskInstance
from flow45.settings import Settings, use_settings
from tests.bridge.conftest import TEAMS
from tests.conftest import EXAMPLES

SETTINGS = Settings(teams=TEAMS)


@pytest.fixture
def run(store_db, db_url) -> int:
    """A run of team reports, triggered by its operator's message `t-1`."""
    use_settings(Settings(database_url=db_url, teams=TEAMS))
    store.deploy(load_config(EXAMPLES), actor="ops")
    (outcome,) = apply_batch(SETTINGS, [_sent("reports-ops", "t-1", {
        "type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-10"}})]).outcomes
    return outcome.result["run"]


def _sent(user: str, message_id: str, body: dict, tag: int = 1) -> Delivery:
    return Delivery(tag=tag, exchange="flow45.in.reports", user_id=user, message_id=message_id, reply_to=None,
                    correlation_id=None, body=json.dumps(body).encode())


def _offered(run: int) -> TaskInstance:
    return TaskInstance.get((TaskInstance.run == run) & (TaskInstance.state == "available"))


def test_an_operators_message_with_another_messages_id_is_refused_and_changes_nothing(run, caplog):
    (outcome,) = apply_batch(SETTINGS, [_sent("reports-ops", "t-1", {"type": "cancel", "run": run})]).outcomes
    assert outcome.refusal is not None and outcome.refusal.code == "invalid_message"
    assert outcome.refusal.message == ("message_id 't-1' was given to a trigger message already; nothing was applied: "
                                       "give each message an id of its own")
    assert store.get_run(run).status == "running"
    trigger = {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-10"}}
    (again,) = apply_batch(SETTINGS, [_sent("reports-ops", "t-1", trigger)]).outcomes
    assert again.result["run"] == run, "a copy of the trigger is answered as before"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_workers_message_with_another_messages_id_is_refused_alone(run, caplog):
    extract = _offered(run)
    claim = {"type": "claim", "instance": extract.id, "token": extract.token, "worker": "w"}
    outcomes = apply_batch(SETTINGS, [_sent("reports-worker", "t-1", claim),  # the operator's trigger's id
                                      _sent("reports-worker", "c-1", claim, tag=2)]).outcomes
    assert [o.refusal and o.refusal.code for o in outcomes] == ["invalid_message", None]
    assert "message_id 't-1' was given to another message already" in outcomes[0].refusal.message
    assert outcomes[1].result["state"] == "running"
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "no bug, no batch applied one by one"

    progress = {"type": "progress", "instance": extract.id, "token": extract.token, "percent": 50}
    (again,) = apply_batch(SETTINGS, [_sent("reports-worker", "c-1", progress)]).outcomes
    assert again.refusal is None and again.result["duplicate"] is True, "about the same instance: a copy"
    (other,) = apply_batch(SETTINGS, [_sent("reports-worker", "c-1", {**progress, "instance": extract.id + 1})]).outcomes
    assert other.refusal.code == "invalid_message" and "was given to another message" in other.refusal.message
