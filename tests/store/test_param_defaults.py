"""A declared field's `default` (Airflow's Param default): the value a missing field takes, so that a
scheduled workflow can have params (tests/scheduler/test_scheduled_runs.py), a trigger may leave fields
out and an output may omit one. Checked against the field's type at deploy, with a message naming the
field."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from flow45 import store
from flow45.config import load_config
from flow45.errors import ConfigError, InvalidParams
from flow45.models import Attempt, Run, WorkflowVersion
from flow45.store import specs
from tests.store.helpers import claim, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")

FIRST_OF_MONTH = dt.datetime(2027, 3, 1, 6, 0)
CONFIG = """
team: acme
types:
  Scope:
    fields:
      region: {type: enum, values: [emea, apac, amer], default: emea}
      days: {type: integer, ge: 1, default: 31}
      dry_run: {type: boolean, default: false}
      since: {type: date, optional: true, default: "2027-01-01"}
      tags: {type: list, items: string, default: [monthly]}
      note: {type: string, optional: true}
  Report:
    fields:
      uri: string
      pages: {type: integer, ge: 0, default: 0}
workflows:
  monthly:
    schedule: {cron: "0 6 1 * *"}
    params: Scope
    tasks:
      render: {function: render, output: Report}
"""
DEFAULTS = {"region": "emea", "days": 31, "dry_run": False, "since": "2027-01-01", "tags": ["monthly"], "note": None}


def test_a_trigger_may_leave_out_fields_with_defaults_and_give_others(tmp_path):
    deploy_text(tmp_path, CONFIG)
    run = store.trigger("acme", "monthly", {"region": "apac", "since": None, "tags": []}, actor="ann",
                        now=FIRST_OF_MONTH)
    assert Run.get_by_id(run).params == {**DEFAULTS, "region": "apac", "since": None, "tags": []}
    with pytest.raises(InvalidParams, match="days: Input should be greater than or equal to 1"):
        store.trigger("acme", "monthly", {"days": 0}, actor="ann", now=FIRST_OF_MONTH)


def test_an_output_without_a_field_that_has_a_default_is_stored_with_it(tmp_path):
    deploy_text(tmp_path, CONFIG)
    run = store.trigger("acme", "monthly", actor="ann", now=FIRST_OF_MONTH)
    grant = claim(run, "render", now=FIRST_OF_MONTH)
    store.submit(grant.instance, grant.token, {"uri": "s3://reports/2027-02.pdf"}, now=FIRST_OF_MONTH)
    assert Attempt.get(Attempt.instance == grant.instance).output == {"uri": "s3://reports/2027-02.pdf", "pages": 0}


def test_the_json_schema_workers_get_shows_the_defaults(tmp_path):
    deploy_text(tmp_path, CONFIG)
    spec = specs.current_spec(store.find_workflow("acme", "monthly"))
    schema = spec.types.json_schema("Scope")["properties"]
    assert (schema["region"]["default"], schema["days"]["default"], schema["tags"]["default"]) == (
        "emea", 31, ["monthly"])


def test_a_version_without_defaults_keeps_its_content_hash(tmp_path):
    plain = CONFIG.replace(", default: emea", "").replace(", default: 31", "").replace(", default: false", "")
    plain = plain.replace(', default: "2027-01-01"', "").replace(", default: [monthly]", "")
    plain = plain.replace(", default: 0", "")
    deploy_text(tmp_path, plain)
    stored = WorkflowVersion.get().spec["types"]["Scope"]["fields"]["region"]
    assert "default" not in stored  # as every version stored before defaults were written


@pytest.mark.parametrize("field, refused", [
    ('{type: integer, default: "31"}', "Scope.fields.days.default: not a value of the field's type: Input should "
                                       "be a valid integer"),
    ("{type: integer, ge: 1, default: 0}", "greater than or equal to 1"),
    ("{type: enum, values: [emea, apac], default: mars}", "Input should be 'emea' or 'apac'"),
    ("{type: date, default: 2027-02-29}", "Scope.fields.days.default: not a value of the field's type"),
    ("{type: list, items: {type: string, default: x}}", "Scope.fields.days.items.default: a list's items take no "
                                                        "default"),
    ('{type: string, default: "postgres://ann:hunter2@db/x"}',
     "days.default: refused: the value looks like a URL with a password"),
])
def test_a_default_must_be_a_value_of_its_field(tmp_path, field, refused):
    written = tmp_path / "refused.yaml"
    written.write_text(textwrap.dedent(f"""
    team: acme
    types:
      Scope: {{fields: {{days: {field}}}}}
      Blob: {{fields: {{uri: string}}}}
    workflows: {{w: {{params: Scope, tasks: {{a: {{function: f, output: Blob}}}}}}}}
    """))
    with pytest.raises(ConfigError) as caught:
        load_config(written)
    assert refused in str(caught.value)


def test_a_field_of_a_declared_type_takes_a_default_of_that_type(tmp_path):
    deploy_text(tmp_path, CONFIG.replace("      note: {type: string, optional: true}", """\
      note: {type: string, optional: true}
      owner: {type: Owner, default: {name: reports-team, pager: false}}
  Owner:
    fields: {name: string, pager: boolean}"""))
    run = store.trigger("acme", "monthly", actor="ann", now=FIRST_OF_MONTH)
    assert Run.get_by_id(run).params["owner"] == {"name": "reports-team", "pager": False}
    with pytest.raises(ConfigError, match=r"Scope.fields.owner.default: not a value of the field's type: pager: "):
        deploy_text(tmp_path, CONFIG.replace("      note: {type: string, optional: true}", """\
      owner: {type: Owner, default: {name: reports-team, pager: "no"}}
  Owner:
    fields: {name: string, pager: boolean}"""))
