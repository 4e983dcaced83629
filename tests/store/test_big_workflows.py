"""Workflows as large as the installation allows: a chain thousands of tasks deep deploys, runs and
undoes (nothing walks the graph by recursion), and a workflow over `max_workflow_tasks` is refused at
deploy, naming the cap, while versions deployed before a lower cap still run."""

from __future__ import annotations

import pytest

from flow45 import store
from flow45.errors import ConfigError
from flow45.settings import Settings, current_settings, use_settings
from tests.store.helpers import T0, complete, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

DEEP = 3000  # past Python's recursion limit (1000)


def chain(length: int, closed: bool = False) -> str:
    """t0000 after t0001 after … t{length-1}: the root is declared last and named last, so that a walk
    in declared or in sorted order starts at the far end. `closed`: the root also waits for t0000."""
    last = length - 1
    lines = ["team: acme", "types:", "  Blob: {fields: {uri: string}}", "workflows:", "  deep:", "    tasks:"]
    for i in range(length):
        after = [f"t{i + 1:04d}"] if i < last else (["t0000"] if closed else [])
        lines.append(f"      t{i:04d}: {{function: step, output: Blob, after: {after}}}")
    return "\n".join(lines) + "\n"


def test_a_chain_thousands_of_tasks_deep_deploys_runs_and_undoes(tmp_path):
    deploy_text(tmp_path, chain(DEEP))
    run = store.trigger("acme", "deep", actor="ann", now=T0)
    root, second = f"t{DEEP - 1:04d}", f"t{DEEP - 2:04d}"
    assert [task for task, state in states(run).items() if state != "pending"] == [root]
    complete(run, root, {"uri": "s3://a"})
    complete(run, second, {"uri": "s3://b"})
    assert states(run)[f"t{DEEP - 3:04d}"] == "available"
    plan = store.undo(instance(run, root).id, "redo", actor="op", dry_run=True)
    assert [(a.task, a.becomes) for a in plan.affected] == [
        (root, "available"), (second, "pending"), (f"t{DEEP - 3:04d}", "pending")]


def test_a_cycle_thousands_of_tasks_around_is_refused_by_name(tmp_path):
    with pytest.raises(ConfigError) as refused:
        deploy_text(tmp_path, chain(DEEP, closed=True))
    (problem,) = refused.value.problems
    assert problem.endswith("workflows.deep.tasks: dependencies form a cycle: t0000 -> t2999 -> t2998 -> t2997 -> "
                            f"t2996 -> ({DEEP + 1 - 10} more) -> t0004 -> t0003 -> t0002 -> t0001 -> t0000"), problem[-300:]


def test_a_workflow_over_the_task_cap_is_refused_and_one_deployed_before_still_runs(tmp_path):
    deploy_text(tmp_path, chain(4))
    use_settings(Settings(database_url=current_settings().database_url, max_workflow_tasks=3))
    with pytest.raises(ConfigError) as refused:
        deploy_text(tmp_path, chain(4).replace("deep:", "wide:"))
    assert any(p.endswith("workflows.wide.tasks: 4 tasks, over max_workflow_tasks (3): a run makes all its "
                          "instances in one transaction (split it into workflows that start one another with `on`)")
               for p in refused.value.problems), refused.value.problems
    run = store.trigger("acme", "deep", actor="ann", now=T0)
    assert states(run)["t0003"] == "available"
    deploy_text(tmp_path, chain(3).replace("deep:", "short:"))  # at the cap: deployed
