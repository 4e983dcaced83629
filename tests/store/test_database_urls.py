"""A PostgreSQL URL is read as libpq reads it: a Unix socket's directory as the host (percent-encoded,
or `?host=` in the query), query parameters winning over the parts before them, and a URL that
cannot be read refused with its password hidden, not a traceback."""

from __future__ import annotations

import sys
from urllib.parse import quote

import pytest

from flow45.db import connect, database
from flow45.dialect import for_url
from flow45.dialect.postgres import PostgresDialect
from flow45.errors import SettingsError
from flow45.models import Run
from tests.harness import commands


def _opened(url: str) -> tuple[str, dict]:
    db = PostgresDialect(url).db
    params = {k: v for k, v in db.connect_params.items() if k != "connection_factory"}
    return db.database, params


@pytest.mark.parametrize("url, expected", [
    ("postgresql://flow45:p%40ss@db.example:6432/runs",
     ("runs", {"user": "flow45", "password": "p@ss", "host": "db.example", "port": 6432})),
    ("postgresql://flow45@%2FRun%2FPostgreSQL/runs",  # a socket's directory keeps its case
     ("runs", {"user": "flow45", "password": None, "host": "/Run/PostgreSQL", "port": 5432})),
    ("postgresql://flow45@/runs?host=/run/postgresql",
     ("runs", {"user": "flow45", "password": None, "host": "/run/postgresql", "port": 5432})),
    ("postgresql://flow45@[::1]:6000/runs?sslmode=require",
     ("runs", {"user": "flow45", "password": None, "host": "::1", "port": 6000, "sslmode": "require"})),
    ("postgres://flow45@db/runs?dbname=other&user=ops",
     ("other", {"user": "ops", "password": None, "host": "db", "port": 5432})),
    ("postgresql:///runs", ("runs", {"user": None, "password": None, "host": "127.0.0.1", "port": 5432})),
])
def test_every_form_libpq_reads_is_read_the_same(url, expected):
    assert _opened(url) == expected


def test_a_port_that_is_no_port_is_refused_naming_the_url_without_its_password():
    with pytest.raises(SettingsError, match=r"^database URL postgresql://flow45:\*\*\*@db:99999/runs: the port must be"):
        PostgresDialect("postgresql://flow45:secret@db:99999/runs")


@pytest.mark.parametrize("url, expected", [
    ("postgresql://flow45:secret@[::1/runs", r"^database URL postgresql://\*\*\*: Invalid IPv6 URL$"),
    ("mysql://flow45:secret@db/runs", r"^database URL 'mysql://flow45:\*\*\*@db/runs': use sqlite:///PATH or postgresql://"),
])
def test_a_url_that_cannot_be_read_is_refused_without_its_password(url, expected):
    with pytest.raises(SettingsError, match=expected):
        for_url(url)


def test_the_command_line_says_so_too_without_a_traceback(tmp_path):
    result = commands.run([sys.executable, "-m", "flow45", "runs"], cwd=tmp_path,
                          env={"FLOW45_DATABASE_URL": "postgresql://flow45:secret@db:port/runs", "PATH": ""}, timeout=60)
    assert result.returncode != 0
    assert "the port must be a number from 1 to 65535" in result.stderr
    assert "secret" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.integration
@pytest.mark.parametrize("form", ["netloc", "query"])
def test_the_store_works_over_the_servers_unix_socket(postgres_server, postgres_url, form):
    socket_dir, port = str(postgres_server.dir), postgres_server.port
    url = (f"postgresql://postgres@{quote(socket_dir, safe='')}:{port}/flow45_test" if form == "netloc"
           else f"postgresql://postgres@/flow45_test?host={socket_dir}&port={port}")
    connect(url)
    try:
        (address,) = database.execute_sql("SELECT inet_server_addr()").fetchone()
        assert address is None  # no TCP address: the session came through the socket
        assert Run.table_exists()  # the store's own database, its schema there
    finally:
        database.close()
