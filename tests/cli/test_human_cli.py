"""Human tasks from the command line: take, take over with a reason, hand back, the inbox and its
filters (overdue first), `runs` saying who has the task and when it is due, a submit with a comment,
and refusals naming who may decide. The clock is pinned: due times are read against it."""

from __future__ import annotations

import datetime as dt
import json
import re

import pytest
import time_machine

from flow45 import store
from flow45.cli import main
from flow45.settings import Settings, use_settings
from tests.store.helpers import complete, deploy_text, instance

T = dt.datetime(2026, 3, 1, 9, 0)
CONFIG = """
    team: acme
    groups:
      finance: [bob, carol]
    types:
      Ok:
        fields: {ok: boolean}
      Doc:
        fields: {uri: string}
      Month:
        fields: {month: string}
    workflows:
      approval:
        params: Month
        tasks:
          prepare: {function: prep, output: Doc}
          approve: {function: approve, output: Ok, human: true, inputs: {doc: prepare}, assignees: [ann, "@finance"], due: 2h}
"""


@pytest.fixture
def flow45(tmp_path, capsys):
    url = f"sqlite:///{tmp_path / 'flow45.db'}"
    use_settings(Settings(database_url=url))
    from flow45.db import connect
    from flow45.migrate import ensure_schema

    db = connect(url, create=True)
    ensure_schema()
    deploy_text(tmp_path, CONFIG)

    def run(user: str, *args: str):
        try:
            code = main(["--as", user, *args])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    yield run
    db.close()


def ready(month: str, at: dt.datetime) -> int:
    run = store.trigger("acme", "approval", {"month": month}, actor="ann", now=at)
    complete(run, "prepare", {"uri": f"s3://docs/{month}.pdf"}, now=at)
    return instance(run, "approve").id


def test_take_hand_back_and_submit_with_a_comment(flow45):
    approve = ready("2026-02", T)
    with time_machine.travel(T.replace(tzinfo=dt.timezone.utc), tick=False):
        code, _, err = flow45("eve", "submit", str(approve), "--output", '{"ok": true}')
        assert code == 1 and "eve may not decide it; who may: ann, @finance (bob, carol)" in err
        assert flow45("ann", "take", str(approve))[:2] == (0, f"instance {approve} taken\n")
        code, _, err = flow45("bob", "take", str(approve))
        assert code == 1 and f"is taken by ann; take it over with a reason (flow45 take {approve} --reason TEXT)" in err
        code, out, _ = flow45("bob", "take", str(approve), "--reason", "ann is away")
        assert (code, out) == (0, f"instance {approve} taken over from ann\n")
        _, out, _ = flow45("bob", "runs")
        assert "approve (bob, due in 2h)" in out
        code, _, err = flow45("carol", "submit", str(approve), "--output", '{"ok": true}')
        assert code == 1 and "is taken by bob" in err
        assert flow45("bob", "hand-back", str(approve))[:2] == (0, f"instance {approve} handed back\n")
        _, out, _ = flow45("bob", "runs")
        assert "approve (for ann, @finance, due in 2h)" in out
        code, out, _ = flow45("ann", "take", str(approve), "--for", "carol")
        assert (code, out) == (0, f"instance {approve} taken for carol\n")
        code, _, err = flow45("ann", "take", str(approve), "--for", "eve", "--reason", "eve knows")
        assert code == 1 and "eve may not decide it; who may: ann, @finance (bob, carol)" in err
        code, out, _ = flow45("carol", "submit", str(approve), "--output", '{"ok": true}', "--comment", "figures match")
        assert (code, out) == (0, f"instance {approve} succeeded\n")
    _, out, _ = flow45("carol", "instance", str(approve), "--json")
    attempt = json.loads(out)["attempts"][-1]
    assert (attempt["worker"], attempt["comment"]) == ("carol", "figures match")
    _, out, _ = flow45("carol", "instance", str(approve))
    assert "by carol" in out and "    comment figures match\n" in out


def test_the_inbox_shows_what_deciding_needs_overdue_first_with_filters(flow45):
    later = ready("2026-02", T + dt.timedelta(hours=1))  # due 12:00
    late = ready("2026-01", T)  # due 11:00, listed second by id
    store.take(later, actor="ann", now=T + dt.timedelta(hours=1))
    with time_machine.travel((T + dt.timedelta(hours=2, minutes=30)).replace(tzinfo=dt.timezone.utc), tick=False):
        code, out, _ = flow45("carol", "inbox")
        assert code == 0
        blocks = re.findall(r"^instance (\d+) .*$", out, re.M)
        assert [int(b) for b in blocks] == [late, later], out
        assert f"instance {late}  acme/approval run" in out and "approve  OVERDUE by 30m" in out
        assert "approve  due in 30m" in out
        assert "taken by ann; who may decide: ann, @finance (bob, carol)" in out
        assert "  not taken; who may decide: ann, @finance (bob, carol)" in out, "the one ann has not taken"
        assert 'params  {"month":"2026-01"}' in out and 'input   doc = {"uri":"s3://docs/2026-01.pdf"}' in out
        _, out, _ = flow45("carol", "inbox", "--show", "overdue", "--json")
        assert [t["instance"]["id"] for t in json.loads(out)] == [late]
        _, out, _ = flow45("ann", "inbox", "--show", "mine", "--json")
        assert [t["instance"]["id"] for t in json.loads(out)] == [late, later]  # both name ann
        assert flow45("carol", "inbox", "--show", "mine")[1] == "no human tasks waiting (mine)\n"
        _, out, _ = flow45("carol", "inbox", "--show", "groups", "--json")
        assert [t["overdue"] for t in json.loads(out)] == [True, False]
        _, out, _ = flow45("carol", "show", str(store.get_instance(late).run))
        assert "waiting for approve (for ann, @finance, overdue by 30m)" in out
