"""Connected workflows, on SQLite and on PostgreSQL: a run reaching a state starts the workflows
connected to it in the same transaction, with typed params from its outputs; deploy checks the
connection (types, exports); undo of the upstream run shows them and can cancel them."""

from __future__ import annotations

import pytest

from flow45 import store
from flow45.errors import ConfigError
from flow45.models import Event, Run
from tests.store.helpers import T0, claim, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

NIGHTLY = """
    team: ops
    types:
      Published: {fields: {uri: string, month: string, rows: integer}}
    workflows:
      nightly:
        export: [reports]
        tasks:
          load: {function: load, output: Published, retries: 0}
          publish: {function: publish, output: Published, inputs: {data: load}}
"""

MONTHLY = """
    team: reports
    types:
      Month: {fields: {month: string, source: {type: string, optional: true}}}
      Doc: {fields: {uri: string}}
    workflows:
      monthly:
        params: Month
        on: {workflow: ops/nightly, state: succeeded, params: {month: publish.month, source: publish.uri}}
        tasks:
          render: {function: render, output: Doc}
"""

ALERT = """
    team: ops
    types:
      Note: {fields: {uri: string}}
      Failed: {fields: {rows: {type: integer, optional: true}}}
    workflows:
      alert:
        params: Failed
        on: {workflow: ops/nightly, state: failed, params: {rows: load.rows}}
        tasks:
          page: {function: page, output: Note}
"""

OUTPUT = {"uri": "s3://out", "month": "2026-02", "rows": 7}


def _finish_nightly(at=T0) -> int:
    run = store.trigger("ops", "nightly", actor="ann", now=at)
    complete(run, "load", OUTPUT, now=at)
    complete(run, "publish", OUTPUT, now=at)
    return run


def _connected(upstream: int) -> list[Run]:
    return list(Run.select().where(Run.upstream_run == upstream).order_by(Run.id))


def test_a_succeeded_run_starts_the_connected_workflow_with_typed_params(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, MONTHLY)
    upstream = _finish_nightly()
    [run] = _connected(upstream)
    assert (run.team, run.trigger, run.status) == ("reports", "connected", "running")
    assert run.params == {"month": "2026-02", "source": "s3://out"}
    assert run.triggered_by == f"run {upstream} of ops/nightly"
    assert states(run.id) == {"render": "available"}, "started like any run: its first task is offered"
    trigger = Event.get((Event.run == run.id) & (Event.kind == "trigger"))
    assert trigger.team == "reports" and trigger.detail["upstream"] == {
        "team": "ops", "workflow": "nightly", "run": upstream, "state": "succeeded"}
    connect = Event.get((Event.run == upstream) & (Event.kind == "connect"))
    assert connect.team == "ops" and connect.detail == {
        "team": "reports", "workflow": "monthly", "run": run.id, "status": "running"}
    finished = Event.get((Event.run == upstream) & (Event.to_state == "succeeded") & Event.instance.is_null())
    assert finished.id < connect.id and finished.at == run.created_at, "same transaction, same time, after the move"


def test_a_failed_run_starts_only_what_is_connected_to_failure(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, ALERT)
    run = store.trigger("ops", "nightly", actor="ann", now=T0)
    grant = claim(run, "load")
    store.fail(grant.instance, grant.token, "disk full", retryable=False, now=T0)
    assert store.get_run(run).status == "failed"
    [alert] = _connected(run)
    assert alert.params == {"rows": None} and Run.get_by_id(alert.id).workflow.name == "alert", "load failed: rows is null"
    ok = _finish_nightly()
    assert _connected(ok) == []


def test_a_paused_connected_workflow_queues_or_refuses_its_connected_runs_as_it_would_a_trigger(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, MONTHLY)
    store.pause("reports", "monthly", actor="ops", triggers="queue", now=T0)
    first = _finish_nightly()
    [queued] = _connected(first)
    assert queued.status == "queued" and states(queued.id) == {"render": "pending"}, "nothing offered while paused"
    store.resume("reports", "monthly", actor="ops", now=T0)
    assert Run.get_by_id(queued.id).status == "running" and states(queued.id) == {"render": "available"}
    store.pause("reports", "monthly", actor="ops", triggers="refuse", now=T0)
    second = _finish_nightly()
    assert store.get_run(second).status == "succeeded" and _connected(second) == []
    refused = Event.get((Event.run == second) & (Event.kind == "connect_refused"))
    assert refused.detail["error"] == "workflow reports/monthly is paused and refuses triggers; resume it first"
    assert Event.select().where((Event.team == "reports") & (Event.kind == "connect_refused")).count() == 1


