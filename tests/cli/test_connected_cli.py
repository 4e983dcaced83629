"""`flow45 deploy` and `flow45 undo` with connected workflows, as an operator types them."""

from __future__ import annotations

import textwrap


from flow45.models import Run
from tests.store.helpers import T0, complete, instance
from tests.store.test_connected import MONTHLY, NIGHTLY, OUTPUT


def test_deploy_refusal_and_undo_with_cancel_connected(flow45, tmp_path):
    from flow45 import store

    (tmp_path / "ops.yaml").write_text(textwrap.dedent(NIGHTLY).replace("export: [reports]", "export: []"))
    (tmp_path / "reports.yaml").write_text(textwrap.dedent(MONTHLY))
    assert flow45("deploy", str(tmp_path / "ops.yaml"))[0] == 0
    code, _, err = flow45("deploy", str(tmp_path / "reports.yaml"))
    assert code == 1 and "reports.yaml: workflows.monthly.on.workflow: ops/nightly is not exported to team reports" in err
    (tmp_path / "ops.yaml").write_text(textwrap.dedent(NIGHTLY))
    assert flow45("deploy", str(tmp_path))[0] == 0, "both in one deploy: the export is seen"
    upstream = store.trigger("ops", "nightly", actor="ann", now=T0)
    complete(upstream, "load", OUTPUT)
    complete(upstream, "publish", OUTPUT)
    [connected] = Run.select().where(Run.upstream_run == upstream)
    publish = str(instance(upstream, "publish").id)
    code, out, _ = flow45("undo", publish, "--reason", "wrong month", "--dry-run")
    assert code == 0 and "runs it started (connected workflows), left as they are (1 unfinished" in out
    assert f"{connected.id}" in out and "reports/monthly" in out and Run.get_by_id(connected.id).status == "running"
    code, out, _ = flow45("undo", publish, "--reason", "wrong month", "--cancel-connected")
    assert code == 0 and "cancelled 1 unfinished" in out
    assert Run.get_by_id(connected.id).status == "cancelled"
