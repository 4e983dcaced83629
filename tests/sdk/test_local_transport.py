"""The local transport answers like the bridge: same checks, same codes, same idempotency."""

import logging
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import psycopg2
import pytest

from bridge.sdk import LocalTransport, Worker, run_forever, transport_from_settings
from bridge.sdk.amqp import AmqpTransport
from bridge.sdk.transport import Delivery, Subscription
from flow45 import names, store
from flow45 import states as S
from flow45.db import atomic, connect, database
from flow45.errors import SchemaOutdated
from flow45.migrate import CURRENT, STEPS, _pending_by_key_v25, upgrade
from flow45.models import Outbox, SchemaVersion
from flow45.settings import Settings
from flow45.store import outbox
from tests import pinned
from tests.conftest import ROOT
from tests.sdk.helpers import BLOB, wait_finished
from tests.store.helpers import T0, deploy_text, instance


def claim_message(row, worker="w1"):
    return {"type": "claim", "instance": row.id, "token": row.token, "worker": worker}


def test_claim_is_idempotent_by_message_id(acme):
    transport = LocalTransport("acme", "w1")
    run = store.trigger("acme", "flaky", actor="tester")
    row = instance(run, "x")
    first = transport.request(claim_message(row), "m-1", timeout=5)
    again = transport.request(claim_message(row), "m-1", timeout=5)
    other = transport.request(claim_message(row, "w2"), "m-2", timeout=5)
    assert first.ok and first.result["token"] == row.token and first.result["duplicate"] is False
    assert first.result["state"] == S.RUNNING and first.result["inputs"] == {} and first.result["attempt"] == 1
    assert again.ok and again.result["duplicate"] is True and again.result["token"] == row.token
    assert (other.ok, other.code) == (False, "stale")
    assert "no longer open" in other.error


def test_refusals_carry_the_bridge_codes(acme, tmp_path):
    deploy_text(tmp_path, ACME_OTHER)
    transport = LocalTransport("acme", "w1")
    run = store.trigger("acme", "flaky", actor="tester")
    row = instance(run, "x")
    theirs = instance(store.trigger("other", "solo", actor="tester"), "t")

    bad = transport.request({"type": "claim", "instance": row.id}, "m-1", timeout=5)
    assert (bad.ok, bad.code) == (False, "invalid_message") and "token" in bad.error
    unknown = transport.request({**claim_message(row), "type": "explode"}, "m-2", timeout=5)
    assert unknown.code == "invalid_message"
    foreign = transport.request(claim_message(theirs), "m-3", timeout=5)
    assert (foreign.code, foreign.error) == ("not_found", f"task instance {theirs.id} not found for team acme")
    stale = transport.request({"type": "progress", "instance": row.id, "token": row.token}, "m-4", timeout=5)
    assert stale.code == "stale"  # not claimed yet

    grant = transport.request(claim_message(row), "m-5", timeout=5)
    token = grant.result["token"]
    wrong = transport.request({"type": "submit", "instance": row.id, "token": token, "output": {"uri": 1}}, "m-6", 5)
    assert wrong.code == "invalid_output"
    done = transport.request({"type": "submit", "instance": row.id, "token": token, "output": BLOB}, "m-7", 5)
    assert done.ok and done.result["state"] == S.SUCCEEDED
    late = transport.request({"type": "fail", "instance": row.id, "token": token, "error": "x"}, "m-8", 5)
    assert late.code == "stale"


LOOK_AROUND = """
    team: acme
    types:
      Path:
        fields: {path: {type: string, pattern: "^(?!/tmp/)"}}
    workflows:
      keep:
        tasks:
          k: {function: fk, output: Path}
"""


