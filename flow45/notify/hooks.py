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

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)

    url: str = Field(description="http:// or https:// URL the events are posted to")
    events: list[str] = Field(min_length=1, description="which events: " + ", ".join(EVENTS))
    format: Literal["slack", "event"] = Field(
        "slack", description='slack: {"text": ...} (Slack-compatible); event: the ledger event as JSON with a "text"')

    @field_validator("url")
    @classmethod
    def _http(cls, url: str) -> str:
        """One that can be posted to: else each event would be tried again for ever (or stop notify
        with a traceback). What is wrong is said without the path, which is often the hook's secret."""
        parts = urlsplit(url)
        shown = repr(receiver(url) + ("/…" if parts.path.strip("/") or parts.query else ""))
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"{shown} is not an http:// or https:// URL")
        if any(c.isspace() or not c.isprintable() for c in url):
            raise ValueError(f"{shown} has a space or a control character: write it percent-encoded (%20)")
        if not (parts.path + parts.query).isascii():
            raise ValueError(f"{shown} has a character that is not ASCII after its host: write it percent-encoded")
        if "@" in parts.netloc:
            raise ValueError(f"{shown} names a user or password, which are not sent: the receiver's own URL "
                             "carries its secret in its path")
        try:
            parts.port
        except ValueError:  # its text would name what was written there
            raise ValueError(f"{shown}: its port must be a number from 0 to 65535") from None
        try:
            parts.hostname.encode("idna")
        except UnicodeError:  # a host name no resolver takes (an empty label, one past 63 characters)
            raise ValueError(f"{shown}: its host is not a host name") from None
        return url

    @field_validator("events")
    @classmethod
    def _known(cls, events: list[str]) -> list[str]:
        unknown = [e for e in events if e not in EVENTS]
        if unknown:
            raise ValueError(f"unknown event {', '.join(map(repr, unknown))} (choose from {', '.join(EVENTS)})")
        return events


Hooks = dict[str, list[Webhook]]


def receiver(url: str) -> str:
    """The URL as logs and errors show it: scheme, host and port, never the path (a webhook's path is
    often its secret) nor a user or password."""
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:  # a port that is not a number
        port = None
    return f"{parts.scheme}://{parts.hostname or ''}" + (f":{port}" if port else "")
