"""An operator with nothing but its own broker URL: `flow45 bridge deploy|trigger|undo` as a program,
no settings file, no database URL; and a broker that refuses is told in one line."""

from __future__ import annotations

import json
import subprocess
import sys
from urllib.parse import urlsplit

import pytest

from flow45 import store
from tests.bridge.conftest import PASSWORDS
from tests.conftest import EXAMPLES
from tests.harness import commands

pytestmark = pytest.mark.integration


def operator(url: str, *args: str, cwd, **env: str) -> subprocess.CompletedProcess:
    """`flow45 ARGS` with only the operator's URL (and PATH, HOME) in the environment."""
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(cwd), "FLOW45_AMQP_URL": url, **env}
    return commands.run([sys.executable, "-m", "flow45", *args], cwd=cwd, env=environ, timeout=60)


def one_line(done: subprocess.CompletedProcess) -> str:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    return lines[0]


def test_an_operator_needs_only_its_broker_url(bridge_env, tmp_path, tmp_path_factory):
    ops = bridge_env.url("reports-ops")
    done = operator(ops, "bridge", "deploy", str(EXAMPLES), cwd=tmp_path)
    assert done.returncode == 0 and "reports/monthly_report v1: created" in done.stdout, done.stderr
    done = operator(ops, "bridge", "trigger", "reports/monthly_report", "--params", '{"month": "2026-10"}',
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    run = int(done.stdout.split()[1])
    extract = store.get_run(run).instances[0]
    assert extract.task == "extract"
    before = store.list_events(0, run=run, limit=100)

    done = operator(ops, "bridge", "undo", str(extract.id), "--reason", "recheck", "--dry-run", "--team", "reports",
                    cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert [a["task"] for a in json.loads(done.stdout)["affected"]] == ["extract"]
    assert store.list_events(0, run=run, limit=100) == before  # a dry run changes nothing
    done = operator(ops, "bridge", "undo", str(extract.id), "--reason", "recheck", cwd=tmp_path, FLOW45_TEAM="reports")
    assert done.returncode == 0, done.stderr
    undone = store.list_events(before[-1].id, run=run, limit=100)
    assert undone and {(e.kind, e.actor) for e in undone} == {("undo", "reports-ops")}
    changed = tmp_path_factory.mktemp("v2") / "reports.yaml"
    changed.write_text((EXAMPLES / "reports.yaml").read_text().replace("max_active_runs: 2", "max_active_runs: 3"))
    for month in ("2026-11", "2026-12"):  # the second waits queued for a slot
        assert operator(ops, "bridge", "trigger", "reports/monthly_report", "--params", f'{{"month": "{month}"}}',
                        cwd=tmp_path).returncode == 0
    done = operator(ops, "bridge", "deploy", str(changed), cwd=tmp_path)
    assert done.returncode == 0 and ("reports/monthly_report v2: updated\n  max_active_runs: 2 -> 3\n"
                                     "reports/monthly_report: started 1 queued run(s), the oldest first\n"
                                     in done.stdout), done.stdout
    done = operator(ops, "versions", "reports/monthly_report", cwd=tmp_path)
    assert done.returncode == 0 and "by reports-ops" in done.stdout.splitlines()[1], done.stderr
    assert list(tmp_path.iterdir()) == []  # no store, no settings: nothing made here


def test_another_teams_exchange_is_refused_in_one_line(bridge_env, tmp_path):
    ops = bridge_env.url("reports-ops")
    line = one_line(operator(ops, "bridge", "undo", "1", "--reason", "r", "--team", "rival", cwd=tmp_path))
    assert "broker user 'reports-ops' may not send to 'flow45.in.rival'" in line
    # a user allowed everywhere (the bridge's own, here) learns that no such team's exchange exists
    line = one_line(operator(bridge_env.rabbit.amqp_url, "bridge", "undo", "1", "--reason", "r", "--team", "nosuch",
                             cwd=tmp_path))
    assert "the broker has no exchange 'flow45.in.nosuch'" in line


def _with(url: str, password: str | None = None, vhost: str | None = None) -> str:
    parts = urlsplit(url)
    netloc = f"{parts.username}:{password or parts.password}@{parts.hostname}:{parts.port}"
    return parts._replace(netloc=netloc, path=f"/{vhost}" if vhost else parts.path).geturl()


@pytest.mark.parametrize("command", [["bridge", "trigger", "reports/monthly_report"],
                                     ["bridge", "deploy", str(EXAMPLES)]], ids=["trigger", "deploy"])
@pytest.mark.parametrize("fault, expected", [
    ("password", "access refused: wrong user name or password"),
    ("vhost", "vhost 'nope' not found or not allowed for user 'reports-ops'"),
])
def test_a_broker_refusal_is_one_line_naming_the_url(broker_users, tmp_path, command, fault, expected):
    port = broker_users.port
    good = f"amqp://reports-ops:{PASSWORDS['reports-ops']}@127.0.0.1:{port}/%2F"
    url = _with(good, password="wrong-pw") if fault == "password" else _with(good, vhost="nope")
    line = one_line(operator(url, *command, cwd=tmp_path))
    vhost = "nope" if fault == "vhost" else "%2F"
    assert line == f"flow45: cannot connect to amqp://reports-ops:***@127.0.0.1:{port}/{vhost}: {expected}"
