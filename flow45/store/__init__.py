"""Every write to the store, one transaction each, and the reads that go with them."""

from flow45.store.asof import run_as_of
from flow45.store.backfill import backfill
from flow45.store import callbacks as _callbacks, deploy as _deploy, operator as _operator, runs as _runs, undo as _undo
from flow45.store.deploy import find_workflow
from flow45.store.pause import pause, resume
from flow45.store.operator import hand_back, note_run, release, take
from flow45.store.queries import get_instance, get_run, list_events, list_runs, list_workflows, run_instances
from flow45.store.runs import trigger, trigger_run
from flow45.store.sweep import (cancel_timed_out, expire_leases, fail_unclaimed, fire_due_timers, human_alarms,
                                handing_on, offer_queued, release_due_retries, sla_missed)
from flow45.store.undo import plan_undo
from flow45.store.work import apply_message, claim, claim_next, fail, park, progress, skip, submit

# What may free slots of a `max_running` hands them on at once (worker messages do so in flow45.store.work).
cancel_run = handing_on(_runs.cancel_run)
complete_callback = handing_on(_callbacks.complete_callback)
deploy = _deploy.deploy  # a limit changed is in force for every run at once: it offers what a raise lets go
fail_callback = handing_on(_callbacks.fail_callback)
hold = handing_on(_operator.hold)
retry_instance = handing_on(_operator.retry_instance)  # takes back a teardown offered (trigger_rule)
set_output = handing_on(_operator.set_output)
skip_instance = handing_on(_operator.skip_instance)
submit_human = handing_on(_operator.submit_human)
undo = handing_on(_undo.undo)

__all__ = [
    "pause", "resume",
    "backfill",
    "deploy", "find_workflow", "hand_back", "take", "human_alarms", "hold", "release", "retry_instance", "set_output", "skip_instance", "submit_human",
    "get_instance", "get_run", "run_as_of", "run_instances", "list_events", "list_runs", "list_workflows", "cancel_run",
    "trigger",
    "trigger_run",
    "expire_leases", "fire_due_timers", "release_due_retries", "plan_undo", "undo", "claim", "claim_next", "fail", "progress",
    "skip", "submit", "apply_message", "park", "complete_callback", "fail_callback", "sla_missed", "cancel_timed_out",
    "note_run", "fail_unclaimed", "offer_queued",
]
