"""The command-line fuzzer's hostile arguments (tests/cli/test_cli_fuzz.py) through the broker: team
reports' operator with only its broker URL, each command's client the one the command line makes then
(bridge.remote.RemoteClient), on a real bridge, RabbitMQ and PostgreSQL. Both teams have runs of the
same workflows. Whatever the arguments, the command is done or refused plainly, never a traceback, and
nothing of team rival changes."""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from bridge.remote import RemoteClient
from flow45.cli import base, commands, flows, human, main, notify, optools, service
from flow45.cli.base import UsageError
from flow45.models import Run, TaskInstance
from tests.cli.test_cli_fuzz import COMMANDS, assert_done_or_refused_plainly, command_lines, fill_store

pytestmark = pytest.mark.integration


def _rival_rows() -> list[tuple]:
    return list(TaskInstance.select(TaskInstance.id, TaskInstance.state, TaskInstance.token, Run.status)
                .join(Run, on=(Run.id == TaskInstance.run)).where(Run.team == "rival").order_by(TaskInstance.id)
                .tuples())


@pytest.fixture
def reports_operator(bridge_env, tmp_path, capsys, monkeypatch):
    fill_store(tmp_path, "reports")
    fill_store(tmp_path, "rival")
    url = bridge_env.url("reports-ops")

    def through_broker(args, create=False):
        """What flow45.cli.base._client gives with only FLOW45_AMQP_URL set (here the bridge's own
        settings, database included, stay in place for the bridge in this process)."""
        if getattr(args, "actor_given", False):
            raise UsageError("--as names the actor on the database only")
        return RemoteClient(url, team="reports")

    for module in (base, commands, flows, human, notify, optools, service):
        if hasattr(module, "_client"):
            monkeypatch.setattr(module, "_client", through_broker)

    def run(*argv: str):
        try:
            code = main(list(argv))
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


@pytest.mark.parametrize("command", COMMANDS)
@settings(max_examples=int(os.environ.get("FLOW45_FUZZ_EXAMPLES", "6")), deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.data())
def test_any_command_line_through_the_broker_is_done_or_refused_plainly_and_crosses_no_team(
        reports_operator, command, data):
    rival = _rival_rows()
    argv = data.draw(command_lines(command, left_out=frozenset({"--as"})), label="argv")  # refused through the broker
    assert_done_or_refused_plainly(reports_operator, command, argv)
    assert _rival_rows() == rival, "a command of reports' operator changed team rival's runs"
