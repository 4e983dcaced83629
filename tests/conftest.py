"""Fixtures: throwaway servers started on loopback, and the store on each backend.

Locally a missing server skips its tests; in CI (CI=true) it fails them.
"""

from __future__ import annotations

import atexit
import functools
import os
import shutil
import tempfile
from pathlib import Path

import pytest

from flow45.db import connect, database, forget_cached_rows
from flow45.migrate import ensure_schema
from flow45.models import ALL_TABLES
from flow45.settings import Settings, use_settings
from tests.harness import postgres, rabbitmq

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "config"
IN_CI = os.environ.get("CI") == "true"


def pytest_addoption(parser):
    parser.addoption(
        "--clock", metavar="ISO", default=None,
        help="run the tests with this process's clock pinned at a UTC moment (ticking on), e.g. 2028-02-29T23:59:30Z",
    )


def pytest_configure(config):
    moment = config.getoption("--clock")
    if moment:
        import time_machine

        from tests import pinned

        try:
            start = pinned.moment_of(moment)
        except ValueError as exc:
            raise pytest.UsageError(f"--clock: {exc} (e.g. 2028-02-29T23:59:30Z)") from None
        config._pinned_clock = time_machine.travel(start, tick=True)
        config._pinned_clock.start()
        pinned.ACTIVE = True


def pytest_unconfigure(config):
    if getattr(config, "_pinned_clock", None) is not None:
        config._pinned_clock.stop()


def pytest_report_header(config):
    moment = config.getoption("--clock")
    return f"clock pinned at {moment}, ticking" if moment else None


def pytest_terminal_summary(terminalreporter):
    """How often the harness started servers and ran rabbitmqctl, and the seconds they took: the
    suite's own cost, apart from the tests'."""
    counts: dict[str, list[float]] = {}
    for server, timings in (("PostgreSQL", postgres.PostgresServer.timings), ("RabbitMQ", rabbitmq.RabbitMQServer.timings)):
        for what, seconds in timings:
            counts.setdefault(f"{server} {what}", []).append(seconds)
    if counts:
        terminalreporter.write_sep("-", "throwaway servers")
        for what, seconds in sorted(counts.items()):
            terminalreporter.write_line(f"{what}: {len(seconds)} times, {sum(seconds):.1f}s")


def _unavailable(reason: str) -> None:
    if IN_CI:
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def postgres_server():
    ok, reason = postgres.available()
    if not ok:
        _unavailable(reason)
    server = postgres.PostgresServer().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def rabbitmq_server():
    ok, reason = rabbitmq.available()
    if not ok:
        _unavailable(reason)
    server = rabbitmq.RabbitMQServer(management=True).start()  # queues listed, users set over HTTP
    yield server
    server.stop()


@pytest.fixture(scope="session")
def postgres_url(postgres_server):
    """One database for the session, its schema created once; tests empty it."""
    url = postgres_server.create_database("flow45_test")
    connect(url, create=True)
    ensure_schema()
    database.close()
    return url


# Children before parents. DELETE, not TRUNCATE: on a few small tables it takes milliseconds where
# TRUNCATE takes tens (a new file per table), and it runs before every PostgreSQL test.
# The sequences restarted are those the emptied tables own (what TRUNCATE's RESTART IDENTITY restarts).
_EMPTIED = [t._meta.table_name for t in reversed(ALL_TABLES) if t._meta.table_name != "schema_version"]
_EMPTY_POSTGRES = "".join(f"DELETE FROM {name};" for name in _EMPTIED) + (
    "SELECT setval(s.oid, 1, false) FROM pg_class s"
    " JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.oid AND d.refclassid = 'pg_class'::regclass"
    " JOIN pg_class t ON t.oid = d.refobjid"
    " WHERE s.relkind = 'S' AND t.relname IN ({});".format(", ".join(f"'{name}'" for name in _EMPTIED))
)


def _empty_postgres() -> None:
    """Empty every table and restart every id at 1, as a fresh database would have them."""
    with database.atomic():
        database.execute_sql(_EMPTY_POSTGRES)
    forget_cached_rows()


@pytest.fixture
def pg_store(postgres_url):
    """The store on PostgreSQL, empty, bound as the settings' database."""
    use_settings(Settings(database_url=postgres_url))
    db = connect(postgres_url)
    ensure_schema()
    _empty_postgres()
    yield db
    db.close()


@pytest.fixture(autouse=True)
def default_settings():
    """Every test starts from the embedded default settings, whatever the environment says."""
    use_settings(Settings())
    yield
    use_settings(None)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def backend(request, tmp_path):
    return request.param


@pytest.fixture
def db_url(backend, tmp_path, request):
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'flow45.db'}"
    return request.getfixturevalue("postgres_url")


@functools.cache
def _schema_template() -> Path:
    """One SQLite store with the schema made, for this test process."""
    folder = Path(tempfile.mkdtemp(prefix="flow45-schema-"))
    atexit.register(shutil.rmtree, folder, True)
    template = folder / "schema.db"
    connect(f"sqlite:///{template}", create=True)
    ensure_schema()
    database.close()
    return template


def new_sqlite_store(path: Path) -> None:
    """An empty store at `path`, its schema made: a copy of one made once a process (making the schema
    anew took about 30 ms, before most SQLite tests; the copy takes 2)."""
    shutil.copyfile(_schema_template(), path)


@pytest.fixture
def store_db(db_url, backend):
    """The store, schema ready and empty, on each backend in turn."""
    if backend == "sqlite":
        new_sqlite_store(Path(db_url.removeprefix("sqlite:///")))
    use_settings(Settings(database_url=db_url))
    db = connect(db_url, create=True)
    ensure_schema()
    if backend == "postgresql":
        _empty_postgres()
    yield db
    db.close()
