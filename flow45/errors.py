"""Every error Flow45 raises on purpose: one root, small flat subclasses.

Each carries a short `code` (used in RPC answers and `--json` output) and a message an operator
can act on: it names the thing, the place and what would be right.
"""

from __future__ import annotations


class Flow45Error(Exception):
    """Flow45 refused the request."""

    code = "refused"

    def __init__(self, message: str | None = None):
        super().__init__(message or (self.__doc__ or self.code).strip())

    @property
    def message(self) -> str:
        return str(self.args[0])


class ConfigError(Flow45Error):
    """The configuration is invalid."""

    code = "invalid_config"

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        count = len(self.problems)
        head = f"{count} problem{'s' if count != 1 else ''} in the configuration"
        super().__init__(head + ":\n" + "\n".join(f"  {p}" for p in self.problems))


class SettingsError(Flow45Error):
    """The installation settings are invalid."""

    code = "invalid_settings"


class NotFound(Flow45Error):
    """No such object."""

    code = "not_found"


class StaleToken(Flow45Error):
    """The attempt's token is no longer current: the lease expired, or the instance was retried or undone."""

    code = "stale"


class IllegalTransition(Flow45Error):
    """That state change is not allowed."""

    code = "illegal_transition"


class NotAllowed(Flow45Error):
    """Someone else decides this: the message names who may, or who has the task."""

    code = "not_allowed"


class InvalidOutput(Flow45Error):
    """The submitted output does not match the task's output type."""

    code = "invalid_output"


class InvalidLog(Flow45Error):
    """A log link or log tail is not acceptable (flow45.logs): the message is refused, as malformed."""

    code = "invalid_message"


class InvalidCheckpoint(Flow45Error):
    """A checkpoint is not JSON, too big or looks like it holds a secret (flow45.checkpoints): refused, as malformed."""

    code = "invalid_message"


class MessageIdReused(Flow45Error):
    """A message_id that named another message already: it is the sender's idempotency key, one per message."""

    code = "invalid_message"


class TooLong(Flow45Error):
    """What an operator wrote (a reason, a comment) is longer than Flow45 keeps: refused, never cut."""

    code = "invalid_message"


class UncheckableType(Flow45Error):
    """A declared type of a stored version cannot be built into a check (deploy refuses such types now)."""

    code = "invalid_config"


class InvalidParams(Flow45Error):
    """The run parameters do not match the workflow's params type."""

    code = "invalid_params"


class NoDatabase(Flow45Error):
    """There is no Flow45 database there yet: `flow45 db upgrade` creates it."""

    code = "no_database"


class LimitReached(Flow45Error):
    """A team has as many runs open as the installation lets it have."""

    code = "limit_reached"


class RunExists(Flow45Error):
    """The workflow has a run for that logical time already (`run`: its id, when known)."""

    code = "run_exists"

    def __init__(self, message: str, run: int | None = None):
        super().__init__(message)
        self.run = run


class TooSlow(Flow45Error):
    """The read ran longer than the installation allows and was stopped."""

    code = "too_slow"


class SchemaOutdated(Flow45Error):
    """The database schema is older than this version of Flow45: run `flow45 db upgrade`."""

    code = "schema_outdated"


class SchemaNewer(Flow45Error):
    """A newer Flow45 upgraded the database: this one would write rows that version does not expect."""

    code = "schema_newer"
