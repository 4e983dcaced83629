"""A transaction on PostgreSQL is one: its BEGIN goes out with its first statement, its last writes
with its COMMIT, and nothing it wrote is seen by another session before its COMMIT, or ever after a
failure."""

from __future__ import annotations

import contextlib

import peewee
import psycopg2
import psycopg2.sql
import pytest

from flow45 import store
from flow45.db import atomic, database, describe_db_error, dialect, drop_connection
from flow45.models import Event, ProcessedMessage
from flow45.store.bulk import insert_rows
from tests.store.helpers import T0, deploy_text, instance
from tests.store.test_stale_statistics import WORKFLOW

pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("store_db")]


@pytest.fixture
def backend():
    return "postgresql"


@pytest.fixture
def elsewhere(postgres_url):
    """Another session, counting the runs it can see."""
    other = psycopg2.connect(postgres_url)
    other.autocommit = True

    def runs() -> int:
        with other.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM run")
            return cursor.fetchone()[0]

    yield runs
    other.close()


def test_what_a_transaction_writes_is_seen_elsewhere_only_after_its_commit(tmp_path, elsewhere):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with atomic():
        store.trigger("acme", "many", actor="ops", now=T0)
        store.trigger("acme", "many", actor="ops", now=T0)
        assert elsewhere() == 0
        assert database.execute_sql("SELECT txid_current_if_assigned() IS NOT NULL").fetchone()[0]
    assert elsewhere() == 2


def test_a_transaction_that_fails_leaves_nothing_behind(tmp_path, elsewhere):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with pytest.raises(RuntimeError), atomic():
        store.trigger("acme", "many", actor="ops", now=T0)
        raise RuntimeError("the caller gives up")
    assert elsewhere() == 0
    assert store.list_runs("acme") == []


def test_a_transaction_that_ran_nothing_leaves_the_connection_ready_for_the_next(tmp_path, elsewhere):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with atomic():
        pass
    with atomic():  # a BEGIN left waiting would make this one's statements run outside a transaction
        store.trigger("acme", "many", actor="ops", now=T0)
        assert elsewhere() == 0
    assert elsewhere() == 1


@pytest.mark.parametrize("first_statement", ["text", "composed"])
def test_the_first_statement_of_a_transaction_runs_inside_it_whatever_its_form(first_statement):
    query = "SELECT txid_current()"
    with atomic():
        cursor = database.cursor()
        cursor.execute(query if first_statement == "text" else psycopg2.sql.SQL(query))
        (began,) = cursor.fetchone()
        assert database.execute_sql("SELECT txid_current_if_assigned()").fetchone()[0] == began


# ---- writes left for the commit ------------------------------------------------------------------

@pytest.fixture
def round_trips():
    """Queries sent to the server on the store's connection (a multi-statement query is one)."""
    sent: list[bytes] = []
    connection = database.connection()
    base = connection.cursor_factory

    class Counting(base):
        def execute(self, query, vars=None):
            sent.append(query if isinstance(query, bytes) else str(query).encode())
            return super().execute(query, vars)

    connection.cursor_factory = Counting
    yield sent
    connection.cursor_factory = base


def _seen_elsewhere(postgres_url: str, message_id: str) -> bool:
    other = psycopg2.connect(postgres_url)
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM processed_message WHERE message_id = %s", (message_id,))
            return cursor.fetchone()[0] == 1
    finally:
        other.close()


def _left_for_later(message_id: str) -> None:
    """A write left to travel with the transaction's next statement."""
    deferred = dialect().deferred()
    insert_rows(ProcessedMessage, [{"message_id": message_id, "team": "acme", "kind": "claim", "processed_at": T0,
                                    "reply": {"ok": True}, "instance": None}], deferred=deferred)
    deferred.send_later()


def test_writes_left_for_the_commit_travel_with_it_and_are_seen_only_after_it(postgres_url, round_trips):
    with atomic():
        database.execute_sql("SELECT 1")
        _left_for_later("100%-sure")  # a % in the statement ahead of the COMMIT is data, not a placeholder
        assert not _seen_elsewhere(postgres_url, "100%-sure")
    assert _seen_elsewhere(postgres_url, "100%-sure")
    # BEGIN with the SELECT, then the insert with the COMMIT (its PREPARE is once per connection)
    assert [q for q in round_trips if not q.startswith(b"PREPARE")] == [b"SELECT 1", b"COMMIT"]


def test_writes_left_for_later_go_ahead_of_the_next_statement_even_one_with_parameters(postgres_url):
    with atomic():
        _left_for_later("a%sb")
        found = database.execute_sql("SELECT count(*) FROM processed_message WHERE message_id = %s", ("a%sb",))
        assert found.fetchone()[0] == 1


