"""What a ledger event means to a person: which notify events it is, and a line of text saying so."""

from __future__ import annotations

from flow45 import states as S
from flow45.views import EventView

ERROR_SHOWN = 300  # characters of a worker's error in the line: the ledger keeps it whole


def notify_kinds(e: EventView) -> list[str]:
    """The `notify` event names this ledger event is (none for most)."""
    detail = e.detail if isinstance(e.detail, dict) else {}
    if e.instance is None:
        if e.kind == "sla_missed":
            return ["sla_missed"]
        if e.kind == "cancel" and detail.get("timeout"):
            return ["run_timed_out"]
        return ["run_failed"] if e.run is not None and e.to_state == S.FAILED else []
    if e.to_state == S.FAILED and e.kind in ("fail", "expire", "overdue"):
        found = ["retries_exhausted"] + (["unclaimed"] if detail.get("unclaimed") else [])
    elif e.to_state == S.AVAILABLE and detail.get("human"):
        found = ["human_waiting"]
    elif e.kind == "remind":
        found = ["due_soon"]
    elif e.kind == "take" and detail.get("taken_by") not in (None, e.actor):
        found = ["assigned"]
    else:
        found = []
    if e.kind == "overdue":
        found += ["overdue"] + (["escalated"] if detail.get("outcome") == "escalate" else [])
    return found


def text(e: EventView, kinds: list[str]) -> str:
    """One line for a chat channel."""
    detail = e.detail if isinstance(e.detail, dict) else {}
    where = f"task instance {e.instance} of run {e.run}" if e.instance else f"run {e.run}"
    if "sla_missed" in kinds:
        said = f"run {e.run} ({detail.get('workflow', '?')}) is slower than its SLA of {detail.get('sla', '?')}"
    elif "run_timed_out" in kinds:
        said = f"run {e.run} was cancelled: running longer than its workflow's timeout of {detail.get('timeout')}"
    elif "run_failed" in kinds:
        said = f"run {e.run} failed"
    elif "unclaimed" in kinds:
        said = f"{where} failed: {detail.get('error')}"
    elif "retries_exhausted" in kinds:
        error = str(detail.get("error") or detail.get("reason") or "")
        if len(error) > ERROR_SHOWN:
            error = error[:ERROR_SHOWN] + "…"
        said = f"{where} failed with no retries left" + (f": {error}" if error else "")
    elif "escalated" in kinds:
        said = f"{where} is overdue and escalated to {detail.get('to', '?')}"
    elif "overdue" in kinds:
        said = f"{where} is overdue ({detail.get('outcome', 'none')})"
    elif "assigned" in kinds:
        said = f"{where} was given to {detail.get('taken_by')} by {e.actor}" + (
            f", over from {detail['from']}" if detail.get("from") else "")
    elif "due_soon" in kinds:
        due = detail.get("due")
        said = f"{where} still waits for {detail.get('to', 'a decision')}" + (f", due {due}" if due else "")
    else:
        said = f"{where} waits for a decision"
    return f"[{e.team}] {said} (event {e.id})"


def slack_escaped(line: str) -> str:
    """The line as Slack shows it literally: its text may hold a worker's error, and `<!channel>` or
    `<https://…|a link>` in there would ping a whole channel or dress up a link. Slack reads only
    these three characters as markup."""
    return line.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
