"""The human inbox reads its page at once: the instances, their runs and their upstream outputs in a
few statements however many tasks wait, each item exactly what the reads of its one task give; on
SQLite and PostgreSQL."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest

from flow45 import store
from flow45 import states as S
from flow45.models import Run
from flow45.store import inbox
from flow45.store.inbox import human_inbox
from flow45.store.specs import version_spec
from flow45.views import InboxItem
from tests.store.helpers import T0, claim, complete, deploy_text, instance

pytestmark = pytest.mark.usefixtures("store_db")

HOUR = dt.timedelta(hours=1)
OK = {"ok": True}
ACME = """
team: acme
groups: {finance: [bob, carol], managers: [dave]}
types:
  Ok: {fields: {ok: boolean}}
  Doc: {fields: {uri: string}}
workflows:
  approval:
    max_active_runs: null
    tasks:
      prepare: {function: prep, output: Doc}
      check: {function: chk, output: Ok}
      approve: {function: approve, output: Ok, human: true, inputs: {doc: prepare, check: check},
                assignees: [ann, '@finance'], due: 2h, overdue: {escalate: ['@managers']}}
      publish: {function: pub, output: Doc, inputs: {approval: approve}}
  review:
    max_active_runs: null
    tasks:
      draft: {function: draft, output: Doc}
      sign: {function: sign, output: Ok, human: true, inputs: {doc: draft}, priority: 3}
      countersign: {function: countersign, output: Ok, human: true, inputs: {doc: draft}, after: [sign],
                    assignees: [bob], due: 1h}
      glance: {function: glance, output: Ok, human: true, after: [draft], assignees: [ann]}
"""
RIVAL = """
team: rival
types: {Ok: {fields: {ok: boolean}}}
workflows:
  approval:
    tasks:
      prepare: {function: prep, output: Ok}
      approve: {function: approve, output: Ok, human: true, inputs: {doc: prepare}, assignees: [ann], due: 30m}
"""


def approval(check: str, at: dt.datetime) -> int:
    """A run of acme's approval whose `approve` became available at `at`, `check` succeeded or skipped."""
    run = store.trigger("acme", "approval", actor="ann", now=at)
    complete(run, "prepare", {"uri": f"s3://docs/{run}.pdf"}, now=at)
    if check == "succeeded":
        complete(run, "check", OK, now=at)
    else:
        grant = claim(run, "check", now=at)
        store.skip(grant.instance, grant.token, "nothing to check", now=at)
    return run


def varied_inbox(tmp_path) -> dict[str, int]:
    """Human tasks of several runs, workflows and teams: taken, overdue, escalated, undone after a
    decision (with the archived attempt a downstream task used), noted, with upstream tasks skipped or
    succeeded. Returns the instance ids by name."""
    deploy_text(tmp_path, ACME)
    deploy_text(tmp_path, RIVAL)
    at = {}
    escalated = approval("succeeded", T0)
    store.human_alarms(T0 + 2 * HOUR)  # its due passed: escalated to @managers
    at["escalated"] = instance(escalated, "approve").id

    undone = approval("succeeded", T0 + HOUR)
    at["undone"] = instance(undone, "approve").id
    store.submit_human(at["undone"], OK, actor="bob", comment="fine", now=T0 + HOUR)
    claim(undone, "publish", now=T0 + HOUR)
    store.undo(at["undone"], "the figures changed", actor="ann", now=T0 + HOUR)
    store.note_run(undone, "look at page 2", actor="carol", task="approve", now=T0 + HOUR)

    taken = approval("skipped", T0 + 2 * HOUR)
    at["taken"] = instance(taken, "approve").id
    store.take(at["taken"], actor="carol", now=T0 + 2 * HOUR)

    review = store.trigger("acme", "review", actor="ann", now=T0)
    complete(review, "draft", {"uri": "s3://drafts/1"}, now=T0)
    store.submit_human(instance(review, "sign").id, OK, actor="ann", now=T0)
    at["countersign"], at["glance"] = instance(review, "countersign").id, instance(review, "glance").id
    waiting = store.trigger("acme", "review", actor="ann", now=T0 + HOUR)
    complete(waiting, "draft", {"uri": "s3://drafts/2"}, now=T0 + HOUR)
    at["sign"], at["glance again"] = instance(waiting, "sign").id, instance(waiting, "glance").id

    rival = store.trigger("rival", "approval", actor="ann", now=T0)
    complete(rival, "prepare", OK, now=T0)
    at["rival"] = instance(rival, "approve").id
    return at


