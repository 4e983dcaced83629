"""A task's `when`: conditions on the inputs it would receive, checked as it becomes ready. Not met, it
is skipped with the condition and the value in the ledger, and what follows it goes on as after any
skip; met, it is offered. An undo of its upstream asks again."""

from __future__ import annotations

import datetime as dt
import textwrap

import pytest

from flow45 import store
from flow45.config import load_config
from flow45.errors import ConfigError
from flow45.models import Event, Outbox
from tests.store.helpers import claim, deploy_text, instance, states

pytestmark = pytest.mark.usefixtures("store_db")

LEAP_DAY = dt.datetime(2028, 2, 29, 9, 0)
INVOICES = """
    team: acme
    types:
      Invoice:
        fields: {amount: number, region: {type: enum, values: [emea, apac, amer]}, paid: boolean,
                 due: date, payer: {type: Party, optional: true}, sent: {type: datetime, optional: true}}
      Party:
        fields: {name: string, vip: boolean}
      Approval:
        fields: {approved: boolean, by: string}
      Receipt:
        fields: {uri: string}
    workflows:
      invoices:
        tasks:
          extract: {function: extract_invoice, output: Invoice}
          review:
            function: review_invoice
            output: Approval
            inputs: {invoice: extract}
            when: {invoice.amount: {gt: 1000}, invoice.region: [emea, apac]}
          pay:
            function: pay_invoice
            output: Receipt
            inputs: {invoice: extract, approval: review}
            when: {approval.approved: true}
          archive: {function: archive_invoice, output: Receipt, inputs: {receipt: pay}}
"""
INVOICE = {"amount": 1500.0, "region": "emea", "paid": False, "due": "2028-03-01", "payer": None}


def _submit(run: int, task: str, output: dict, at: dt.datetime = LEAP_DAY, **kwargs):
    grant = claim(run, task, now=at)
    return store.submit(grant.instance, grant.token, output, now=at, **kwargs)


def _skip_reason(run: int, task: str) -> str:
    events = Event.select().where((Event.instance == instance(run, task).id) & (Event.kind == "skip"))
    return [e.detail for e in events.order_by(Event.id)][-1]["reason"]


def test_an_unmet_condition_skips_the_task_and_what_follows_goes_on_with_null(tmp_path):
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(run, "extract", {**INVOICE, "amount": 250.0})
    assert states(run) == {"extract": "succeeded", "review": "skipped", "pay": "skipped", "archive": "available"}
    assert _skip_reason(run, "review") == "when invoice.amount > 1000: it is 250.0"
    assert _skip_reason(run, "pay") == "when approval.approved is true: it is null"  # a skipped upstream passes null
    offers = [o.body["task"] for o in Outbox.select() if o.body["run"] == run]
    assert "review" not in offers and "pay" not in offers  # never offered to a worker
    assert claim(run, "archive", now=LEAP_DAY).inputs == {"receipt": None}
    skip = Event.get((Event.instance == instance(run, "review").id) & (Event.kind == "skip"))
    assert (skip.from_state, skip.to_state, skip.detail["when"]) == ("pending", "skipped", True)


def test_a_met_condition_offers_the_task_and_a_rejection_skips_the_next(tmp_path):
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(run, "extract", INVOICE)
    assert states(run)["review"] == "available"
    _submit(run, "review", {"approved": False, "by": "kim"})
    assert states(run)["pay"] == "skipped" and states(run)["archive"] == "available"
    assert _skip_reason(run, "pay") == "when approval.approved is true: it is false"


def test_one_of_a_list_and_every_condition_must_hold(tmp_path):
    deploy_text(tmp_path, INVOICES)
    amer = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(amer, "extract", {**INVOICE, "region": "amer"})
    assert _skip_reason(amer, "review") == 'when invoice.region is one of "emea", "apac": it is "amer"'
    apac = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(apac, "extract", {**INVOICE, "amount": 1000.01, "region": "apac"})
    assert states(apac)["review"] == "available"


