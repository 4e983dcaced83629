"""A database that cannot be used is told in one line naming its URL (password hidden), exit 1, no
traceback; and a command that only reads never creates a store: only `db upgrade`, `deploy` and
`demo` do. Each case runs `python -m flow45` as a user would, with nothing but the environment (a short
command in a fork of a warm interpreter: tests/harness/commands.py)."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import time

import psycopg2
import pytest

from flow45.db import connect, database
from flow45.migrate import ensure_schema
from tests.conftest import EXAMPLES
from tests.harness import commands

RUN_UNTIL_STOPPED = ("scheduler", "serve", "demo", "tui")  # and `bridge run`: processes of their own
READ_ONLY = [
    ["workflows"], ["runs"], ["show", "1"], ["instance", "1"], ["events"], ["graph", "reports/monthly_report"],
    ["schema"], ["tui"], ["health"],
]


def flow45(*args: str, cwd, database_url: str | None = None, **env: str) -> subprocess.CompletedProcess:
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), **env}
    if database_url is not None:
        environ["FLOW45_DATABASE_URL"] = database_url
    argv = [sys.executable, "-m", "flow45", *args]
    if args[0] in RUN_UNTIL_STOPPED or args[:2] == ("bridge", "run"):
        return subprocess.run(argv, cwd=cwd, env=environ, capture_output=True, text=True, timeout=60)
    return commands.run(argv, cwd=cwd, env=environ, timeout=60)


def default_store(cwd) -> None:
    """The store `flow45 db upgrade` makes in `cwd` with no settings, made in this process: a Python
    start-up less than a `db upgrade` (which a test of its own runs as a user would)."""
    connect(f"sqlite:///{cwd / 'flow45.db'}", create=True)
    ensure_schema()
    database.close()


def assert_one_line(done: subprocess.CompletedProcess, *expected: str) -> str:
    """Exit 1, and stderr one line holding each expected text; returns the line."""
    assert done.returncode == 1, (done.returncode, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    for text in expected:
        assert text in lines[0]
    return lines[0]


@pytest.mark.parametrize("command", READ_ONLY, ids=lambda c: c[0])
def test_a_read_only_command_in_an_empty_folder_creates_nothing(tmp_path, command):
    done = flow45(*command, cwd=tmp_path)
    assert_one_line(done, "no Flow45 database at sqlite:///flow45.db", "run `flow45 db upgrade` to create it")
    assert list(tmp_path.iterdir()) == []


def test_a_missing_folder_is_refused_not_made(tmp_path):
    url = f"sqlite:///{tmp_path}/nonexistent/dir/x.db"
    for command in (["runs"], ["trigger", "reports/monthly_report"], ["undo", "1", "--reason", "r"]):
        assert_one_line(flow45(*command, cwd=tmp_path, database_url=url), f"no Flow45 database at {url}", "db upgrade")
    assert not (tmp_path / "nonexistent").exists()


def test_db_upgrade_creates_the_store_the_readers_then_use(tmp_path):
    url = f"sqlite:///{tmp_path}/new/dir/x.db"
    done = flow45("db", "upgrade", cwd=tmp_path, database_url=url)
    assert done.returncode == 0 and "schema at version" in done.stdout, done.stderr
    assert (tmp_path / "new" / "dir" / "x.db").is_file()
    done = flow45("runs", cwd=tmp_path, database_url=url)
    assert done.returncode == 0 and done.stdout.startswith("RUN"), done.stderr


def test_deploy_creates_the_embedded_store(tmp_path):
    assert flow45("deploy", str(EXAMPLES), cwd=tmp_path).returncode == 0
    done = flow45("workflows", cwd=tmp_path)
    assert done.returncode == 0 and "monthly_report" in done.stdout


@pytest.mark.integration
def test_an_empty_postgresql_database_is_refused_and_left_empty(postgres_server, tmp_path):
    url = postgres_server.create_database("flow45_cli_empty")
    for command in [*READ_ONLY[:3], ["health"]]:
        assert_one_line(flow45(*command, cwd=tmp_path, database_url=url),
                        f"no Flow45 schema in {url}", "run `flow45 db upgrade`")
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone()[0] == 0


@pytest.mark.integration
def test_a_service_does_not_create_the_schema_either(postgres_server, tmp_path):
    url = postgres_server.create_database("flow45_cli_service")
    done = flow45("scheduler", cwd=tmp_path, database_url=url)
    assert done.returncode == 1 and "Traceback" not in done.stderr
    assert f"flow45: no Flow45 schema in {url}: run `flow45 db upgrade`" in done.stderr
    with psycopg2.connect(url) as conn, conn.cursor() as cur:
        cur.execute("SELECT count(*) FROM information_schema.tables WHERE table_schema = 'public'")
        assert cur.fetchone()[0] == 0
    done = flow45("serve", cwd=tmp_path)  # the embedded default: no flow45.db here
    assert done.returncode == 1 and "no Flow45 database at sqlite:///flow45.db" in done.stderr
    assert not (tmp_path / "flow45.db").exists()


@pytest.mark.parametrize("backend", ["sqlite", pytest.param("postgresql", marks=pytest.mark.integration)])
def test_a_store_a_newer_flow45_upgraded_is_refused_and_left_as_it_is(backend, request, tmp_path):
    from flow45.migrate import CURRENT

    if backend == "sqlite":
        url = f"sqlite:///{tmp_path}/flow45.db"
    else:
        url = request.getfixturevalue("postgres_server").create_database("flow45_cli_newer")
    assert flow45("deploy", str(EXAMPLES), cwd=tmp_path, database_url=url).returncode == 0
    conn = sqlite3.connect(tmp_path / "flow45.db") if backend == "sqlite" else psycopg2.connect(url)
    with conn:
        conn.cursor().execute(f"INSERT INTO schema_version (version, applied_at) VALUES ({CURRENT + 1}, CURRENT_TIMESTAMP)")
    said = f"the database is at schema version {CURRENT + 1}, newer than this Flow45 ({CURRENT}): upgrade Flow45"
    for command in (["trigger", "reports/monthly_report"], ["runs"], ["deploy", str(EXAMPLES)], ["db", "upgrade"]):
        assert_one_line(flow45(*command, cwd=tmp_path, database_url=url), said)
    done = flow45("scheduler", cwd=tmp_path, database_url=url)
    assert done.returncode == 1 and said in done.stderr and "Traceback" not in done.stderr
    cur = conn.cursor()
    cur.execute("SELECT count(*) FROM run")
    assert cur.fetchone()[0] == 0
    conn.close()


@pytest.mark.integration
def test_a_missing_postgresql_database_names_the_url(postgres_server, tmp_path):
    url = postgres_server.url_for("flow45_no_such_db")
    assert_one_line(flow45("runs", cwd=tmp_path, database_url=url),
                    f"cannot connect to {url}", 'database "flow45_no_such_db" does not exist')


@pytest.fixture(scope="module")
def password_user(postgres_server):
    """A role that needs its password over TCP, and the database it may use."""
    postgres_server.add_password_user("flow45_ann", "right-secret")
    url = postgres_server.create_database("flow45_cli_ann")
    deadline = time.monotonic() + 30
    while True:  # the server reloads pg_hba.conf in the background
        try:
            psycopg2.connect(url.replace("postgres@", "flow45_ann:wrong@"), connect_timeout=5).close()
        except psycopg2.OperationalError as exc:
            if "password authentication failed" in str(exc):
                break
        assert time.monotonic() < deadline, "pg_hba.conf was not reloaded"
        time.sleep(0.1)
    return url


@pytest.mark.integration
def test_a_wrong_database_password_is_one_line_without_the_password(password_user, tmp_path):
    url = password_user.replace("postgres@", "flow45_ann:wrong-secret@")
    line = assert_one_line(flow45("runs", cwd=tmp_path, database_url=url),
                           "cannot connect to postgresql://flow45_ann:***@", "wrong user name or password")
    assert "wrong-secret" not in line


@pytest.mark.integration
def test_a_wrong_database_port_is_one_line_without_the_password(postgres_server, tmp_path):
    from tests.harness.ports import free_port

    url = f"postgresql://flow45_ann:right-secret@127.0.0.1:{free_port()}/flow45"
    line = assert_one_line(flow45("workflows", cwd=tmp_path, database_url=url),
                           "cannot connect to postgresql://flow45_ann:***@127.0.0.1:", "connection refused")
    assert "right-secret" not in line


def test_setup_broker_print_shows_no_password_and_stops_without_them(tmp_path):
    settings = tmp_path / "flow45.yaml"
    settings.write_text(
        "amqp_url: amqp://flow45-bridge:bridge-secret@rabbit:5672/flow45\n"
        "teams: {reports: {users: {reports-ops: operator, reports-worker: worker}}}\n"
    )
    done = flow45("bridge", "setup-broker", "--print", "--rabbitmqctl", "echo", cwd=tmp_path,
                  FLOW45_SETTINGS=str(settings))
    assert done.returncode == 0 and done.stderr == ""
    assert "bridge-secret" not in done.stdout
    assert 'add_user reports-ops "${PASSWORD_REPORTS_OPS:?}"' in done.stdout
    script = tmp_path / "setup.sh"
    script.write_text(done.stdout)
    # run as printed (here with `echo` for rabbitmqctl): it stops rather than make a user with no password
    ran = subprocess.run(["bash", "-e", str(script)], capture_output=True, text=True, env={"PATH": "/usr/bin:/bin"})
    assert ran.returncode != 0 and "PASSWORD_FLOW45_BRIDGE" in ran.stderr
    with_passwords = {"PATH": "/usr/bin:/bin", "PASSWORD_FLOW45_BRIDGE": "b1", "PASSWORD_REPORTS_OPS": "o1",
                      "PASSWORD_REPORTS_WORKER": "w1"}
    ran = subprocess.run(["bash", "-e", str(script)], capture_output=True, text=True, env=with_passwords)
    assert ran.returncode == 0 and "add_user reports-ops o1" in ran.stdout.splitlines()
    assert "set_user_tags reports-ops flow45" in ran.stdout.splitlines()  # the users it makes are marked
    assert "#   echo clear_permissions -p flow45 USER" in done.stdout  # and how a later run takes them back


def test_setup_broker_without_rabbitmqctl_is_one_line(tmp_path):
    settings = tmp_path / "flow45.yaml"
    settings.write_text("amqp_url: amqp://flow45-bridge:bridge-secret@rabbit:5672/flow45\n")
    done = flow45("bridge", "setup-broker", "--rabbitmqctl", "no-such-ctl", cwd=tmp_path, FLOW45_SETTINGS=str(settings))
    assert_one_line(done, "cannot run 'no-such-ctl'", "--rabbitmqctl")


def test_bridge_undo_without_a_team_asks_for_one(tmp_path):
    done = flow45("bridge", "undo", "7", "--reason", "r", cwd=tmp_path,
                  FLOW45_AMQP_URL="amqp://reports-ops:secret@127.0.0.1:1/%2F")
    assert done.returncode == 2 and "--team TEAM (or FLOW45_TEAM)" in done.stderr
    assert "Traceback" not in done.stderr and "secret" not in done.stderr


def test_bridge_run_without_a_broker_url_says_which_setting_is_missing(tmp_path):
    done = flow45("bridge", "run", cwd=tmp_path, database_url=f"sqlite:///{tmp_path}/flow45.db")
    assert_one_line(done, "no broker configured: set FLOW45_AMQP_URL (or amqp_url in the settings file)")


def test_a_broker_that_is_not_listening_is_one_line(tmp_path):
    from tests.harness.ports import free_port

    url = f"amqp://reports-ops:secret@127.0.0.1:{free_port()}/%2F"
    done = flow45("bridge", "trigger", "reports/monthly_report", cwd=tmp_path, FLOW45_AMQP_URL=url)
    line = assert_one_line(done, f"cannot connect to {url.replace(':secret@', ':***@')}", "connection refused")
    assert "secret" not in line


def test_bridge_deploy_names_a_file_it_cannot_send_before_it_sends_any(tmp_path):
    for team in ("a", "b"):
        (tmp_path / "config" / team).mkdir(parents=True)
        (tmp_path / "config" / team / "reports.yaml").write_text((EXAMPLES / "reports.yaml").read_text())
    (tmp_path / "config" / "latin1.yaml").write_bytes(b"team: reports\n# caf\xe9\n")
    done = flow45("bridge", "deploy", str(tmp_path / "config"), cwd=tmp_path,
                  FLOW45_AMQP_URL="amqp://reports-ops:secret@127.0.0.1:1/%2F")
    assert done.returncode == 1 and "Traceback" not in done.stderr, done.stderr
    assert done.stderr.splitlines()[1:] == [
        f"  {tmp_path}/config/b/reports.yaml: has the name of {tmp_path}/config/a/reports.yaml, and the bridge takes "
        "each file by its name alone: rename one",
        f"  {tmp_path}/config/latin1.yaml: not UTF-8 text (byte 19)",
    ]


def test_the_demo_with_a_broker_that_is_not_there_stops_before_making_its_store(tmp_path):
    from tests.harness.ports import free_port

    url = f"amqp://guest:secret@127.0.0.1:{free_port()}/%2F"
    done = flow45("demo", "--headless", cwd=tmp_path, FLOW45_AMQP_URL=url)
    assert_one_line(done, f"cannot connect to {url.replace(':secret@', ':***@')}", "connection refused")
    assert not (tmp_path / "flow45-demo.db").exists()


@pytest.mark.parametrize("args, said", [
    (["runs", "--since", "99999999d"], "argument --since: '99999999d' is too long ago to be a date"),
    (["runs", "--until", "0001-01-01T00:00:00+01:00"], "argument --until: '0001-01-01T00:00:00+01:00' is too long ago"),
    (["runs", "--since", "2027-02-29"],
     "argument --since: '2027-02-29' names no real day or time: day is out of range for month"),
    (["events", "--until", "2026-13-01"],
     "argument --until: '2026-13-01' names no real day or time: month must be in 1..12"),
    (["show", "1", "--as-of", "2026-03-01T25:00:00Z"],
     "argument --as-of: '2026-03-01T25:00:00Z' names no real day or time: hour must be in 0..23"),
    (["show", "1", "--as-of", "0001-01-01T00:30:00+01:00"],
     "argument --as-of: '0001-01-01T00:30:00+01:00' is outside the calendar once made UTC"),
    (["trigger", "acme/x", "--logical-time", "2026-02-29T06:00:00Z"],
     "argument --logical-time: '2026-02-29T06:00:00Z' names no real day or time: day is out of range for month"),
    (["runs", "--since", "last week"], "argument --since: expected a date such as 2026-03-01"),
])
def test_a_time_argument_too_long_ago_or_not_on_the_calendar_is_a_usage_error(tmp_path, args, said):
    done = flow45(*args, cwd=tmp_path)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


@pytest.mark.parametrize("args, said", [
    (["show", "9223372036854775808"], "argument run: expected a number up to 9223372036854775807"),
    (["runs", "--limit", "99999999999999999999"], "argument --limit: expected a number up to 9223372036854775807"),
    (["events", "--after", "99999999999999999999"], "argument --after: expected a number up to 9223372036854775807"),
    (["events", "--after", "-1"], "argument --after: expected a number from 0, got -1"),
    (["stats", "reports/monthly_report", "--runs", "-1"], "argument --runs: expected a positive number, got -1"),
    (["health", "--max-age", "2m"], "argument --max-age: expected a number of seconds, got '2m'"),
    (["health", "--max-age", "nan"], "argument --max-age: expected a positive number of seconds, got nan"),
    (["health", "--timeout", "-1"], "argument --timeout: expected a positive number of seconds, got -1"),
    (["health", "--timeout", "1e30"], "argument --timeout: expected at most 315360000 seconds (ten years), got 1e30"),
    (["show", "0"], "argument run: expected a positive number, got 0"),
])
def test_a_number_out_of_range_or_without_its_unit_is_a_usage_error_on_any_store(tmp_path, args, said):
    default_store(tmp_path)  # SQLite: its driver would raise OverflowError
    done = flow45(*args, cwd=tmp_path)
    assert done.returncode == 2 and said in done.stderr, done.stderr
    assert "Traceback" not in done.stderr


def test_the_largest_id_is_looked_up_and_not_found(tmp_path):
    default_store(tmp_path)
    assert_one_line(flow45("instance", "9223372036854775807", cwd=tmp_path), "task instance 9223372036854775807 not found")


def test_runs_until_the_calendars_last_day_lists_every_run(tmp_path):
    assert flow45("deploy", str(EXAMPLES), cwd=tmp_path).returncode == 0
    assert flow45("trigger", "reports/monthly_report", "--params", '{"month": "2026-11"}', cwd=tmp_path).returncode == 0
    done = flow45("runs", "--until", "9999-12-31", "--json", cwd=tmp_path)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert [run["workflow"] for run in json.loads(done.stdout)] == ["monthly_report"]


def test_a_file_the_demo_cannot_write_is_named_without_a_traceback(tmp_path):
    (tmp_path / "a-file").write_text("not a folder")
    done = flow45("demo", "--headless", "--output", str(tmp_path / "a-file" / "out"), cwd=tmp_path)
    assert_one_line(done, f"{tmp_path / 'a-file' / 'out'}: Not a directory")
    done = flow45("demo", "--headless", "--database", str(tmp_path / "a-file" / "demo.db"), cwd=tmp_path)
    assert_one_line(done, "a-file/demo.db", "Not a directory")


@pytest.mark.parametrize("args, unknown, command", [
    (["deploy", str(EXAMPLES), "--pr"], "--pr", "deploy"), (["runs", "--lim", "3"], "--lim 3", "runs"),
    (["bridge", "run", "--hel"], "--hel", "bridge run"),
])
def test_an_option_is_taken_only_as_written_in_full(tmp_path, args, unknown, command):
    """`--pr` does not retire workflows as `--prune` would; an abbreviation that works today would
    mean something else once an option sharing its start is added. The command refuses it with its
    own usage, which lists the options it does take."""
    done = flow45(*args, cwd=tmp_path)
    assert done.returncode == 2 and f"flow45 {command}: error: unrecognized arguments: {unknown}" in done.stderr
    assert done.stderr.startswith(f"usage: flow45 {command} [-h]")
    assert not (tmp_path / "flow45.db").exists()


def test_an_option_a_command_does_not_have_is_refused_with_that_commands_usage(tmp_path):
    done = flow45("events", "--grep", "claim", cwd=tmp_path)
    assert done.returncode == 2 and done.stderr.startswith("usage: flow45 events [-h]")
    assert "flow45 events: error: unrecognized arguments: --grep claim" in done.stderr
    done = flow45("callback", "complete", "key-1", "--output", "{}", "--later", cwd=tmp_path)
    assert "flow45 callback complete: error: unrecognized arguments: --later" in done.stderr


def test_a_misspelt_database_variable_stops_a_deploy_before_it_makes_a_store_of_its_own(tmp_path):
    done = flow45("deploy", str(EXAMPLES), cwd=tmp_path,
                  FLOW45_DATABSE_URL="postgresql://flow45@127.0.0.1:1/flow45")
    assert_one_line(done, "FLOW45_DATABSE_URL is not a Flow45 setting; did you mean FLOW45_DATABASE_URL?")
    assert list(tmp_path.iterdir()) == [], "no SQLite file of the embedded default"


def test_the_examples_zones_are_known_on_a_machine_without_a_zone_database(tmp_path):
    """Slim container images have no /usr/share/zoneinfo: the zones come with Flow45 (tzdata)."""
    (tmp_path / "no-zoneinfo").mkdir()
    done = flow45("validate", str(EXAMPLES), cwd=tmp_path, PYTHONTZPATH=str(tmp_path / "no-zoneinfo"))
    assert done.returncode == 0 and done.stdout.startswith("ok: team reports"), done.stderr
