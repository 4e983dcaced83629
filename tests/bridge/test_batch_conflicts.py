"""A batch that PostgreSQL picks to break a deadlock is a conflict, tried again at once: nothing in it
was applied, nothing is refused, and no failure is logged."""

from __future__ import annotations

import logging
import threading
import time
import uuid

import psycopg2
import pytest

from bridge.batch import Conflict, apply_batch
from bridge.inbound import Delivery
from flow45 import store
from flow45.db import database
from tests.store.helpers import ACME_WORKER, CHAIN_OF_TWO, deploy_text, instance

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("store_db")]


@pytest.fixture
def backend():
    return "postgresql"


def _claims(run_ids: list[int]) -> list[Delivery]:
    rows = [instance(run_id, "a") for run_id in run_ids]
    return [Delivery(tag=n, exchange="flow45.in.acme", user_id="w", message_id=uuid.uuid4().hex, reply_to=None,
                     correlation_id=None, body=f'{{"type": "claim", "instance": {row.id}, "token": "{row.token}", '
                                                f'"worker": "w"}}'.encode())
            for n, row in enumerate(rows, 1)]


def test_a_batch_broken_out_of_a_deadlock_is_a_conflict_and_applies_when_tried_again(tmp_path, postgres_url, caplog):
    deploy_text(tmp_path, CHAIN_OF_TWO)
    runs = sorted(store.trigger("acme", "chain", actor="ops") for _ in range(2))
    batch = _claims(runs)
    database.close()
    other = psycopg2.connect(postgres_url)
    try:
        cursor = other.cursor()
        cursor.execute("SELECT id FROM run WHERE id = %s FOR UPDATE", (runs[1],))
        raised: list[BaseException] = []

        def apply() -> None:
            try:
                apply_batch(ACME_WORKER, batch)
            except BaseException as exc:  # noqa: BLE001 - looked at below
                raised.append(exc)
            finally:
                database.close()

        applying = threading.Thread(target=apply)
        applying.start()
        time.sleep(0.5)  # the batch holds the first run's lock and waits for the second's
        # This session waits longer before it looks for a deadlock: the batch looks first, and gives way.
        cursor.execute("SET deadlock_timeout = '10s'; SELECT id FROM run WHERE id = %s FOR UPDATE", (runs[0],))
        applying.join(10)
        other.rollback()
    finally:
        other.close()
    assert len(raised) == 1 and isinstance(raised[0], Conflict), raised
    assert "deadlock" in str(raised[0])
    assert [instance(r, "a").state for r in runs] == ["available", "available"]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR], "a conflict is not a failure"
    again = apply_batch(ACME_WORKER, batch)
    assert [o.refusal for o in again.outcomes] == [None, None]
    assert [instance(r, "a").state for r in runs] == ["running", "running"]