def test_a_pattern_stored_before_deploy_checked_it_refuses_the_submit_with_a_reason(store_db, tmp_path, monkeypatch):
    """A version deployed before deploy refused look-around: its outputs cannot be checked. The
    submit is answered with why, the attempt stays open for a new version's fix, nothing raises."""
    monkeypatch.setattr("flow45.config_check.pattern_problem", lambda pattern: None)  # as deploy was
    deploy_text(tmp_path, LOOK_AROUND)
    transport = LocalTransport("acme", "w1")
    row = instance(store.trigger("acme", "keep", actor="tester"), "k")
    token = transport.request(claim_message(row), "m-1", timeout=5).result["token"]
    submit = {"type": "submit", "instance": row.id, "token": token, "output": {"path": "/data"}}
    done = transport.request(submit, "m-2", timeout=5)
    assert (done.ok, done.code) == (False, "invalid_config")
    assert done.error == ("type Path cannot be checked (look-around, including look-ahead and look-behind, is not "
                          "supported): deploy a version without that pattern")
    assert store.get_run(row.run_id).instances[0].state == S.RUNNING


WORKER_STUCK_IN_A_TASK = """
import logging, sys, threading
from bridge.sdk import LocalTransport, Worker, run_forever
from flow45.db import connect
logging.basicConfig(level=logging.INFO, format="%(message)s")
connect(sys.argv[1])
worker = Worker(LocalTransport("acme", "w1", poll_interval=0.01))

@worker.handler("fx")
def fx(task):
    print("started", flush=True)
    threading.Event().wait()

run_forever(worker)
"""