def test_params_that_do_not_validate_start_nothing_and_say_so_on_both_ledgers(tmp_path):
    """A skipped upstream task gives null, which a required params field refuses."""
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, MONTHLY)
    run = store.trigger("ops", "nightly", actor="ann", now=T0)
    complete(run, "load", OUTPUT)
    store.skip_instance(instance(run, "publish").id, "nothing new", actor="op", now=T0)
    assert store.get_run(run).status == "succeeded" and _connected(run) == []
    upstream_side = Event.get((Event.run == run) & (Event.kind == "connect_refused"))
    assert upstream_side.team == "ops" and upstream_side.detail["workflow"] == "monthly"
    assert "month" in upstream_side.detail["error"]
    downstream_side = Event.get((Event.team == "reports") & (Event.kind == "connect_refused"))
    assert downstream_side.detail["upstream"] == {"team": "ops", "workflow": "nightly", "run": run}


def test_cross_team_needs_the_export(tmp_path):
    deploy_text(tmp_path, NIGHTLY.replace("export: [reports]", "export: [finance]"))
    with pytest.raises(ConfigError) as refused:
        deploy_text(tmp_path, MONTHLY)
    [problem] = refused.value.problems
    assert "workflows.monthly.on.workflow" in problem and "config-1.yaml" in problem
    assert "ops/nightly is not exported to team reports" in problem and "`export: [reports]`" in problem
    deploy_text(tmp_path, NIGHTLY)
    assert [w.change for w in deploy_text(tmp_path, MONTHLY).workflows] == ["created"]


def test_a_workflow_not_exported_shows_the_other_team_nothing_of_its_tasks_or_outputs(tmp_path):
    """The params of an `on:` are checked only against what was exported: else a deploy (or a dry
    run through the bridge) would list another team's tasks and output fields."""
    deploy_text(tmp_path, NIGHTLY.replace("export: [reports]", "export: []"))
    probing = MONTHLY.replace("publish.month", "secret.month").replace("publish.uri", "publish.nothing")
    with pytest.raises(ConfigError) as refused:
        deploy_text(tmp_path, probing)
    [problem] = refused.value.problems
    assert "ops/nightly is not exported to team reports" in problem
    for told in ("load", "Published", "rows"):
        assert told not in problem


def test_removing_the_export_later_is_refused_naming_the_connected_workflow(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, MONTHLY)
    with pytest.raises(ConfigError) as refused:
        deploy_text(tmp_path, NIGHTLY.replace("export: [reports]", "export: []"))
    assert "reports/monthly" in str(refused.value) and "not exported to team reports" in str(refused.value)


@pytest.mark.parametrize("change, words", [
    ("publish.month", None),
    ("publish.rows", "publish.rows of ops/nightly is integer but Month.month is string"),
    ("publish.day", "output type Published of task 'publish' of ops/nightly has no field 'day'"),
    ("render.month", "ops/nightly (deployed version 1) has no task 'render'"),
])
def test_params_are_checked_against_the_upstream_outputs(tmp_path, change, words):
    deploy_text(tmp_path, NIGHTLY)
    text = MONTHLY.replace("month: publish.month", f"month: {change}")
    if words is None:
        deploy_text(tmp_path, text)
        return
    with pytest.raises(ConfigError) as refused:
        deploy_text(tmp_path, text)
    [problem] = refused.value.problems
    assert "workflows.monthly.on.params.month" in problem and words in problem


def test_required_params_must_be_given_and_the_upstream_must_be_deployed(tmp_path):
    with pytest.raises(ConfigError, match="workflow ops/nightly is not deployed"):
        deploy_text(tmp_path, MONTHLY)
    deploy_text(tmp_path, NIGHTLY)
    with pytest.raises(ConfigError, match="Month requires month, which the connection does not give"):
        deploy_text(tmp_path, MONTHLY.replace("month: publish.month, ", ""))
    with_default = MONTHLY.replace("month: string", "month: {type: string, default: last}")
    deploy_text(tmp_path, with_default.replace("month: publish.month, ", ""))  # a default gives it


