"""Helpers for the scheduler tests: deploy at a given time, drive tick() over a span, read runs back."""

from __future__ import annotations

import datetime as dt
import textwrap
import zoneinfo
from pathlib import Path

from flow45 import store
from flow45.config import load_config
from flow45.models import Event, Run, Workflow
from flow45.scheduler import TickReport, tick

AMSTERDAM = zoneinfo.ZoneInfo("Europe/Amsterdam")


def deploy_at(tmp_path: Path, text: str, now: dt.datetime):
    path = tmp_path / f"config-{len(list(tmp_path.glob('config-*.yaml')))}.yaml"
    path.write_text(textwrap.dedent(text))
    return store.deploy(load_config(path), actor="tester", now=now)


def scheduled(
    cron: str, *, timezone: str = "UTC", catchup: str = "latest", max_active_runs: int | None = 16,
    params: str | None = None, retries: int = 0,
) -> str:
    """A one-task team config whose workflow `nightly` runs on `cron`."""
    limit = "null" if max_active_runs is None else max_active_runs
    return f"""
        team: acme
        types:
          Blob: {{fields: {{uri: string}}}}
          Month: {{fields: {{month: string}}}}
          Hints: {{fields: {{note: {{type: string, optional: true}}}}}}
        workflows:
          nightly:
            schedule: {{cron: "{cron}", timezone: {timezone}, catchup: {catchup}}}
            max_active_runs: {limit}
            {f"params: {params}" if params else ""}
            tasks:
              a: {{function: fa, output: Blob, retries: {retries}}}
    """


def tick_every(start: dt.datetime, end: dt.datetime, step: dt.timedelta) -> list[TickReport]:
    """tick() at start, start + step, ... up to end, as a scheduler that never stops would."""
    reports, now = [], start
    while now <= end:
        report = tick(now)
        assert report.errors == []
        reports.append(report)
        now += step
    return reports


def runs(workflow: str = "nightly") -> list[Run]:
    """The workflow's runs, oldest first."""
    return list(Run.select().join(Workflow).where(Workflow.name == workflow).order_by(Run.id))


def logical_times(workflow: str = "nightly") -> list[dt.datetime]:
    return [run.logical_time for run in runs(workflow)]


def skip_events() -> list[dict]:
    return [e.detail for e in Event.select().where(Event.kind == "schedule_skip").order_by(Event.id)]


def local(moment: dt.datetime) -> dt.datetime:
    """A naive UTC datetime as Amsterdam wall time."""
    return moment.replace(tzinfo=dt.timezone.utc).astimezone(AMSTERDAM)
