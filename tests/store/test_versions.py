"""A workflow's versions: what each deploy changed, one line per setting, said by the deploy, kept in
its ledger event and listed with who deployed each version, when, and the runs that follow it."""

from __future__ import annotations

import textwrap

import pytest

from flow45 import store
from flow45.client import LocalClient
from flow45.config import load_config
from flow45.db import atomic
from flow45.errors import ConfigError, NotFound
from flow45.models import Event
from flow45.store.versions import workflow_versions
from tests.store.helpers import T0, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

V1 = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      nightly:
        schedule: {cron: "30 2 * * *", timezone: UTC}
        tasks:
          extract: {function: fe, output: Blob, retries: 3, retry_delay: 30s}
          load: {function: fl, output: Blob, inputs: {src: extract, also: extract}}
"""
V2 = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}, checksum: {type: string, optional: true}}
    workflows:
      nightly:
        schedule: {cron: "0 3 * * *", timezone: UTC}
        tasks:
          extract: {function: fe, output: Blob, retries: 4, retry_delay: 2m, timeout: 1h}
          load: {function: fl, output: Blob, inputs: {src: extract}}
          audit: {function: fa, output: Blob, after: [load]}
"""
V2_CHANGES = [
    'schedule.cron: "30 2 * * *" -> "0 3 * * *"',
    "tasks.extract.retries: 3 -> 4",
    "tasks.extract.retry_delay: 30s -> 2m",
    "tasks.extract.timeout: added 1h",
    'tasks.load.inputs.also: removed (was "extract")',
    "tasks.audit: added",
    "types.Blob.fields.checksum: added",
]


def test_a_deploy_says_what_it_changed_and_keeps_it_in_its_ledger_event(tmp_path):
    first = deploy_text(tmp_path, V1)
    assert [(w.version, w.change, w.changes) for w in first.workflows] == [(1, "created", [])]
    second = deploy_text(tmp_path, V2, actor="bob")
    assert [(w.version, w.change, w.changes) for w in second.workflows] == [(2, "updated", V2_CHANGES)]
    deployed = Event.select().where(Event.kind == "deploy").order_by(Event.id.desc()).first()
    assert (deployed.actor, deployed.detail["version"], deployed.detail["changes"]) == ("bob", 2, V2_CHANGES)
    again = deploy_text(tmp_path, V2)
    assert [(w.change, w.changes) for w in again.workflows] == [("unchanged", [])]


def test_versions_are_listed_newest_first_with_their_runs_and_what_each_changed(tmp_path):
    deploy_text(tmp_path, V1, actor="ann")
    for _ in range(2):
        store.trigger("acme", "nightly", actor="ann", now=T0)
    deploy_text(tmp_path, V2, actor="bob")
    store.trigger("acme", "nightly", actor="ann", now=T0)
    deploy_text(tmp_path, V2.replace("retries: 4", "retries: 5"), actor="cy")

    found = workflow_versions("acme", "nightly")
    assert (found.current, found.total, found.retired) == (3, 3, False)
    assert [(v.version, v.deployed_by, v.runs) for v in found.versions] == [
        (3, "cy", 0), (2, "bob", 1), (1, "ann", 2)]
    assert [v.changes for v in found.versions] == [["tasks.extract.retries: 4 -> 5"], V2_CHANGES, []]
    assert found.versions[0].deployed_at == T0 and len(found.versions[0].content_hash) == 64

    newest = workflow_versions("acme", "nightly", limit=1)  # the version before it is read to say what it changed
    assert (newest.total, [v.changes for v in newest.versions]) == (3, [["tasks.extract.retries: 4 -> 5"]])
    assert newest.changed_since is None
    since = workflow_versions("acme", "nightly", limit=1, since=1)  # a run of v1 against one triggered now
    assert since.changed_since == [line.replace("retries: 3 -> 4", "retries: 3 -> 5") for line in V2_CHANGES]
    assert workflow_versions("acme", "nightly", since=3).changed_since == []
    with pytest.raises(NotFound, match="acme/nightly has no version 4 \\(it has 1 to 3\\)"):
        workflow_versions("acme", "nightly", since=4)


def test_a_sweeping_change_is_told_in_forty_lines_and_the_rest_counted(tmp_path):
    tasks = "\n".join(f"          t{n}: {{function: f, output: Blob}}" for n in range(50))
    deploy_text(tmp_path, V1)
    changed = V1.split("    workflows:")[0] + "    workflows:\n      nightly:\n        tasks:\n" + tasks + "\n"
    [deployed] = deploy_text(tmp_path, changed).workflows
    assert deployed.changes[:4] == [
        "schedule: removed", "tasks.extract: removed", "tasks.load: removed", "tasks.t0: added"]
    assert len(deployed.changes) == 41 and deployed.changes[-1] == "... and 13 more"


