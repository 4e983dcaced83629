"""Installation settings: one YAML file (FLOW45_SETTINGS) and FLOW45_* environment variables.

With neither, Flow45 runs on the embedded default: a SQLite file in the current folder.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flow45.durations import bounded_duration
from flow45.errors import SettingsError
from flow45.notify.hooks import Webhook
from flow45.urls import amqp_parameters
from flow45.yamlload import YamlProblem, read_yaml

DEFAULT_DATABASE_URL = "sqlite:///flow45.db"


class TeamSettings(BaseModel):
    """A team of the installation and the broker users that act for it."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    users: dict[str, Literal["worker", "operator"]] = Field(
        default_factory=dict, description="broker user name -> role"
    )
    max_open_runs: int | None = Field(None, ge=1, description="this team's own limit of runs queued or running, "
                                                              "instead of the installation's max_open_runs")
    max_open_instances: int | None = Field(None, ge=1, description="this team's own limit of task instances in its "
                                                                   "runs queued or running, instead of the "
                                                                   "installation's max_open_instances")


class Settings(BaseModel):
    """Owned by whoever runs the installation, not by the teams."""

    model_config = ConfigDict(extra="forbid", defer_build=True)
    database_url: str = Field(DEFAULT_DATABASE_URL, description="sqlite:///PATH or postgresql://…")
    amqp_url: str | None = Field(None, description="amqp://…; unset means in-process workers")
    teams: dict[str, TeamSettings] = Field(
        default_factory=dict, description="empty: any team may deploy (embedded default)"
    )
    output_max_bytes: int = Field(16384, ge=256, description="cap on a submitted output's JSON")
    params_max_bytes: int = Field(16384, ge=256, description="cap on a run's params as JSON")
    max_message_bytes: int = Field(
        1024 * 1024, ge=64 * 1024, description="the largest message the bridge publishes (an offer, an answer); at "
                                               "most the broker's max_message_size, which refuses a larger one")
    max_workflow_tasks: int = Field(5000, ge=1, description="tasks a workflow may have: a run makes all its "
                                                            "instances in one transaction")
    max_open_runs: int = Field(100_000, ge=1, description="runs a team may have queued or running at once; a "
                                                          "trigger past it is refused (limit_reached)")
    max_open_instances: int = Field(5_000_000, ge=1, description="task instances a team's runs queued or running "
                                                                 "may hold at once (a run holds one per task); a "
                                                                 "trigger past it is refused (limit_reached)")
    default_lease: float = Field(300.0, gt=0, description="seconds a claim holds without progress")
    default_retry_delay: float = Field(30.0, description="seconds before a failed attempt is retried")
    relay_interval: float = Field(1.0, gt=0, description="seconds between outbox polls (fallback)")
    sweep_interval: float = Field(1.0, gt=0, description="seconds between scheduler ticks")
    offer_quiet_period: float = Field(60.0, gt=0, description="re-offer an available instance after this")
    inbox_max_messages: int = Field(
        100_000, ge=1, description="messages a team's inbox holds waiting for the bridge; the broker refuses more")
    inbox_max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024,
                                 description="bytes of message bodies a team's inbox holds; the broker refuses more")
    offer_queue_max_messages: int = Field(
        100_000, ge=1, description="offers a function's queue holds; past it the bridge holds the rest in the outbox")
    offer_queue_max_bytes: int = Field(256 * 1024 * 1024, ge=1024 * 1024,
                                       description="bytes of offers a function's queue holds; past it, as above")
    read_timeout: float = Field(10.0, gt=0, description="longest an operator's read through the bridge runs, "
                                                       "all its statements together; past it: too_slow")
    reconnect_max: float = Field(10.0, gt=0, description="longest wait between reconnect attempts")
    heartbeat_file: str | None = Field(None, description="file the services rewrite each loop, for `flow45 health`")
    metrics_port: int | None = Field(None, ge=1, le=65535, description="serve Prometheus metrics on this port; unset: off")
    metrics_address: str = Field("127.0.0.1", description="address the metrics port listens on (0.0.0.0: every one)")
    ledger_retention: Literal["keep", "prune"] = Field(
        "keep", description="what `flow45 prune` does with a pruned run's ledger events: keep them, or remove them too")
    notify: dict[str, list[Webhook]] = Field(
        default_factory=dict, description="team -> webhooks `flow45 notify` posts the team's chosen events to")
    notify_retry_delay: float = Field(1.0, gt=0, description="first wait before a failed webhook post is retried (doubling)")
    notify_retry_max: float = Field(60.0, gt=0, description="longest wait between retries of a webhook post")

    @field_validator(
        "default_lease", "default_retry_delay", "relay_interval", "sweep_interval",
        "offer_quiet_period", "read_timeout", "reconnect_max", "notify_retry_delay", "notify_retry_max", mode="before",
    )
    @classmethod
    def _duration(cls, value: object) -> float:
        return bounded_duration(value)

    @field_validator("amqp_url")
    @classmethod
    def _amqp_url(cls, value: str | None) -> str | None:
        if value:
            amqp_parameters(value)  # a URL the broker's client cannot use is refused here, named
        return value

    def team_allowed(self, team: str) -> bool:
        return not self.teams or team in self.teams

    @model_validator(mode="after")
    def _one_team_per_user(self) -> Settings:
        """The bridge takes a user's team from the first team naming it and setup-broker grants it the
        last one's queues: a user in two would act for one team and read another's offers."""
        first: dict[str, str] = {}
        for team, team_settings in self.teams.items():
            for user in team_settings.users:
                if user in first:
                    raise ValueError(f"teams.{team}.users.{user}: already a user of team {first[user]}; a broker user "
                                     "acts for one team (give each team users of its own)")
                first[user] = team
        return self

    @model_validator(mode="after")
    def _notify_teams(self) -> Settings:
        unknown = [team for team in self.notify if not self.team_allowed(team)]
        if unknown:
            raise ValueError(f"notify: {', '.join(unknown)} is not a team of this installation "
                             f"(teams: {', '.join(sorted(self.teams))})")
        return self