def test_an_undo_of_the_upstream_asks_again(tmp_path):
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(run, "extract", {**INVOICE, "amount": 10.0})
    assert states(run)["review"] == "skipped"
    store.undo(instance(run, "extract").id, "the amount was read wrong", actor="ann", now=LEAP_DAY)
    assert states(run) == {"extract": "available", "review": "pending", "pay": "pending", "archive": "pending"}
    _submit(run, "extract", INVOICE)
    assert states(run)["review"] == "available"
    _submit(run, "review", {"approved": True, "by": "kim"})
    assert states(run)["pay"] == "available"


def test_the_eager_next_task_is_never_one_whose_condition_fails(tmp_path):
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    grant = claim(run, "extract", now=LEAP_DAY)
    small = _submit_message(grant, {**INVOICE, "amount": 5.0}, ["review_invoice", "archive_invoice"])
    reply = store.apply_message(small, team="acme", now=LEAP_DAY)
    assert reply.next is not None and reply.next["task"] == "archive"  # review was skipped: archive came next
    again = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    grant = claim(again, "extract", now=LEAP_DAY)
    reply = store.apply_message(_submit_message(grant, INVOICE, ["review_invoice"]), team="acme", now=LEAP_DAY)
    assert reply.next["task"] == "review"


def _refusal(tmp_path, text: str) -> str:
    path = tmp_path / "refused.yaml"
    path.write_text(textwrap.dedent(text))
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    return str(refused.value)


def _submit_message(grant, output: dict, functions: list[str]):
    from flow45 import messages as m

    return m.Submit.model_construct(type="submit", instance=grant.instance, token=grant.token, output=output,
                                    next=functions, log_url=None, log_tail=None)


def test_an_operator_skip_or_set_output_upstream_is_judged_the_same(tmp_path):
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    store.set_output(instance(run, "extract").id, INVOICE, reason="typed in from the paper copy", actor="ann",
                     now=LEAP_DAY)
    assert states(run)["review"] == "available"
    store.skip_instance(instance(run, "review").id, "reviewed by phone", actor="ann", now=LEAP_DAY)
    assert states(run)["pay"] == "skipped" and states(run)["archive"] == "available"


@pytest.mark.parametrize("when, problem", [
    ("{amount.x: 1}", "when.amount.x: 'amount' is neither one of its inputs (invoice) nor the run's `params`"),
    ("{params.full: true}", "when.params.full: the workflow takes no params (declare `params:` with a type"),
    ("{invoice.amuont: 1}", "when.invoice.amuont: Invoice has no field 'amuont' (did you mean 'amount'?)"),
    ("{invoice.amount: \"1000\"}", "when.invoice.amount: a number field cannot be \"1000\""),
    ("{invoice.paid: {gt: 0}}", "when.invoice.paid: a boolean is not ordered: gt does not apply"),
    ("{invoice.region: [emea, mars]}", "when.invoice.region: \"mars\" is not one of the enum's values (emea, apac"),
    ("{invoice.payer: true}", "when.invoice.payer: a Party is compared only with null (is it there?); name a field"),
    ("{invoice.amount.cents: 1}", "when.invoice.amount.cents: invoice.amount is a number: there is no field inside"),
    ("{invoice.amount: {above: 1}}", "unknown comparison 'above': write gt, ge, lt, le or ne"),
    ("{invoice: 1}", "when.invoice: 'invoice' is not an input and a field in it (INPUT.FIELD, such as approval"),
    ("{invoice.due: {lt: next week}}", "when.invoice.due: a date field cannot be \"next week\" (a date is YYYY-MM-DD"),
    ("{invoice.due: [2028-3-1]}", "when.invoice.due: a date field cannot be \"2028-3-1\" (a date is YYYY-MM-DD"),
    ("{invoice.sent: {gt: yesterday}}", "when.invoice.sent: a datetime field cannot be \"yesterday\" (a time with its "
                                        "offset, such as 2028-02-29T09:00:00Z"),
    ("{invoice.sent: \"2028-02-29T09:00\"}", "when.invoice.sent: a datetime field cannot be \"2028-02-29T09:00\""),
])
def test_a_condition_that_cannot_be_judged_is_refused_at_deploy_naming_it(tmp_path, when, problem):
    text = INVOICES.replace("when: {invoice.amount: {gt: 1000}, invoice.region: [emea, apac]}", f"when: {when}")
    refused = _refusal(tmp_path, text)
    assert "workflows.invoices.tasks.review" in refused and problem in refused


