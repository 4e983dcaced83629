"""Outputs and params are stored normalised, and offers pass that form on, on SQLite and PostgreSQL:
datetimes in UTC with `Z`, omitted optional fields as null, nothing coerced, nothing non-finite."""

from __future__ import annotations

import pytest

from flow45 import messages as m
from flow45 import store
from flow45.db import atomic
from flow45.errors import InvalidOutput, InvalidParams
from flow45.models import Outbox
from flow45.store.batch import Item, apply_worker_batch
from tests.store.helpers import T0, claim, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")

CONFIG = """
    team: acme
    types:
      Stamp:
        fields:
          at: datetime
          day: date
          ratio: {type: number, optional: true}
          note: {type: string, optional: true}
      Approval:
        fields: {approved: boolean, reviewer: string}
      Params:
        fields: {batch: integer}
    workflows:
      stamped:
        params: Params
        tasks:
          make: {function: make, output: Stamp}
          use: {function: use, output: Stamp, inputs: {stamp: make}}
          approve: {function: approve, output: Approval, human: true, inputs: {stamp: make}}
"""

SENT = {"at": "2026-03-01T14:05:00.25+02:00", "day": "2026-03-01"}
NORMALISED = {"at": "2026-03-01T12:05:00.250000Z", "day": "2026-03-01", "ratio": None, "note": None}


def _submit_through_the_batch(instance_id: int, token: str, output):
    item = Item("acme", "m-submit", m.Submit(type="submit", instance=instance_id, token=token, output=output))
    with atomic():
        apply_worker_batch([item], T0)
    if item.error is not None:
        raise item.error
    return item.result


@pytest.mark.parametrize("submit", [
    lambda i, t, o: store.submit(i, t, o, now=T0), _submit_through_the_batch,
], ids=["verb", "batch"])
def test_offers_carry_the_normalised_output_with_null_for_omitted_fields(tmp_path, submit):
    deploy_text(tmp_path, CONFIG)
    run = store.trigger("acme", "stamped", {"batch": 3}, actor="ann", now=T0)
    grant = claim(run, "make")
    submit(grant.instance, grant.token, SENT)
    assert store.get_instance(grant.instance).attempts[-1].output == NORMALISED
    use = instance(run, "use")
    offer = Outbox.select().where(Outbox.instance == use.id).order_by(Outbox.id.desc()).get()
    assert offer.body["inputs"] == {"stamp": NORMALISED} and offer.body["params"] == {"batch": 3}
    assert claim(run, "use").inputs == {"stamp": NORMALISED}


@pytest.mark.parametrize("output, words", [
    ({**SENT, "ratio": float("nan")}, "output.ratio: Input should be a finite number"),
    ({**SENT, "ratio": "0.5"}, "output.ratio: Input should be a valid number"),
    ({**SENT, "at": "2026-03-01T12:05:00"}, "output.at: the datetime '2026-03-01T12:05:00' has no offset"),
    ({**SENT, "day": "2026-03-01T00:00:00Z"}, "output.day: expected a date as YYYY-MM-DD"),
])
def test_a_worker_output_that_is_not_strictly_its_type_is_refused(tmp_path, output, words):
    deploy_text(tmp_path, CONFIG)
    run = store.trigger("acme", "stamped", {"batch": 3}, actor="ann", now=T0)
    grant = claim(run, "make")
    with pytest.raises(InvalidOutput, match=words):
        store.submit(grant.instance, grant.token, output, now=T0)
    assert store.get_instance(grant.instance).state == "running"


def test_a_human_boolean_takes_only_true_or_false(tmp_path):
    deploy_text(tmp_path, CONFIG)
    run = store.trigger("acme", "stamped", {"batch": 3}, actor="ann", now=T0)
    grant = claim(run, "make")
    store.submit(grant.instance, grant.token, SENT, now=T0)
    approve = instance(run, "approve").id
    for answer in ("yes", 1, "true"):
        with pytest.raises(InvalidOutput, match="output.approved: Input should be a valid boolean"):
            store.submit_human(approve, {"approved": answer, "reviewer": "ann"}, actor="ann", now=T0)
    assert store.submit_human(approve, {"approved": True, "reviewer": "ann"}, actor="ann", now=T0).state == "succeeded"


@pytest.mark.parametrize("params", [{"batch": "3"}, {"batch": 3.0}, {"batch": True}])
def test_run_params_are_not_coerced(tmp_path, params):
    deploy_text(tmp_path, CONFIG)
    with pytest.raises(InvalidParams, match="params.batch: Input should be a valid integer"):
        store.trigger("acme", "stamped", params, actor="ann", now=T0)
