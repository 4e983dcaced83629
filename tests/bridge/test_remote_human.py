"""Human tasks through the broker: the team's operator, with only its broker URL, takes and decides
a task assigned to it (the ledger names the broker user, the attempt keeps the comment), sees its
inbox with the task's inputs, and is refused a task assigned to others, in words naming who may."""

from __future__ import annotations

import datetime as dt

import pytest

from bridge.remote import RemoteClient
from flow45 import store
from flow45.errors import NotAllowed
from flow45.models import Attempt, Event
from tests.bridge.test_operators import operator
from tests.store.helpers import T0, complete, deploy_text, instance

pytestmark = pytest.mark.integration

CONFIG = """
    team: reports
    groups:
      finance: [ann, bob]
    types:
      Ok:
        fields: {ok: boolean}
      Doc:
        fields: {uri: string}
    workflows:
      ours:
        tasks:
          prepare: {function: prep, output: Doc}
          approve: {function: approve, output: Ok, human: true, inputs: {doc: prepare}, assignees: [reports-ops], due: 1h}
      finance:
        tasks:
          sign_off: {function: sign_off, output: Ok, human: true, assignees: ["@finance"]}
"""


def test_an_assigned_operator_takes_and_decides_through_the_broker_and_others_are_refused(bridge_env, tmp_path):
    deploy_text(tmp_path, CONFIG)
    ours = store.trigger("reports", "ours", actor="ann", now=T0)
    complete(ours, "prepare", {"uri": "s3://docs/q1.pdf"})
    theirs = store.trigger("reports", "finance", actor="ann")
    mine, other = instance(ours, "approve").id, instance(theirs, "sign_off").id
    ops = bridge_env.url("reports-ops")

    taken = operator(ops, "take", str(mine), cwd=tmp_path)
    assert (taken.returncode, taken.stdout) == (0, f"instance {mine} taken\n"), taken.stderr
    client = RemoteClient(ops)
    try:
        [item] = client.human_inbox(show="mine")
        assert (item.instance.id, item.instance.taken_by, item.inputs) == (mine, "reports-ops", {"doc": {"uri": "s3://docs/q1.pdf"}})
        assert item.who == "reports-ops" and item.instance.due_at == T0 + dt.timedelta(hours=1)
        assert item.checked_at is not None and item.overdue == (item.instance.due_at <= item.checked_at), \
            "the bridge's time comes with the item: overdue and the words shown are measured from it"
        with pytest.raises(NotAllowed, match=r"reports-ops may not decide it; who may: @finance \(ann, bob\)"):
            client.take(other)
        with pytest.raises(NotAllowed, match=r"who may: @finance \(ann, bob\)"):
            client.submit(other, {"ok": True}, "mine now")
        with pytest.raises(NotAllowed, match=r"reports-ops may not decide it"):  # nor give it to someone who may
            client.take(other, for_user="ann")
        assert client.submit(mine, {"ok": True}, "checked the figures") == "succeeded"
        assert client.human_inbox(show="mine") == []
    finally:
        client.close()
    assert [e.actor for e in Event.select().where((Event.instance == mine) & Event.kind.in_(["take", "submit"]))] \
        == ["reports-ops", "reports-ops"]
    [attempt] = Attempt.select().where(Attempt.instance == mine)
    assert (attempt.worker, attempt.comment) == ("reports-ops", "checked the figures")
    assert store.get_instance(other).state == "available"


def test_an_operator_gives_a_task_to_another_through_the_broker(bridge_env, tmp_path):
    deploy_text(tmp_path, CONFIG.replace("assignees: [reports-ops]", "assignees: [reports-ops, ann]"))
    ours = store.trigger("reports", "ours", actor="ann", now=T0)
    complete(ours, "prepare", {"uri": "s3://docs/q1.pdf"})
    mine = instance(ours, "approve").id
    given = operator(bridge_env.url("reports-ops"), "take", str(mine), "--for", "ann", cwd=tmp_path)
    assert (given.returncode, given.stdout) == (0, f"instance {mine} taken for ann\n"), given.stderr
    [event] = Event.select().where((Event.instance == mine) & (Event.kind == "take"))
    assert (event.actor, event.detail["taken_by"]) == ("reports-ops", "ann")
    refused = operator(bridge_env.url("reports-ops"), "take", str(mine), "--for", "ann smith", cwd=tmp_path)
    assert refused.returncode == 1 and "user" in refused.stderr and "Traceback" not in refused.stderr, refused.stderr
