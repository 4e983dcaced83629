"""Run keys: the caller's own name for a run (Temporal's workflow id, Conductor's idempotency key). A
workflow has one run per key: a trigger that comes again with the key answers that run, unchanged."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import InvalidParams, RunExists
from flow45.migrate import _run_keys_v21
from flow45.models import Event, Run
from tests.store.helpers import deploy_text, upgraded_from_before

pytestmark = pytest.mark.usefixtures("store_db")

LEAP_DAY = dt.datetime(2028, 2, 29, 23, 59)  # the retry comes the next day, in March
ORDERS = """
    team: acme
    types:
      Blob:
        fields: {uri: string}
      Order:
        fields: {order: string, rush: {type: boolean, optional: true}}
    workflows:
      %s:
        params: Order
        max_active_runs: 1
        tasks:
          pack: {function: pack, output: Blob}
"""


def _deploy(tmp_path, *workflows: str) -> None:
    for name in workflows or ("orders",):
        deploy_text(tmp_path, ORDERS % name)


def test_a_trigger_sent_again_with_its_key_answers_the_run_it_made(tmp_path):
    _deploy(tmp_path)
    first = store.trigger_run("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="order A-17")
    assert (first.status, first.existing) == ("running", False)
    again = store.trigger_run("acme", "orders", {"order": "A-17"}, actor="shop-retry",
                              now=LEAP_DAY + dt.timedelta(minutes=2), key="order A-17")
    assert (again.run, again.status, again.existing) == (first.run, "running", True)
    assert Run.select().count() == 1
    trigger = Event.get((Event.run == first.run) & (Event.kind == "trigger"))
    assert (trigger.actor, trigger.detail["key"]) == ("shop", "order A-17")  # the repeat wrote nothing
    assert store.get_run(first.run).key == "order A-17"


def test_each_key_is_a_run_of_its_own_and_a_key_is_the_workflows_alone(tmp_path):
    _deploy(tmp_path, "orders", "refunds")
    a = store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="A-17")
    b = store.trigger("acme", "orders", {"order": "B-2"}, actor="shop", now=LEAP_DAY, key="B-2")
    refund = store.trigger("acme", "refunds", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="A-17")
    unkeyed = [store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY) for _ in range(2)]
    assert len({a, b, refund, *unkeyed}) == 5
    # The workflow lets one run go at a time: the later ones queued, and a repeat says so.
    again = store.trigger_run("acme", "orders", {"order": "B-2"}, actor="shop", now=LEAP_DAY, key="B-2")
    assert (again.run, again.status) == (b, "queued")


def test_the_key_again_with_other_params_or_another_logical_time_is_refused_naming_the_run(tmp_path):
    _deploy(tmp_path)
    run = store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="A-17")
    with pytest.raises(RunExists) as refused:
        store.trigger("acme", "orders", {"order": "A-17", "rush": True}, actor="shop", now=LEAP_DAY, key="A-17")
    assert refused.value.run == run
    assert str(refused.value) == (
        f"acme/orders has run {run} (running) for key 'A-17' already, triggered with params "
        '{"order":"A-17","rush":null}, not {"order":"A-17","rush":true}: a key names one run; give another key '
        "for another run")
    with pytest.raises(RunExists, match=r"with logical time none, not 2028-03-01 00:00:00Z: a key names one run"):
        store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="A-17",
                      logical_time=dt.datetime(2028, 3, 1))
    assert Run.select().count() == 1


def test_a_key_names_its_run_whatever_became_of_it(tmp_path):
    _deploy(tmp_path)
    run = store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="A-17")
    store.cancel_run(run, actor="ann", reason="customer called", now=LEAP_DAY + dt.timedelta(hours=1))
    again = store.trigger_run("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY + dt.timedelta(days=1),
                              key="A-17")
    assert (again.run, again.status, again.existing) == (run, "cancelled", True)


@pytest.mark.parametrize("key", ["", " A-17", "A-17 ", "A\n17", "tab\there", "x" * 129, "bell\x07"])
def test_a_key_that_cannot_be_written_on_a_command_line_or_in_a_log_is_refused(tmp_path, key):
    _deploy(tmp_path)
    with pytest.raises(InvalidParams, match=r"must be 1-128 printable characters, without control characters"):
        store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key=key)
    assert Run.select().count() == 0


def test_upgrading_from_before_run_keys_adds_the_column_and_one_run_per_key(tmp_path):
    database_index = "run_workflow_id_key"
    from flow45.db import database

    database.execute_sql(f'DROP INDEX IF EXISTS "{database_index}"')
    upgraded_from_before(_run_keys_v21, "run", "key")
    assert database_index in {index.name for index in database.get_indexes("run")}
    _deploy(tmp_path)
    run = store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="A-17")
    assert store.trigger("acme", "orders", {"order": "A-17"}, actor="shop", now=LEAP_DAY, key="A-17") == run
