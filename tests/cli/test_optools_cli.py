"""The operator's everyday tools as an operator types them, on the database (both backends)."""

from __future__ import annotations

import json

import pytest

from flow45 import store
from flow45.cli import main
from flow45.models import Event
from flow45.settings import Settings, use_settings
from tests.store.helpers import BLOB, DIAMOND, T0, claim, deploy_text, instance, states


@pytest.fixture
def flow45(db_url, capsys, store_db):
    use_settings(Settings(database_url=db_url))

    def run(*args: str):
        try:
            code = main(["--as", "ops-ann", *args])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run


def test_set_output_checks_the_type_then_finishes_the_task_as_the_operator(flow45, tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    a = str(claim(run, "a").instance)
    code, out, err = flow45("set-output", a, "--output", '{"uri": "s3://x"}', "--reason", "by hand")
    assert code == 1 and out == "" and "size" in err and "Traceback" not in err
    code, _, err = flow45("set-output", a, "--output", '{"uri": ', "--reason", "by hand")
    assert code == 2 and "--output is not valid JSON" in err
    code, out, err = flow45("set-output", a, "--output", json.dumps(BLOB), "--reason", "by hand", "--json")
    assert code == 0 and json.loads(out) == {"instance": int(a), "state": "succeeded"}, err
    assert states(run)["b"] == "available"
    event = Event.get((Event.instance == int(a)) & (Event.kind == "set_output"))
    assert (event.actor, event.detail["reason"]) == ("ops-ann", "by hand")
    code, out, _ = flow45("instance", a)
    assert code == 0 and "ops-ann" in out
    code, _, err = flow45("set-output", str(instance(run, "d").id), "--output", json.dumps(BLOB), "--reason", "x")
    assert code == 1 and "is pending; an output can be set only while it is" in err
