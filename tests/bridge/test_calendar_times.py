"""Times in messages are checked against the calendar, not only their pattern: 29 February of a year
that has none, a 31st of April or hour 24 match `YYYY-MM-DDTHH:MM:SSZ` but name no moment. Each is
refused as `invalid_message` naming the field and why, never as a bug (`internal`) logged with a
traceback; 29 February of a leap year is a time like any other."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from bridge.batch import apply_batch
from bridge.inbound import Delivery, Refusal
from bridge.reads import parse_read
from flow45 import store
from flow45.config import load_config
from flow45.settings import Settings, use_settings
from tests.bridge.conftest import TEAMS
from tests.conftest import EXAMPLES

SETTINGS = Settings(teams=TEAMS)


@pytest.fixture
def deployed(store_db, db_url):
    use_settings(Settings(database_url=db_url, teams=TEAMS))
    store.deploy(load_config(EXAMPLES), actor="ops")


def _operator(body: dict, reply_to: str | None = None) -> Delivery:
    return Delivery(tag=1, exchange="flow45.in.reports", user_id="reports-ops", message_id=uuid.uuid4().hex,
                    reply_to=reply_to, correlation_id=None, body=json.dumps(body).encode())


@pytest.mark.parametrize("field, when, why", [
    ("logical_time", "2026-02-29T06:00:00Z", "day is out of range for month"),
    ("logical_time", "2026-04-31T06:00:00Z", "day is out of range for month"),
    ("logical_time", "2026-12-31T24:00:00Z", "hour must be in 0..23"),
])
def test_a_trigger_at_a_time_not_on_the_calendar_is_refused_naming_it(deployed, caplog, field, when, why):
    body = {"type": "trigger", "workflow": "monthly_report", "params": {}, field: when}
    (outcome,) = apply_batch(SETTINGS, [_operator(body)]).outcomes
    assert outcome.refusal is not None and outcome.refusal.code == "invalid_message"
    assert f"trigger.{field}" in outcome.refusal.message and f"{when} is not a time on the calendar ({why})" in outcome.refusal.message
    assert store.list_runs("reports") == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_a_trigger_on_29_february_of_a_leap_year_runs_for_that_moment(deployed):
    body = {"type": "trigger", "workflow": "monthly_report", "params": {}, "logical_time": "2028-02-29T06:00:00Z"}
    (outcome,) = apply_batch(SETTINGS, [_operator(body)]).outcomes
    assert outcome.refusal is None
    (run,) = store.list_runs("reports")
    assert run.logical_time.isoformat() == "2028-02-29T06:00:00"

    (again,) = apply_batch(SETTINGS, [_operator(body)]).outcomes  # a new message for the same moment
    assert again.refusal.code == "run_exists"
    assert again.refusal.message == (f"reports/monthly_report has a run for 2028-02-29 06:00:00Z already: run {run.id} "
                                     "(running); undo its tasks to run it again")
    assert len(store.list_runs("reports")) == 1


def test_a_backfill_whose_end_is_not_on_the_calendar_is_refused_and_makes_nothing(deployed, caplog):
    body = {"type": "backfill", "workflow": "monthly_report", "start": "2026-01-01T00:00:00Z",
            "end": "2026-13-01T00:00:00Z"}
    (outcome,) = apply_batch(SETTINGS, [_operator(body)]).outcomes
    assert outcome.refusal.code == "invalid_message"
    assert "backfill.end: Value error, 2026-13-01T00:00:00Z is not a time on the calendar (month must be in 1..12)" \
        in outcome.refusal.message
    assert store.list_runs("reports") == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.parametrize("body", [
    {"type": "runs", "since": "2026-02-30T00:00:00Z"},
    {"type": "run", "run": 1, "as_of_time": "2027-02-29T12:00:00Z"},
])
def test_a_read_asking_for_a_time_not_on_the_calendar_is_refused_naming_it(body):
    with pytest.raises(Refusal) as refused:
        parse_read(SETTINGS, _operator(body, reply_to="amq.rabbitmq.reply-to"))
    assert refused.value.code == "invalid_message"
    assert "is not a time on the calendar (day is out of range for month)" in refused.value.message
