"""The files of a deploy (or validate) through the bridge: each is written under its name in a private
folder of the bridge's and read as a local deploy reads a folder. A name that folder could not take,
or that such a read would pass over, is refused naming it, as `invalid_message`: never as a bug
(`internal`, logged with a traceback), nor left out unsaid. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import logging
import uuid

import pytest

from bridge.batch import apply_batch
from bridge.inbound import Delivery
from flow45 import store
from flow45.settings import Settings, use_settings
from tests.bridge.conftest import TEAMS

SETTINGS = Settings(teams=TEAMS)
CONFIG = "team: reports\ntypes: {Blob: {fields: {uri: string}}}\nworkflows:\n  w: {tasks: {a: {function: f, output: Blob}}}\n"


@pytest.fixture
def bridge_store(store_db, db_url):
    use_settings(Settings(database_url=db_url, teams=TEAMS))


def _sent(body: dict) -> Delivery:
    return Delivery(tag=1, exchange="flow45.in.reports", user_id="reports-ops", message_id=uuid.uuid4().hex,
                    reply_to=None, correlation_id=None, body=json.dumps(body).encode())


@pytest.mark.parametrize("kind", ["validate", "deploy"])
@pytest.mark.parametrize("name", ["x" * 251 + ".yaml", "é" * 126 + ".yml", ".yaml", ".yml"])
def test_a_file_name_the_bridge_cannot_read_as_sent_is_refused_naming_it(bridge_store, caplog, kind, name):
    (outcome,) = apply_batch(SETTINGS, [_sent({"type": kind, "files": {"w.yaml": CONFIG, name: CONFIG}})]).outcomes
    assert outcome.refusal is not None and outcome.refusal.code == "invalid_message"
    assert outcome.refusal.message.startswith(f"files: {name!r} must be a plain file name")
    assert "flow45-deploy-" not in outcome.refusal.message
    assert store.list_workflows("reports") == []
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


def test_the_longest_file_name_a_file_system_takes_is_deployed(bridge_store):
    name = "x" * 250 + ".yaml"  # 255 bytes
    (outcome,) = apply_batch(SETTINGS, [_sent({"type": "deploy", "files": {name: CONFIG}})]).outcomes
    assert outcome.refusal is None and [w.name for w in store.list_workflows("reports")] == ["w"]