def test_a_nested_field_and_a_date_compare_as_written(tmp_path):
    text = INVOICES.replace("when: {invoice.amount: {gt: 1000}, invoice.region: [emea, apac]}",
                            "when: {invoice.payer.vip: true, invoice.due: {lt: \"2028-03-02\"}}")
    deploy_text(tmp_path, text)
    vip = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(vip, "extract", {**INVOICE, "payer": {"name": "Acme", "vip": True}})
    assert states(vip)["review"] == "available"
    later = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(later, "extract", {**INVOICE, "payer": {"name": "Acme", "vip": True}, "due": "2028-03-05"})
    assert _skip_reason(later, "review") == 'when invoice.due < "2028-03-02": it is "2028-03-05"'
    nobody = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(nobody, "extract", INVOICE)
    assert _skip_reason(nobody, "review") == "when invoice.payer.vip is true: it is null"


def test_a_time_compares_as_the_instant_it_names_whatever_offset_the_condition_is_written_in(tmp_path):
    """The store keeps a time in UTC (and without a fraction when it has none): 09:30Z is after
    10:00+01:00, and 09:00:00.5Z after 09:00Z, though neither is as text."""
    text = INVOICES.replace("when: {invoice.amount: {gt: 1000}, invoice.region: [emea, apac]}",
                            "when: {invoice.sent: {ge: \"2028-02-29T10:00:00+01:00\"}}")
    deploy_text(tmp_path, text)
    late = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(late, "extract", {**INVOICE, "sent": "2028-02-29T10:30:00+01:00"})
    assert states(late)["review"] == "available"
    on_the_dot = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(on_the_dot, "extract", {**INVOICE, "sent": "2028-02-29T09:00:00.000Z"})
    assert states(on_the_dot)["review"] == "available"
    early = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(early, "extract", {**INVOICE, "sent": "2028-02-29T08:59:59.999999Z"})
    assert _skip_reason(early, "review") == \
        'when invoice.sent >= "2028-02-29T10:00:00+01:00": it is "2028-02-29T08:59:59.999999Z"'


def test_a_wide_run_read_in_part_skips_and_goes_on_as_one_read_whole(tmp_path, monkeypatch):
    from flow45.models import Run
    from flow45.store import specs, unit

    monkeypatch.setattr(specs, "WIDE", 2)  # four tasks are wide: a change reads the instances it needs alone
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    assert specs.version_spec(Run.get_by_id(run).version_id).wide
    grant = claim(run, "extract", now=LEAP_DAY)
    whole = []
    monkeypatch.setattr(unit.Unit, "settle", lambda self, run_id, actor: whole.append(run_id))
    store.submit(grant.instance, grant.token, {**INVOICE, "amount": 250.0}, now=LEAP_DAY)
    assert whole == []  # settled in part, the skips followed one after the other
    monkeypatch.undo()
    assert states(run) == {"extract": "succeeded", "review": "skipped", "pay": "skipped", "archive": "available"}
    _submit(run, "archive", {"uri": "s3://nothing-to-pay"})
    assert store.get_run(run).status == "succeeded"


def test_a_task_held_before_it_was_ready_is_judged_when_released(tmp_path):
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    store.hold(instance(run, "review").id, actor="ann", reason="wait for audit", now=LEAP_DAY)
    _submit(run, "extract", {**INVOICE, "amount": 20.0})
    assert states(run)["review"] == "held"
    store.release(instance(run, "review").id, actor="ann", now=LEAP_DAY)
    assert states(run)["review"] == "skipped" and states(run)["pay"] == "skipped"
    assert _skip_reason(run, "review") == "when invoice.amount > 1000: it is 20.0"


