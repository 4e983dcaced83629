"""The operator's client: one interface (`Client`), on the database (`LocalClient`) or, in `bridge`,
through the broker."""

from flow45.client.base import RUNS_PAGE, Client, RunFilter, ValidatedTeam
from flow45.client.local import LocalClient

__all__ = ["RUNS_PAGE", "Client", "LocalClient", "RunFilter", "ValidatedTeam"]
