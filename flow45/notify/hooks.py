"""The `notify` settings: per team, webhooks and the events each one wants."""

from __future__ import annotations

from typing import Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

# What a person may be told about, and the ledger events that mean it (flow45.notify.events).
EVENTS = {
    "run_failed": "a run failed",
    "retries_exhausted": "a task instance failed with no retries left",
    "unclaimed": "no worker claimed a task instance within its task's `start_within`: are its workers gone?",
    "human_waiting": "a human task became available, waiting for a decision",
    "due_soon": "a reminder of a human task not decided yet (its `reminders`)",
    "overdue": "a human task passed its `due` time (any `overdue` outcome)",
    "escalated": "an overdue human task was escalated to more people",
    "assigned": "a human task was given to someone by someone else (`take --for`)",
    "sla_missed": "a run took longer than its workflow's `sla`",
    "run_timed_out": "a run was cancelled for running longer than its workflow's `timeout`",
}


class Webhook(BaseModel):
    """One receiver: `{url, events: [...], format: slack | event}`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(description="http:// or https:// URL the events are posted to")
    events: list[str] = Field(min_length=1, description="which events: " + ", ".join(EVENTS))
    format: Literal["slack", "event"] = Field(
        "slack", description='slack: {"text": ...} (Slack-compatible); event: the ledger event as JSON with a "text"')

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ValueError(f"{url!r} is not an http:// or https:// URL")
        return url

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            raise ValueError(f"unknown event {', '.join(map(repr, unknown))} (choose from {', '.join(EVENTS)})")
        return events


Hooks = dict[str, list[Webhook]]
