"""A team's counts per status (the runs screen's header), read from the (team, status) index, on each
backend; and the schema step that adds that index to an older store."""

from __future__ import annotations

import pytest

from flow45 import store
from flow45.client import LocalClient, RunFilter
from flow45.db import database
from tests.store.helpers import T0, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

JOB = """
    team: {team}
    types:
      Ok: {{fields: {{ok: boolean}}}}
    workflows:
      job:
        max_active_runs: null
        tasks:
          work: {{function: work, output: Ok}}
"""


def test_counts_per_status_are_each_teams_own(tmp_path):
    for team in ("acme", "zeta"):
        (tmp_path / team).mkdir()
        deploy_text(tmp_path / team, JOB.format(team=team))
    acme = [store.trigger("acme", "job", actor="ann", now=T0) for _ in range(3)]
    store.trigger("zeta", "job", actor="zed", now=T0)
    store.cancel_run(acme[0], actor="ann", now=T0)
    client = LocalClient("admin")
    assert client.status_counts(RunFilter(team="acme")) == {"running": 2, "cancelled": 1}
    assert client.status_counts(RunFilter(team="zeta")) == {"running": 1}
    assert client.status_counts() == {"running": 3, "cancelled": 1}


def test_upgrade_to_the_run_counts_step_adds_the_team_status_index():
    from playhouse.migrate import SchemaMigrator, migrate

    from flow45.migrate import CURRENT, STEPS, _run_counts_v12, upgrade
    from flow45.models import SchemaVersion

    step = STEPS.index(_run_counts_v12) + 1
    with database.atomic():
        migrate(SchemaMigrator.from_database(database.obj).drop_index("run", "run_team_status"))
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert "run_team_status" not in {i.name for i in database.get_indexes("run")}
    assert upgrade() == (step - 1, CURRENT)
    assert "run_team_status" in {i.name for i in database.get_indexes("run")}