def test_in_the_example_a_rejected_report_is_not_published_and_the_graph_says_why():
    from flow45.config import load_config
    from flow45.graph import mermaid
    from tests.conftest import EXAMPLES

    [config] = load_config(EXAMPLES)
    store.deploy([config], actor="ann", now=LEAP_DAY)
    run = store.trigger("reports", "monthly_report", {"month": "2028-01"}, actor="ann", now=LEAP_DAY)
    _submit(run, "extract", {"uri": "s3://sales/2028-01.csv", "rows": 3})
    _submit(run, "render", {"uri": "s3://reports/2028-01.pdf", "pages": 4, "checksum": None})
    store.submit_human(instance(run, "approve").id, {"approved": False, "reviewer": "kim", "comment": "wrong logo"},
                       actor="demo-operator", now=LEAP_DAY)
    assert states(run)["publish"] == "skipped" and store.get_run(run).status == "succeeded"
    assert _skip_reason(run, "publish") == "when approval.approved is true: it is false"
    graph = mermaid("reports/monthly_report", config.workflows["monthly_report"])
    assert "publish_document → Document<br/>when approval.approved is true\"]" in graph
    assert 'render["render<br/>render_pdf → Document<br/>at most 1 at once"]' in graph  # its max_running


def test_show_and_instance_say_why_a_task_was_skipped(tmp_path):
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(run, "extract", {**INVOICE, "amount": 250.0})
    why = {i.task: i.skip_reason for i in store.get_run(run).instances}
    assert why == {"extract": None, "review": "when invoice.amount > 1000: it is 250.0",
                   "pay": "when approval.approved is true: it is null", "archive": None}
    assert store.get_instance(instance(run, "pay").id).skip_reason == "when approval.approved is true: it is null"
    store.undo(instance(run, "extract").id, "wrong amount", actor="ann", now=LEAP_DAY)
    assert store.get_instance(instance(run, "review").id).skip_reason is None  # pending again: no reason
    assert store.run_as_of(run, event=max(e.id for e in Event.select())).instances[1].skip_reason is None


def test_an_undo_of_the_skipped_task_itself_runs_it_whatever_its_condition(tmp_path):
    """The operator's explicit choice, the one way to force it: its inputs are unchanged, so asking
    again would only skip it again."""
    deploy_text(tmp_path, INVOICES)
    run = store.trigger("acme", "invoices", actor="ann", now=LEAP_DAY)
    _submit(run, "extract", {**INVOICE, "amount": 20.0})
    store.undo(instance(run, "review").id, "review it anyway: the supplier is new", actor="ann", now=LEAP_DAY)
    assert states(run)["review"] == "available" and states(run)["pay"] == "pending"
    _submit(run, "review", {"approved": True, "by": "kim"})
    assert states(run)["pay"] == "available"


def test_a_condition_on_the_runs_params_can_skip_a_root_and_what_follows_it(tmp_path, monkeypatch):
    from flow45.store import specs

    text = (INVOICES
            .replace("      invoices:\n        tasks:", "      invoices:\n        params: Options\n        tasks:")
            .replace("    workflows:", "      Options:\n        fields: {audit: {type: boolean, optional: true}}\n"
                                      "    workflows:")
            .replace("extract: {function: extract_invoice, output: Invoice}",
                     "extract: {function: extract_invoice, output: Invoice, when: {params.audit: true}}"))
    deploy_text(tmp_path, text)
    audited = store.trigger("acme", "invoices", {"audit": True}, actor="ann", now=LEAP_DAY)
    assert states(audited)["extract"] == "available"
    plain = store.trigger("acme", "invoices", {}, actor="ann", now=LEAP_DAY)
    assert states(plain) == {"extract": "skipped", "review": "skipped", "pay": "skipped", "archive": "available"}
    assert _skip_reason(plain, "extract") == "when params.audit is true: it is null"
    monkeypatch.setattr(specs, "WIDE", 2)  # a wide run starts with its roots read alone: the same
    wide = store.trigger("acme", "invoices", {"audit": False}, actor="ann", now=LEAP_DAY)
    assert states(wide) == {"extract": "skipped", "review": "skipped", "pay": "skipped", "archive": "available"}
    assert _skip_reason(wide, "extract") == "when params.audit is true: it is false"