def test_another_teams_versions_are_not_found(tmp_path):
    deploy_text(tmp_path, V1)
    with pytest.raises(NotFound, match="workflow acme/nightly is not deployed"):
        LocalClient("rival-ops", team="rival").versions("acme", "nightly")
    with pytest.raises(NotFound, match="workflow acme/daily is not deployed"):
        workflow_versions("acme", "daily")


def test_a_retired_workflow_brought_back_changed_is_an_update_that_says_what_changed(tmp_path):
    deploy_text(tmp_path, V1)
    weekly_only = tmp_path / "weekly-only.yaml"
    weekly = V1.replace("nightly:", "weekly:").replace("function: f", "function: w")  # functions of its own
    weekly_only.write_text(textwrap.dedent(weekly))
    store.deploy(load_config(weekly_only), actor="ann", now=T0, prune=True)
    assert workflow_versions("acme", "nightly").retired
    [back] = [w for w in deploy_text(tmp_path, V2).workflows if w.workflow == "nightly"]
    assert (back.version, back.change, back.changes) == (2, "updated", V2_CHANGES)


def test_a_dry_run_deploy_says_what_it_would_do_and_keeps_nothing(tmp_path):
    deploy_text(tmp_path, V1)
    events = Event.select().count()
    path = tmp_path / "v2.yaml"
    path.write_text(textwrap.dedent(V2.replace("nightly:", "hourly:", 1).replace("function: f", "function: h")
                                    + V2.split("    workflows:\n")[1]))
    would = store.deploy(load_config(path), actor="bob", now=T0, prune=True, dry_run=True)
    assert would.dry_run
    assert [(w.workflow, w.version, w.change, w.changes) for w in would.workflows] == [
        ("hourly", 1, "created", []), ("nightly", 2, "updated", V2_CHANGES)]
    assert Event.select().count() == events  # nothing kept: no version, no ledger event
    assert [(w.name, w.version) for w in store.list_workflows("acme")] == [("nightly", 1)]

    weekly_only = tmp_path / "weekly-only.yaml"
    weekly_only.write_text(textwrap.dedent(V1.replace("nightly:", "weekly:").replace("function: f", "function: w")))
    would = store.deploy(load_config(weekly_only), actor="bob", now=T0, prune=True, dry_run=True)
    assert [(w.workflow, w.change) for w in would.workflows] == [("weekly", "created"), ("nightly", "retired")]
    assert not workflow_versions("acme", "nightly").retired

    clash = tmp_path / "clash.yaml"  # a refusal is the deploy's own
    clash.write_text(textwrap.dedent(V1.replace("nightly:", "other:").replace("inputs: {src: extract, also: extract}",
                                                                             "inputs: {src: extract}")))
    with pytest.raises(ConfigError, match="function 'fl' is"):
        store.deploy(load_config(clash), actor="bob", now=T0, dry_run=True)


def test_a_deploy_after_a_dry_run_of_other_content_runs_its_own_version_in_the_same_process(tmp_path):
    deploy_text(tmp_path, V1)
    tried = tmp_path / "tried.yaml"  # reviewed, then changed before the deploy
    tried.write_text(textwrap.dedent(V2.replace("          audit: {function: fa, output: Blob, after: [load]}\n", "")))
    store.deploy(load_config(tried), actor="bob", now=T0, dry_run=True)
    deploy_text(tmp_path, V2)
    run = store.trigger("acme", "nightly", actor="bob", now=T0)
    assert sorted(i.task for i in store.get_run(run).instances) == ["audit", "extract", "load"]


def test_a_deploy_whose_transaction_did_not_commit_leaves_the_next_one_its_own_version(tmp_path):
    deploy_text(tmp_path, V1)
    tried = tmp_path / "tried.yaml"
    tried.write_text(textwrap.dedent(V2.replace("          audit: {function: fa, output: Blob, after: [load]}\n", "")))
    with pytest.raises(ConnectionError), atomic():  # as a bridge's transaction whose COMMIT fails
        store.deploy(load_config(tried), actor="bob", now=T0)
        store.trigger("acme", "nightly", actor="bob", now=T0)
        raise ConnectionError("server closed the connection unexpectedly")
    deploy_text(tmp_path, V2)
    run = store.trigger("acme", "nightly", actor="bob", now=T0)
    assert sorted(i.task for i in store.get_run(run).instances) == ["audit", "extract", "load"]
    assert store.get_run(run).version == 2