def test_an_error_in_writes_left_for_the_commit_fails_the_transaction_and_leaves_nothing(postgres_url, tmp_path):
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    with pytest.raises(peewee.IntegrityError), atomic():
        run = store.trigger("acme", "many", actor="ops", now=T0)
        _left_for_later("twice")
        _left_for_later("twice")  # the key is taken: raised at the COMMIT
    assert not _seen_elsewhere(postgres_url, "twice")
    assert store.list_runs("acme") == []
    with atomic():  # the connection is ready for the next transaction
        assert store.trigger("acme", "many", actor="ops", now=T0) == run + 1


def test_a_rollback_to_a_savepoint_drops_the_writes_left_after_it(postgres_url, round_trips):
    with atomic():
        _left_for_later("kept")
        with pytest.raises(RuntimeError), atomic():
            _left_for_later("kept")  # would fail the transaction, were it sent
            raise RuntimeError("the savepoint rolls back")
    assert _seen_elsewhere(postgres_url, "kept")
    assert [q for q in round_trips if not q.startswith(b"PREPARE")] == [b"COMMIT"]  # nothing went out before


def test_a_savepoint_costs_no_round_trip_of_its_own(postgres_url, round_trips):
    with atomic():
        database.execute_sql("SELECT 1")
        with atomic():
            database.execute_sql("SELECT 2")
    assert round_trips == [b"SELECT 1", b"SELECT 2", b"COMMIT"]  # SAVEPOINT and RELEASE went with them


def _stored(message_id: str) -> None:
    ProcessedMessage.create(message_id=message_id, team="acme", kind="claim", processed_at=T0, reply=None)


def test_what_a_savepoint_sent_is_undone_by_its_rollback_and_the_transaction_goes_on(postgres_url):
    with atomic():
        _stored("before")
        with pytest.raises(RuntimeError), atomic():
            _stored("inside")  # sent at once (its id is returned)
            raise RuntimeError("the savepoint rolls back")
        _stored("after")
    assert [_seen_elsewhere(postgres_url, m) for m in ("before", "inside", "after")] == [True, False, True]


def test_an_error_caught_outside_a_savepoint_leaves_the_transaction_usable(postgres_url):
    with atomic():
        _stored("once")
        with pytest.raises(peewee.IntegrityError), atomic():  # as a message applied twice concurrently is
            _stored("once")
        _stored("then")
    assert _seen_elsewhere(postgres_url, "once") and _seen_elsewhere(postgres_url, "then")


def test_outside_a_transaction_writes_left_for_later_are_sent_at_once(postgres_url):
    _left_for_later("at-once")
    assert _seen_elsewhere(postgres_url, "at-once")


def test_a_duplicate_key_in_the_hot_paths_own_insert_is_peewees_integrity_error(postgres_url):
    row = {"message_id": "dup", "team": "acme", "kind": "claim", "processed_at": T0, "reply": {"ok": True},
           "instance": None}
    insert_rows(ProcessedMessage, [row])  # sent at once, on the driver's cursor
    with pytest.raises(peewee.IntegrityError, match="dup"):
        insert_rows(ProcessedMessage, [row])
    assert _seen_elsewhere(postgres_url, "dup")


def _terminate_this_session(postgres_url: str) -> None:
    (pid,) = database.execute_sql("SELECT pg_backend_pid()").fetchone()
    other = psycopg2.connect(postgres_url)
    other.autocommit = True
    try:
        other.cursor().execute("SELECT pg_terminate_backend(%s)", (pid,))
    finally:
        other.close()


def test_a_database_failure_in_the_hot_paths_own_statements_is_peewees_and_named_like_any_other(postgres_url):
    _terminate_this_session(postgres_url)
    # The outbox read of the relay runs on the driver's cursor; its error is peewee's, as callers catch.
    with pytest.raises(peewee.OperationalError) as raised:
        dialect().select_in("SELECT id FROM outbox WHERE id {}", [1], "bigint[]")
    described = describe_db_error(raised.value)
    assert described is not None and described.startswith("database postgresql://")
    assert "terminat" in described or "closed" in described
    drop_connection()
    assert dialect().select_in("SELECT id FROM outbox WHERE id {}", [1], "bigint[]").fetchall() == []