def test_undo_of_the_upstream_shows_connected_runs_and_can_cancel_them(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, MONTHLY)
    upstream = _finish_nightly()
    [first] = _connected(upstream)
    publish = instance(upstream, "publish").id
    plan = store.undo(publish, "wrong month", actor="op", dry_run=True)
    assert [(c.run, c.team, c.workflow, c.status, c.cancel) for c in plan.connected] == [
        (first.id, "reports", "monthly", "running", True)]
    assert Run.get_by_id(first.id).status == "running", "a dry run changes nothing"
    store.undo(publish, "wrong month", actor="op", now=T0)
    assert Run.get_by_id(first.id).status == "running", "without --cancel-connected it goes on"
    complete(upstream, "publish", {**OUTPUT, "month": "2026-03"})
    second = _connected(upstream)[1]
    assert second.params["month"] == "2026-03", "finished again: connected again, with the new output"
    plan = store.undo(publish, "still wrong", actor="op", now=T0, cancel_connected=True)
    assert [(c.run, c.cancel) for c in plan.connected] == [(first.id, True), (second.id, True)]
    assert [Run.get_by_id(r.id).status for r in (first, second)] == ["cancelled", "cancelled"]
    assert states(second.id) == {"render": "cancelled"}
    cancel = Event.get((Event.run == second.id) & (Event.kind == "cancel") & Event.instance.is_null())
    assert cancel.team == "reports" and "still wrong" in cancel.detail["reason"]


AUDIT = """
      audit:
        on: {workflow: ops/nightly, state: succeeded}
        tasks:
          check: {function: check, output: Published}
"""


def test_an_operator_cancels_only_the_connected_runs_of_their_own_team(tmp_path):
    deploy_text(tmp_path, NIGHTLY + AUDIT)
    deploy_text(tmp_path, MONTHLY)
    upstream = _finish_nightly()
    started = {run.team: run.id for run in _connected(upstream)}
    publish = instance(upstream, "publish").id
    plan = store.undo(publish, "wrong month", actor="ops-op", team="ops", now=T0, cancel_connected=True)
    assert sorted((c.team, c.cancel, c.fate(True)) for c in plan.connected) == [
        ("ops", True, "cancelled"), ("reports", False, "goes on (team reports's)")]
    assert Run.get_by_id(started["ops"]).status == "cancelled"
    assert Run.get_by_id(started["reports"]).status == "running", "another team's run is its operators' to stop"
    assert not Event.select().where((Event.team == "reports") & (Event.actor == "ops-op")).exists()
    complete(upstream, "publish", OUTPUT)
    plan = store.undo(publish, "wrong again", actor="root", now=T0, cancel_connected=True)  # an administrator
    assert [Run.get_by_id(c.run).status for c in plan.connected] == ["cancelled"] * 4


def test_a_ring_of_connected_workflows_is_refused(tmp_path):
    deploy_text(tmp_path, NIGHTLY)
    deploy_text(tmp_path, MONTHLY)
    ring = NIGHTLY.replace("export: [reports]", "export: [reports]\n        on: {workflow: reports/monthly}")
    ring = ring.replace("    team: ops\n", "    team: ops\n    # started when the monthly report is done\n")
    exported = MONTHLY.replace("params: Month\n", "params: Month\n        export: [ops]\n")
    deploy_text(tmp_path, exported)
    with pytest.raises(ConfigError, match="would start each other in a ring: .*ops/nightly.*reports/monthly"):
        deploy_text(tmp_path, ring)


def test_upgrade_from_before_the_connected_and_sla_steps_adds_their_table_and_columns():
    from playhouse.migrate import SchemaMigrator, migrate

    from flow45.db import database
    from flow45.migrate import CURRENT, STEPS, _connected_v6, upgrade
    from flow45.models import SchemaVersion

    migrator = SchemaMigrator.from_database(database.obj)
    step = STEPS.index(_connected_v6) + 1
    with database.atomic():
        migrate(migrator.drop_index("run", "run_upstream_run"), migrator.drop_column("run", "upstream_run"),
                migrator.drop_column("run", "sla_due_at"))
        database.execute_sql("DROP TABLE connection")
        SchemaVersion.delete().where(SchemaVersion.version >= step).execute()
    assert upgrade() == (step - 1, CURRENT)
    assert {"upstream_run", "sla_due_at"} <= {c.name for c in database.get_columns("run")}
    assert database.table_exists("connection") and "run_upstream_run" in {i.name for i in database.get_indexes("run")}
