"""A task's `retry_jitter`: each retry's delay loses up to that fraction, by a draw fixed by the
instance and the failure, so that instances failing together do not all come back at once."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.models import WorkflowVersion
from flow45.store.rules import retry_delay
from flow45.store.specs import version_spec
from tests.store.helpers import claim, config_refusal, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")


JITTERY = """
    team: acme
    types:
      Blob:
        fields: {uri: string, size: {type: integer, ge: 0}}
    workflows:
      fetch:
        max_active_runs: null
        tasks:
          call_api: {function: fa, output: Blob, retries: 3, retry_delay: 10m, retry_backoff: 2, retry_jitter: 0.5}
"""


def test_instances_failing_together_come_back_spread_within_their_jitter(tmp_path):
    """A shared dependency down at midnight on New Year's Eve: fifty calls fail at once. Without jitter
    all fifty would come back at 00:10 together; with `retry_jitter: 0.5` each waits 5 to 10 minutes."""
    deploy_text(tmp_path, JITTERY)
    midnight = dt.datetime(2027, 12, 31, 23, 59, 59)
    grants = [claim(store.trigger("acme", "fetch", actor="cron", now=midnight), "call_api", now=midnight)
              for _ in range(50)]
    for grant in grants:
        store.fail(grant.instance, grant.token, "503 from the API", retryable=True, now=midnight)
    waits = [(store.get_instance(g.instance).not_before - midnight).total_seconds() for g in grants]
    assert all(300 <= wait <= 600 for wait in waits), waits
    assert len({round(wait) for wait in waits}) > 40  # spread, not bunched
    assert max(waits) - min(waits) > 200

    first = grants[0]  # its second failure waits 10 to 20 minutes, the same however often it is computed
    task = version_spec(WorkflowVersion.get().id).workflow.tasks["call_api"]
    assert retry_delay(task, 2, first.instance) == retry_delay(task, 2, first.instance)
    assert 600 <= retry_delay(task, 2, first.instance) <= 1200
    assert retry_delay(task.model_copy(update={"retry_jitter": 0.0}), 2, first.instance) == 1200


def test_a_jitter_outside_0_to_1_is_refused_naming_the_task(tmp_path):
    refused = config_refusal(tmp_path, "{w: {tasks: {a: {function: fa, output: Blob, retries: 1, retry_jitter: 1.5}}}}")
    assert "workflows.w.tasks.a.retry_jitter: Input should be less than or equal to 1" in refused