def test_a_connection_the_server_closed_answers_in_peewees_classes_until_dropped(tmp_path, postgres_url):
    """After its first failure psycopg2 says `connection already closed` at the cursor itself, in its own
    class: the bridge took that for a bug and refused every later message of that connection as `internal`
    (a database crash in a fault test) instead of dropping it and applying them again."""
    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    run = store.trigger("acme", "many", actor="cron", now=T0)
    offered = instance(run, "a")
    _terminate_this_session(postgres_url)
    with pytest.raises(peewee.OperationalError):
        dialect().select_in("SELECT id FROM outbox WHERE id {}", [1], "bigint[]")
    with pytest.raises(peewee.InterfaceError, match="connection already closed"):  # the hot path's reads
        dialect().select_in("SELECT id FROM outbox WHERE id {}", [1], "bigint[]")
    with pytest.raises(peewee.InterfaceError, match="connection already closed"):  # a unit's lock and read
        store.claim(offered.id, offered.token, "w", now=T0)
    drop_connection()
    assert store.claim(offered.id, offered.token, "w", now=T0).state == "running"


def test_a_ledger_id_skipped_over_is_looked_for_while_the_transaction_holding_it_is_open(tmp_path):
    """A follower reading the ledger by id misses the ids of a transaction that commits after a larger
    one: it looks for them past its wait for as long as that transaction is open, and once more after
    it ends (it may have committed them since the last read); then it gives them up. A transaction
    open past LONGEST is not waited for."""
    import threading

    from flow45.client.follower import LONGEST, Holes

    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    now = [0.0]

    def skipped_by_a_slow_writer(then: str):
        """The ledger's last id before, the follower's holes, and how to end the slow writer."""
        after = max(e.id for e in store.list_events(0))
        opened, finish = threading.Event(), threading.Event()

        def writer() -> None:
            with contextlib.suppress(RuntimeError), atomic():
                store.trigger("acme", "many", actor="slow", now=T0)
                opened.set()
                finish.wait(30)
                if then == "roll back":
                    raise RuntimeError("the writer gives up")

        slow = threading.Thread(target=writer)
        slow.start()
        assert opened.wait(10)
        store.trigger("acme", "many", actor="ops", now=T0)
        holes = Holes(wait=10.0, clock=lambda: now[0], writers=dialect())
        holes.read(after, [e.id for e in store.list_events(after)])
        now[0] += 11.0  # past the wait
        assert holes.reread_after(after + 10) == after  # open: looked for again from before it
        return after, holes, lambda: (finish.set(), slow.join(10))

    after, holes, end = skipped_by_a_slow_writer(then="commit")
    end()
    start = holes.reread_after(after + 10)
    assert start == after  # looked for once more
    holes.read(start, [e.id for e in store.list_events(start)])
    assert holes.reread_after(after + 10) == after + 10  # and found

    after, holes, end = skipped_by_a_slow_writer(then="roll back")
    end()
    assert holes.reread_after(after + 10) == after  # looked for once more
    assert holes.reread_after(after + 10) == after + 10  # not found: given up

    after, holes, end = skipped_by_a_slow_writer(then="commit")
    now[0] += LONGEST
    assert holes.reread_after(after + 10) == after + 10  # open for longer than is ever waited for
    end()


def test_a_skipped_id_is_looked_for_while_its_writer_is_open_though_it_began_after_the_one_that_committed(tmp_path):
    """The writer holding the skipped id began writing after the one that committed the larger id:
    its transaction id is above every ended one, and it is still waited for."""
    import threading

    from flow45.client.follower import Holes

    deploy_text(tmp_path, WORKFLOW.replace("{slots}", "null"))
    after = max(e.id for e in store.list_events(0))
    steps = {name: threading.Event() for name in ("first began", "held", "first may go", "release")}

    def first() -> None:  # begins writing first, takes its ledger ids last, commits
        with atomic():
            database.execute_sql("SELECT pg_current_xact_id()")
            steps["first began"].set()
            steps["first may go"].wait(30)
            Event.insert(at=T0, team="acme", kind="note", actor="ops").execute()  # nothing else commits after

    def holder() -> None:  # takes its ledger id in between and stays open
        with atomic():
            Event.insert(at=T0, team="acme", kind="note", actor="slow").execute()
            steps["held"].set()
            steps["release"].wait(30)

    threads = [threading.Thread(target=first), threading.Thread(target=holder)]
    threads[0].start()
    assert steps["first began"].wait(10)
    threads[1].start()
    assert steps["held"].wait(10)
    steps["first may go"].set()
    threads[0].join(10)
    try:
        now = [0.0]
        holes = Holes(wait=10.0, clock=lambda: now[0], writers=dialect())
        holes.read(after, [e.id for e in store.list_events(after)])
        now[0] += 11.0
        assert holes.reread_after(after + 10) == after
        assert holes.reread_after(after + 10) == after  # still open: not given up
    finally:
        steps["release"].set()
        threads[1].join(10)