@pytest.mark.timeout(60)
def test_a_second_signal_ends_a_worker_whose_task_does_not_finish(acme, db_url):
    store.trigger("acme", "flaky", actor="tester")
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW45_")}
    env.update(PYTHONPATH=str(ROOT))
    process = subprocess.Popen(pinned.command([sys.executable, "-c", WORKER_STUCK_IN_A_TASK, db_url]), env=env,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert process.stdout.readline() == "started\n"
        process.send_signal(signal.SIGTERM)
        with pytest.raises(subprocess.TimeoutExpired):
            process.wait(timeout=1)  # the first one waits for the running task
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 128 + signal.SIGTERM
    finally:
        if process.poll() is None:
            process.kill()
    said = process.stderr.read()
    assert "SIGTERM: finishing running tasks" in said and "SIGTERM again: exiting now" in said


ACME_OTHER = """
    team: other
    types:
      Blob:
        fields: {uri: string}
    workflows:
      solo:
        tasks:
          t: {function: ft, output: Blob}
"""


def test_transport_from_settings_picks_by_amqp_url(tmp_path):
    url = f"sqlite:///{tmp_path / 'x.db'}"
    connect(url, create=True)  # as `flow45 db upgrade` would: a worker never creates the store
    assert isinstance(transport_from_settings("acme", "w", Settings(database_url=url)), LocalTransport)
    amqp = transport_from_settings("acme", "w", Settings(database_url=url, amqp_url="amqp://u:p@localhost:5672/%2F"))
    assert isinstance(amqp, AmqpTransport) and amqp.user == "u" and amqp.exchange == "flow45.in.acme"


@pytest.mark.timeout(60)
def test_run_forever_stops_cleanly_on_sigterm(acme):
    worker = Worker(LocalTransport("acme", "w1", poll_interval=0.01))
    started = threading.Event()

    @worker.handler("fx")
    def fx(task):
        started.set()
        time.sleep(0.3)
        return BLOB

    run = store.trigger("acme", "flaky", actor="tester")
    killer = threading.Thread(target=lambda: started.wait(10) and os.kill(os.getpid(), signal.SIGTERM))
    killer.start()
    previous = signal.getsignal(signal.SIGTERM)
    run_forever(worker, concurrency=2)  # returns once stopped
    killer.join()
    assert signal.getsignal(signal.SIGTERM) is previous
    assert wait_finished(run, timeout=1) == S.SUCCEEDED  # the running handler finished and submitted


def test_offers_come_most_urgent_first_for_each_function_at_most_prefetch_unacknowledged(acme):
    plan = [("flaky", 0), ("skippy", 0), ("flaky", 0), ("flaky", 5), ("skippy", 5), ("skippy", 0)]
    runs = [store.trigger("acme", workflow, actor="tester", priority=priority, now=T0) for workflow, priority in plan]
    transport = LocalTransport("acme", "w1", poll_interval=0.01)
    arrived: queue.Queue[Delivery] = queue.Queue()
    transport.open(Subscription(("fs", "fx"), prefetch=2), arrived.put)
    try:
        first = [arrived.get(timeout=10) for _ in range(4)]
        with pytest.raises(queue.Empty):
            arrived.get(timeout=0.3)  # two of each function unacknowledged: nothing more
        in_hand = {f: [d for d in first if d.function == f] for f in ("fs", "fx")}
        assert {f: [d.body["run"] for d in got] for f, got in in_hand.items()} == \
            {"fs": [runs[4], runs[1]], "fx": [runs[3], runs[0]]}
        in_hand["fx"][0].ack()
        assert (lambda d: (d.function, d.body["run"]))(arrived.get(timeout=10)) == ("fx", runs[2])
        in_hand["fs"][0].ack()
        assert (lambda d: (d.function, d.body["run"]))(arrived.get(timeout=10)) == ("fs", runs[5])
    finally:
        transport.close()


BACKLOG = 3000


def rows_read_from_the_outbox() -> int:
    """Rows and index entries of the outbox this PostgreSQL transaction has read so far."""
    return database.execute_sql(
        "SELECT sum(pg_stat_get_xact_tuples_returned(c.oid))::bigint FROM pg_class c WHERE c.oid = 'outbox'::regclass"
        " OR c.oid IN (SELECT indexrelid FROM pg_index WHERE indrelid = 'outbox'::regclass)").fetchone()[0]


def statistics_of_an_outbox_whose_every_row_was_sent(url: str) -> None:
    """PostgreSQL's statistics of the outbox as a relay or transport that kept up leaves them: no row
    pending. Earlier tests' removed rows are vacuumed away first, so that only this test's are read."""
    other = psycopg2.connect(url)
    other.autocommit = True
    try:
        cursor = other.cursor()
        cursor.execute("VACUUM outbox")
        cursor.execute("INSERT INTO outbox (team, kind, routing_key, priority, body, created_at, sent_at) "
                       "SELECT 'beta', 'offer', 'beta.f' || (n % 7), n % 3, '{}', now(), now() "
                       "FROM generate_series(1, 20000) n")
        cursor.execute("ANALYZE outbox")
        cursor.execute("DELETE FROM outbox WHERE team = 'beta'")
        cursor.execute("VACUUM outbox")  # keeps the statistics of the columns
    finally:
        other.close()


def test_a_take_reads_the_head_of_its_functions_offers_however_many_are_pending(acme, backend, db_url, caplog):
    """The transport takes a function's offers after every acknowledgement: a read of every pending
    offer, sorted, on each take made in-process workers slow down as offers piled up. On PostgreSQL
    whatever the statistics say: taken while no row was pending, they planned a read of every
    pending row of the team, for the read and again for marking each row sent."""
    if backend == "postgresql":
        statistics_of_an_outbox_whose_every_row_was_sent(db_url)
    backlog = [{"team": "acme", "kind": "offer", "routing_key": names.offer_key("acme", function), "priority": 0,
                "body": {"n": n}, "created_at": T0} for n in range(BACKLOG) for function in ("fs", "fx")]
    with atomic():
        for start in range(0, len(backlog), 500):
            Outbox.insert_many(backlog[start:start + 500]).execute()
        urgent = Outbox.create(team="acme", kind="offer", routing_key=names.offer_key("acme", "fx"), priority=5,
                               body={"n": "urgent"}, created_at=T0).id
    caplog.clear()
    with atomic(), caplog.at_level(logging.DEBUG, logger="peewee"):
        before = rows_read_from_the_outbox() if backend == "postgresql" else 0
        taken = outbox.take([names.offer_key("acme", "fx")], limit=2, now=T0)
        read = rows_read_from_the_outbox() - before if backend == "postgresql" else 0
    assert [row.id for row in taken][0] == urgent and [row.body["n"] for row in taken] == ["urgent", 0]
    assert read < 20, f"{read} outbox rows and index entries read to take 2 of {len(backlog) + 1} pending offers"
    if backend == "sqlite":
        selects = [record.msg for record in caplog.records
                   if isinstance(record.msg, tuple) and record.msg[0].startswith("SELECT")]
        plans = [" / ".join(row[-1] for row in database.execute_sql("EXPLAIN QUERY PLAN " + sql, params).fetchall())
                 for sql, params in selects]
        assert plans and all(plan.startswith("SEARCH") and "TEMP B-TREE" not in plan for plan in plans), plans
    assert Outbox.select().where(Outbox.sent_at.is_null()).count() == len(backlog) - 1


def test_a_take_of_several_functions_gets_the_most_urgent_offers_of_them_all(acme):
    fs, fx, other = (names.offer_key("acme", f) for f in ("fs", "fx", "fo"))
    plan = [(fs, 0), (fx, 0), (other, 9), (fs, 5), (fx, 0), (fx, 5), (fs, 0)]
    with atomic():
        ids = [Outbox.create(team="acme", kind="offer", routing_key=key, priority=priority, body={"n": n},
                             created_at=T0).id for n, (key, priority) in enumerate(plan)]
    assert [row.id for row in outbox.take([fx, fs, fx], limit=4, now=T0)] == [ids[3], ids[5], ids[0], ids[1]]
    assert [row.id for row in outbox.take([fs, fx], limit=4, now=T0)] == [ids[4], ids[6]]


def test_a_take_while_another_holds_the_most_urgent_offers_gets_the_next_ones(acme, backend):
    key = names.offer_key("acme", "fx")
    with atomic():
        ids = [Outbox.create(team="acme", kind="offer", routing_key=key, priority=0, body={"n": n}, created_at=T0).id
               for n in range(5)]
    first_took, first_may_commit, second = threading.Event(), threading.Event(), {}

    def first_taker():
        try:
            with atomic():
                second["first"] = [row.id for row in outbox.take([key], limit=2, now=T0)]
                first_took.set()
                first_may_commit.wait(10)
        finally:
            database.close()

    def second_taker():
        try:
            second["took"] = [row.id for row in outbox.take([key], limit=2, now=T0)]
        finally:
            database.close()

    holder = threading.Thread(target=first_taker)
    holder.start()
    try:
        assert first_took.wait(10)
        taker = threading.Thread(target=second_taker)
        taker.start()
        taker.join(2)
        waited = taker.is_alive()
    finally:
        first_may_commit.set()
        holder.join(10)
    taker.join(10)
    assert (second["first"], second["took"]) == (ids[:2], ids[2:4])
    # PostgreSQL passes over the rows another take holds; SQLite's one writer at a time serializes them.
    assert waited == (backend == "sqlite")


def test_upgrade_indexes_a_stores_pending_offers_by_function_and_takes_still_find_them(acme):
    step = STEPS.index(_pending_by_key_v25) + 1
    with atomic():  # a store from before
        database.execute_sql("DROP INDEX outbox_pending_by_key")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    run = store.trigger("acme", "flaky", actor="tester", now=T0)
    assert upgrade() == (step - 1, CURRENT)
    assert [index.columns for index in database.get_indexes("outbox") if index.name == "outbox_pending_by_key"] \
        == [["routing_key", "priority", "id"]]
    [offer] = outbox.take([names.offer_key("acme", "fx")], now=T0)
    assert offer.body["run"] == run and outbox.take([names.offer_key("acme", "fx")], now=T0) == []


def test_a_worker_on_a_store_an_upgrade_has_not_reached_is_refused_at_its_start(acme):
    step = STEPS.index(_pending_by_key_v25) + 1
    with atomic():  # a store from before
        database.execute_sql("DROP INDEX outbox_pending_by_key")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    worker = Worker(LocalTransport("acme", "w1"))
    worker.handler("fx")(lambda task: {"ok": True})
    try:
        with pytest.raises(SchemaOutdated, match=r"schema version \d+, this Flow45 needs \d+: run `flow45 db upgrade`"):
            worker.start()
    finally:
        upgrade()  # PostgreSQL's database is the session's: the tests after this one need it current
