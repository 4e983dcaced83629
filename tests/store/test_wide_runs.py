"""The scheduler's sweeps on a wide run. A change to one instance reads that instance (and those its
inputs come from), not every instance of the run; and the instances of one run that come due together
are changed in one transaction, which reads the run once. Each used to read the whole run for each
instance: 500 lost offers of a 5,000-task run took 23 s of a tick, 500 of its leases 25 s, and every
team's leases, timers and human tasks waited behind them."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.models import Outbox
from flow45.store import specs
from flow45.store.batch import Item, apply_worker_batch
from flow45.store.schedule_runs import reoffer_lost
from flow45.store.unit import Row, Unit, each_alone
from tests.store.helpers import BLOB, DIAMOND, T0, complete, deploy_blob_tasks, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")

ITEMS = 120


@pytest.fixture
def wide_run(tmp_path) -> int:
    deploy_blob_tasks(tmp_path, "fan", ["root: {function: fr, output: Blob}"]
                      + [f"item{n:03d}: {{function: fi, output: Blob, inputs: {{src: root}}}}" for n in range(ITEMS)])
    run = store.trigger("acme", "fan", actor="ann", now=T0)
    complete(run, "root", BLOB)
    Outbox.update(sent_at=T0).where(Outbox.sent_at.is_null()).execute()
    return run


def test_a_lost_offer_of_a_wide_run_is_sent_again_reading_it_and_its_input_alone(wide_run, rows_read):
    reoffered = reoffer_lost(T0 + dt.timedelta(minutes=5), quiet=60, limit=3)
    assert len(reoffered) == 3
    assert sum(rows_read) <= 3 * 2, f"rows read for 3 re-offers: {rows_read}"  # each: itself and root
    for instance_id in reoffered:
        first, again = (Outbox.select().where((Outbox.instance == instance_id) & (Outbox.kind == "offer"))
                        .order_by(Outbox.id))
        assert again.body["inputs"] == first.body["inputs"] == {"src": BLOB}
        assert again.body["token"] == first.body["token"]


def test_a_unit_reads_the_rest_of_a_run_when_wanted_and_keeps_what_it_changed(wide_run):
    one = instance(wide_run, "item007")
    unit = Unit(T0)
    unit.lock_instances([one.id], whole_runs=False)
    changed = unit.instance(one.id)
    changed.progress_message = "changed in memory"
    assert set(unit.run_tasks(wide_run, ["root"])) == {"item007", "root"}
    everything = unit.by_run[wide_run]
    assert len(everything) == ITEMS + 1
    assert everything["item007"] is changed and everything["item007"].progress_message == "changed in memory"
    assert everything["root"].state == "succeeded" and everything["item100"].state == "available"


def test_a_lease_that_expires_reads_its_instance_alone_and_fails_the_run(wide_run, rows_read):
    """Lease expiry settles the run without reading it whole: the states of the instances not done
    tell its status (no retries here: the instance fails; the run fails once the rest has ended)."""
    item = instance(wide_run, "item001")
    store.claim(item.id, item.token, "w", now=T0)
    rows_read.clear()
    assert store.expire_leases(T0 + dt.timedelta(hours=1)) == [item.id]
    assert rows_read == [1]
    assert instance(wide_run, "item001").state == "failed"
    assert store.get_run(wide_run).status == "running"  # the other items are still offered


def test_leases_of_one_run_expire_together_reading_them_alone(wide_run, rows_read):
    items = [instance(wide_run, f"item{n:03d}") for n in range(10)]
    for item in items:
        store.claim(item.id, item.token, "w", now=T0)
    rows_read.clear()
    expired = store.expire_leases(T0 + dt.timedelta(hours=1))
    assert sorted(expired) == sorted(i.id for i in items)
    assert rows_read == [10]  # one transaction, one read: the ten, not the run
    assert {instance(wide_run, f"item{n:03d}").state for n in range(10)} == {"failed"}  # no retries
    assert store.get_run(wide_run).status == "running"  # the other items are still offered


def test_one_instance_that_cannot_be_changed_keeps_no_other_of_its_run_back(wide_run, caplog):
    items = [instance(wide_run, f"item{n:03d}").id for n in range(4)]
    bad = items[2]

    def note_progress(unit, row):
        if row.id == bad:
            raise RuntimeError("a bug in one instance's change")
        row.progress_message = "swept"
        unit.changes.instances[row.id] = row
        return True

    due = [Row(id=i, run_id=wide_run) for i in items]
    assert each_alone(due, T0, note_progress) == [i for i in items if i != bad]
    assert [instance(wide_run, f"item{n:03d}").progress_message for n in range(4)] == ["swept", "swept", None, "swept"]
    assert f"task instance {bad}: changing it failed; left as it was" in caplog.text


def test_a_claim_in_a_wide_run_reads_its_instance_and_its_input_alone(wide_run, rows_read):
    """The bridge applies a claim the same way: one of a run of thousands cost a read of all of them
    (36 ms of the bridge's CPU at 5,000 tasks, for every team's messages to wait behind)."""
    item = instance(wide_run, "item050")
    rows_read.clear()
    granted = store.claim(item.id, item.token, "w", now=T0)
    assert granted.inputs == {"src": BLOB}
    assert sum(rows_read) == 2  # the claimed instance, and root its input comes from
    [link] = store.get_instance(item.id).attempts[-1].lineage
    assert (link.param, link.task, link.instance, link.attempt) == ("src", "root", instance(wide_run, "root").id, 1)


def test_a_claim_in_a_small_run_reads_it_whole_in_one_statement(tmp_path, rows_read):
    """The inputs of a claim in a run of a few tasks come with its first read: no second round trip."""
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    complete(run, "a", BLOB)
    b = instance(run, "b")
    rows_read.clear()
    assert store.claim(b.id, b.token, "w", now=T0).inputs == {"src": BLOB}
    assert rows_read == [4]  # one read: the whole run


def test_a_process_that_never_read_the_version_reads_one_run_whole_then_any_run_of_it_alone(wide_run, rows_read):
    """Whether a run is wide is known from its version: a bridge started afresh (or another bridge)
    reads one run whole, then every run of that version in part, its first claim included."""
    specs._cache.clear()
    specs._wide.clear()
    other_run = store.trigger("acme", "fan", actor="ann", now=T0)
    complete(other_run, "root", BLOB)
    specs._cache.clear()
    specs._wide.clear()
    first, second = instance(wide_run, "item001"), instance(other_run, "item002")
    rows_read.clear()
    store.claim(first.id, first.token, "w", now=T0)
    store.claim(second.id, second.token, "w", now=T0)
    assert rows_read == [ITEMS + 1, 1, 1]  # the first run whole; the second's claim and its input


def test_one_batch_reads_a_small_run_whole_and_a_wide_runs_instance_alone(tmp_path, wide_run, rows_read):
    deploy_text(tmp_path, DIAMOND)
    small = store.trigger("acme", "diamond", actor="ann", now=T0)
    a, item = instance(small, "a"), instance(wide_run, "item003")
    rows_read.clear()
    items = [Item("acme", None, m.Claim(type="claim", instance=row.id, token=row.token, worker="w"))
             for row in (a, item)]
    with atomic():
        apply_worker_batch(items, T0)
    assert [i.error for i in items] == [None, None]
    assert rows_read == [4 + 1, 1]  # the diamond's four and item003, in one statement; then root, its input


def test_a_trigger_of_a_wide_run_reads_back_its_roots_alone(wide_run, rows_read):
    """The new run's instances are all pending: its roots are read to be offered, not all of them."""
    rows_read.clear()
    run = store.trigger("acme", "fan", actor="ann", now=T0)
    assert rows_read == [1]
    assert instance(run, "root").state == "available" and instance(run, "item042").state == "pending"
    assert store.get_run(run).status == "running"
    [offer] = Outbox.select().where(Outbox.instance == instance(run, "root").id)
    assert offer.body["inputs"] == {}