def read_alone(item: InboxItem) -> InboxItem:
    """The item as the reads of its one task give it: its instance, its run, and the output of each
    upstream task it takes (null unless that task succeeded)."""
    view = store.get_instance(item.instance.id)
    [run] = store.list_runs(before=view.run + 1, limit=1)
    upstream = {i.task: i for i in store.get_run(view.run, with_attempts=True).instances}
    inputs = {}
    for param, task in version_spec(Run.get_by_id(view.run).version_id).task(view.task).inputs.items():
        done = upstream[task] if upstream[task].state == S.SUCCEEDED else None
        inputs[param] = next((a.output for a in done.attempts if a.status == "succeeded" and not a.archived),
                             None) if done else None
    return dataclasses.replace(item, instance=view, run=run, inputs=inputs)


def test_each_item_of_the_inbox_is_what_the_reads_of_its_one_task_give(tmp_path, monkeypatch):
    at = varied_inbox(tmp_path)
    now = T0 + 3 * HOUR
    everything = human_inbox(None, "ann", now=now)
    assert [item.instance.id for item in everything] == [  # overdue first, then by due time, priority and age
        at["rival"], at["countersign"], at["escalated"], at["undone"], at["taken"], at["sign"], at["glance"],
        at["glance again"]]
    assert everything == [read_alone(item) for item in everything]

    by_id = {item.instance.id: item for item in everything}
    assert by_id[at["escalated"]].who == "ann, @finance (bob, carol), @managers (dave)"
    assert by_id[at["sign"]].who == "any operator of the team"
    assert [by_id[at[name]].overdue for name in ("escalated", "undone", "taken")] == [True, True, False]
    assert by_id[at["taken"]].inputs == {"doc": {"uri": "s3://docs/3.pdf"}, "check": None}
    assert by_id[at["glance"]].inputs == {} and by_id[at["sign"]].inputs == {"doc": {"uri": "s3://drafts/2"}}
    [decided] = by_id[at["undone"]].instance.attempts
    assert decided.archived and decided.comment == "fine" and [u.task for u in decided.used_by] == ["publish"]
    assert [note.text for note in by_id[at["undone"]].instance.notes] == ["look at page 2"]
    assert by_id[at["taken"]].instance.taken_by == "carol"

    for team, user, show in (("acme", "ann", "mine"), ("acme", "bob", "groups"), (None, "dave", "overdue"),
                             ("rival", "ann", "all"), ("acme", "ann", "all")):
        page = human_inbox(team, user, show, now=now)
        assert page and page == [read_alone(item) for item in page], (team, user, show)
    assert [item.instance.id for item in human_inbox("acme", "ann", limit=2, now=now)] == [at["countersign"], at["escalated"]]
    monkeypatch.setattr(inbox, "READ_AT_ONCE", 3)  # a long page is read a few hundred tasks at a time
    assert human_inbox(None, "ann", now=now) == everything


def statements(caplog, read) -> int:
    caplog.clear()
    with caplog.at_level(logging.DEBUG, logger="peewee"):
        read()
    return sum(isinstance(record.msg, tuple) for record in caplog.records)


def test_a_read_of_the_inbox_makes_as_many_statements_for_many_waiting_tasks_as_for_one(tmp_path, caplog):
    deploy_text(tmp_path, ACME)
    approval("succeeded", T0)
    human_inbox("acme", "ann", now=T0)  # the specs read once, as a dashboard has them
    one = statements(caplog, lambda: human_inbox("acme", "ann", now=T0))
    for n in range(8):
        approval("skipped" if n % 2 else "succeeded", T0)
    assert len(human_inbox("acme", "ann", now=T0)) == 9
    assert statements(caplog, lambda: human_inbox("acme", "ann", now=T0)) == one


DESKS = """
team: acme
types: {Ok: {fields: {ok: boolean}}}
workflows:
  bobs:
    max_active_runs: null
    tasks:
      decide: {function: decide, output: Ok, human: true, assignees: [bob], priority: 5}
  anns:
    max_active_runs: null
    tasks:
      decide: {function: decide, output: Ok, human: true, assignees: [ann]}
"""


def test_a_filtered_inbox_finds_the_users_tasks_however_many_others_wait_before_them(tmp_path, monkeypatch):
    """A filter (mine, groups, overdue) looked through the first SCAN (5,000) waiting tasks only: when as
    many of others' came first, a user's own inbox was empty, and said nothing of the cut."""
    deploy_text(tmp_path, DESKS)
    for _ in range(5):
        store.trigger("acme", "bobs", actor="ops", now=T0)  # more urgent: ahead of ann's in the inbox's order
    anns = [instance(store.trigger("acme", "anns", actor="ops", now=T0), "decide").id for _ in range(2)]
    monkeypatch.setattr(inbox, "SCAN", 2)
    assert [item.instance.id for item in human_inbox("acme", "ann", "mine", limit=1, now=T0)] == anns[:1]
    assert [item.instance.id for item in human_inbox("acme", "ann", "mine", limit=5, now=T0)] == anns
    assert len(human_inbox("acme", "bob", "mine", limit=10, now=T0)) == 5
