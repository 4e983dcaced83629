"""Installation settings: a YAML file named by FLOW45_SETTINGS, overridden by FLOW45_* variables."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from flow45.errors import SettingsError
from flow45.settings import DEFAULT_DATABASE_URL, load_settings

FILE = """
database_url: postgresql://flow45@db.internal/flow45
default_lease: 2m
teams:
  reports: {users: {reports-worker: worker, alice: operator}}
"""


@pytest.fixture
def settings_file(tmp_path):
    path = tmp_path / "flow45.yaml"
    path.write_text(FILE)
    return path


def test_nothing_set_means_the_embedded_default():
    settings = load_settings({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.team_allowed("anyone")


def test_settings_from_the_file_named_in_the_environment(monkeypatch, settings_file):
    monkeypatch.setenv("FLOW45_SETTINGS", str(settings_file))
    settings = load_settings()
    assert settings.database_url == "postgresql://flow45@db.internal/flow45"
    assert settings.default_lease == 120
    assert settings.teams["reports"].users == {"reports-worker": "worker", "alice": "operator"}
    assert settings.team_allowed("reports") and not settings.team_allowed("sales")


def test_environment_variables_override_the_file(settings_file):
    settings = load_settings({
        "FLOW45_SETTINGS": str(settings_file),
        "FLOW45_DATABASE_URL": "sqlite:////var/lib/flow45.db",
        "FLOW45_DEFAULT_LEASE": "10m",
        "FLOW45_TEAMS": '{"sales": {"users": {"bob": "operator"}}}',
    })
    assert settings.database_url == "sqlite:////var/lib/flow45.db"
    assert settings.default_lease == 600
    assert list(settings.teams) == ["sales"]
    assert settings.teams["sales"].users == {"bob": "operator"}


def test_a_bad_value_is_refused_naming_where_it_came_from(settings_file):
    with pytest.raises(SettingsError) as refused:
        load_settings({"FLOW45_SETTINGS": str(settings_file), "FLOW45_DEFAULT_LEASE": "soon",
                       "FLOW45_OUTPUT_MAX_BYTES": "16k"})
    assert str(refused.value) == (
        "environment: output_max_bytes: Input should be a valid integer, unable to parse string as an integer; "
        "environment: default_lease: 'soon' is not a duration: use forms such as 30s, 10m, 1h30m, 2d")
    settings_file.write_text(FILE + "relay_interval: never\n")
    with pytest.raises(SettingsError) as refused:
        load_settings({"FLOW45_SETTINGS": str(settings_file), "FLOW45_SWEEP_INTERVAL": "0s"})
    assert str(refused.value) == (f"{settings_file}: relay_interval: 'never' is not a duration: use forms such as "
                                  "30s, 10m, 1h30m, 2d; environment: sweep_interval: Input should be greater than 0")


def test_a_broker_user_in_two_teams_is_refused(settings_file):
    settings_file.write_text(FILE + "  sales: {users: {alice: operator}}\n")
    with pytest.raises(SettingsError) as refused:
        load_settings({"FLOW45_SETTINGS": str(settings_file)})
    assert str(refused.value) == (f"{settings_file}: teams.sales.users.alice: already a user of team reports; a broker "
                                  "user acts for one team (give each team users of its own)")


def test_unknown_key_is_refused_naming_file_and_key(tmp_path):
    path = tmp_path / "flow45.yaml"
    path.write_text("databse_url: sqlite:///x.db\n")
    with pytest.raises(SettingsError, match=re.escape(f"{path}: databse_url: Extra inputs are not permitted")):
        load_settings({"FLOW45_SETTINGS": str(path)})


@pytest.mark.parametrize("environ, words", [
    ({"FLOW45_TEAMS": "{reports: {}}"}, "FLOW45_TEAMS is not valid JSON"),
    ({"FLOW45_DEFAULT_LEASE": "soon"}, "default_lease: .*'soon' is not a duration"),
    ({"FLOW45_DEFAULT_LEASE": "inf"}, "default_lease: .*'inf' is not a duration"),
    ({"FLOW45_DEFAULT_RETRY_DELAY": "1e400"}, "default_retry_delay: .*'1e400' is not a duration"),
    ({"FLOW45_DEFAULT_LEASE": "36501d"}, r"default_lease: .*'36501d' is longer than a century \(36500d\)"),
    ({"FLOW45_TEAMS": '{"reports": {"users": {"bob": "admin"}}}'}, "teams.reports.users.bob"),
    # 0 would tick, poll and re-offer without pause, or expire every claim as it is granted
    ({"FLOW45_SWEEP_INTERVAL": "0"}, "sweep_interval: Input should be greater than 0"),
    ({"FLOW45_RELAY_INTERVAL": "0s"}, "relay_interval: Input should be greater than 0"),
    ({"FLOW45_OFFER_QUIET_PERIOD": "0ms"}, "offer_quiet_period: Input should be greater than 0"),
    ({"FLOW45_DEFAULT_LEASE": "0"}, "default_lease: Input should be greater than 0"),
    ({"FLOW45_METRICS_PORT": "70000"}, "metrics_port: Input should be less than or equal to 65535"),
    ({"FLOW45_LEDGER_RETENTION": "forever"}, "ledger_retention: Input should be 'keep' or 'prune'"),
])
def test_bad_environment_values_are_refused(environ, words):
    with pytest.raises(SettingsError, match=words):
        load_settings(environ)


def test_unreadable_settings_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(SettingsError, match=re.escape(f"FLOW45_SETTINGS={missing}: cannot read: No such file")):
        load_settings({"FLOW45_SETTINGS": str(missing)})
    with pytest.raises(SettingsError, match="cannot read: Is a directory"):
        load_settings({"FLOW45_SETTINGS": str(tmp_path)})


@pytest.mark.parametrize("text, words", [
    ("database_url: [unclosed\n", "flow45.yaml:2:1: did not find expected ',' or ']'"),
    ("- a\n- b\n", "expected a mapping"),
    ("database_url: sqlite:///a.db\ndatabase_url: sqlite:///b.db\n", "flow45.yaml:2:1: duplicate key 'database_url'"),
    (b"database_url: \xf6\n", "flow45.yaml: not UTF-8 text"),
])
def test_settings_file_that_is_not_a_mapping_of_settings(tmp_path, text, words):
    path = tmp_path / "flow45.yaml"
    path.write_bytes(text) if isinstance(text, bytes) else path.write_text(text)
    with pytest.raises(SettingsError, match=re.escape(words)):
        load_settings({"FLOW45_SETTINGS": str(path)})


@pytest.mark.parametrize("url, problem", [
    ("amqp://flow45-bridge@rabbit/flow45", "give the password of 'flow45-bridge'"),
    ("amqp://bridge:secret@[::1/flow45", "Invalid IPv6 URL"),
    ("amqp://bridge:secret@rabbit:99999/flow45", "Port out of range"),
    ("http://bridge:secret@rabbit/flow45", "use amqp://USER:PASSWORD@HOST:PORT/VHOST"),
    ("amqp://bridge:secret@rabbit/flow45?heartbeat=soon", "Invalid heartbeat value 'soon'"),
])
def test_a_broker_url_its_client_cannot_use_is_refused_naming_the_problem_not_the_password(url, problem):
    with pytest.raises(SettingsError, match=r"^environment: amqp_url: ") as refused:
        load_settings({"FLOW45_AMQP_URL": url})
    assert problem in str(refused.value) and "secret" not in str(refused.value)


def test_the_settings_template_in_the_repository_loads():
    template = Path(__file__).resolve().parents[2] / "config" / "flow45.yaml"
    settings = load_settings({"FLOW45_SETTINGS": str(template)})
    assert settings.amqp_url.startswith("amqp://flow45-bridge:") and list(settings.teams) == ["reports"]


@pytest.mark.parametrize("variable, meant", [
    ("FLOW45_DATABSE_URL", "FLOW45_DATABASE_URL"),
    ("FLOW45_AMQP_ULR", "FLOW45_AMQP_URL"),
    ("FLOW45_METRIC_PORT", "FLOW45_METRICS_PORT"),
    ("FLOW45_SETTING", "FLOW45_SETTINGS"),
])
def test_a_misspelt_variable_is_refused_naming_the_one_meant(variable, meant):
    refused = f"^environment: {variable} is not a Flow45 setting; did you mean {meant}\\?$"
    with pytest.raises(SettingsError, match=refused):
        load_settings({variable: "postgresql://flow45@db.internal/flow45"})


def test_other_flow45_variables_are_left_to_whatever_set_them():
    settings = load_settings({"FLOW45_BENCH_DATABASE_URL": "x", "FLOW45_TEST_PROCESSES": "2", "FLOW45_TEAM": "reports",
                              "FLOW45_ACTOR": "ann", "FLOW45_DEBUG": "1"})
    assert settings.database_url == DEFAULT_DATABASE_URL