def _env_overrides(environ: dict[str, str]) -> dict[str, object]:
    found: dict[str, object] = {}
    for key in Settings.model_fields:
        raw = environ.get("FLOW45_" + key.upper())
        if raw is None:
            continue
        try:
            found[key] = json.loads(raw) if key in ("teams", "notify") else raw
        except json.JSONDecodeError as exc:
            raise SettingsError(f"FLOW45_{key.upper()} is not valid JSON: {exc}") from exc
    return found


# FLOW45_* variables that are not settings: read by the command line and the services themselves.
OTHER_VARIABLES = ("FLOW45_SETTINGS", "FLOW45_TEAM", "FLOW45_ACTOR", "FLOW45_DEBUG")


def _misspelt(environ: dict[str, str]) -> None:
    """Refuse a FLOW45_ variable a letter or two from a setting's: misspelt, it was ignored, and a
    command went on with the default (FLOW45_DATABSE_URL: a deploy into a new SQLite file). Other
    FLOW45_ names are left to whatever set them."""
    known = [f"FLOW45_{key.upper()}" for key in Settings.model_fields] + list(OTHER_VARIABLES)
    for name in sorted(environ):
        if name.startswith("FLOW45_") and name not in known:
            near = [k for k in known if _edits(name, k) <= 2]
            if near:
                raise SettingsError(f"environment: {name} is not a Flow45 setting; did you mean {near[0]}?")


def _edits(a: str, b: str) -> int:
    """Letters inserted, removed or changed to turn one name into the other (Levenshtein)."""
    if abs(len(a) - len(b)) > 2:
        return 3
    previous = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        current = [i]
        for j, y in enumerate(b, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (x != y)))
        previous = current
    return previous[-1]


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from FLOW45_SETTINGS (if set) overridden by FLOW45_* variables."""
    environ = dict(os.environ if environ is None else environ)
    _misspelt(environ)
    data: dict[str, object] = {}
    path = environ.get("FLOW45_SETTINGS")
    if path:
        try:
            data = read_yaml(Path(path)) or {}  # as the teams' files are read: a key twice is refused
        except YamlProblem as exc:
            raise SettingsError(f"FLOW45_SETTINGS={exc}") from exc
        if not isinstance(data, dict):
            raise SettingsError(f"{path}: expected a mapping of settings")
    overrides = _env_overrides(environ)
    data.update(overrides)
    try:
        return Settings.model_validate(data)
    except ValidationError as exc:
        def said(error: dict) -> str:  # where the value came from (a variable wins over the file)
            loc = error["loc"]
            source = "environment" if not path or (loc and loc[0] in overrides) else path
            return ": ".join([source, *([".".join(str(p) for p in loc)] if loc else []),
                              error["msg"].removeprefix("Value error, ")])

        raise SettingsError("; ".join(said(e) for e in exc.errors())) from exc


_current: Settings | None = None


def open_limits(team: str) -> tuple[int, int]:
    """How many runs the team may have queued or running at once, and how many task instances they may hold."""
    settings = current_settings()
    own = settings.teams.get(team) or TeamSettings()
    return (own.max_open_runs if own.max_open_runs is not None else settings.max_open_runs,
            own.max_open_instances if own.max_open_instances is not None else settings.max_open_instances)


def current_settings() -> Settings:
    """The settings in force: loaded once from the environment unless `use_settings` set them."""
    global _current
    if _current is None:
        _current = load_settings()
    return _current


def use_settings(settings: Settings | None) -> None:
    global _current
    _current = settings
