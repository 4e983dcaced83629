"""The transition table for task instances and runs. Every state change is checked here."""

from __future__ import annotations

from typing import Collection

from flow45.errors import IllegalTransition

PENDING, AVAILABLE, RUNNING = "pending", "available", "running"
SUCCEEDED, FAILED, SKIPPED = "succeeded", "failed", "skipped"
RETRY_WAIT, HELD, CANCELLED = "retry_wait", "held", "cancelled"
# A timer that is ready waits here until its due time (`not_before`), then succeeds by itself. A state
# of its own, not `retry_wait` or `available` with a due time: those are a worker's (the retry sweep
# and the offers would hand a timer to workers), and hold, undo, cancel and `runs` must tell it apart.
WAITING = "waiting"
# A run waiting for a `max_active_runs` slot; an instance waiting for a slot of its task's `max_running`
# (ready, but not offered: flow45.store.slots), offered by the scheduler's sweep when one frees.
QUEUED = "queued"

INSTANCE_STATES = (PENDING, QUEUED, AVAILABLE, RUNNING, RETRY_WAIT, WAITING, HELD, SUCCEEDED, FAILED, SKIPPED,
                   CANCELLED)
RUN_STATES = (QUEUED, RUNNING, SUCCEEDED, FAILED, CANCELLED)

DONE = frozenset({SUCCEEDED, SKIPPED})  # lets downstream go
TAKING_SLOTS = frozenset({AVAILABLE, RUNNING})  # what counts against a task's max_running (flow45.store.slots)
FINISHED_INSTANCE = frozenset({SUCCEEDED, FAILED, SKIPPED, CANCELLED})
FINISHED_RUN = frozenset({SUCCEEDED, FAILED, CANCELLED})
OPEN_RUN = (QUEUED, RUNNING)  # not finished yet
# An instance that will end by itself (a worker's, a timer's, a retry's or a slot's doing), not pending
# behind its upstream nor held: a run with one of these is not failed yet.
ON_ITS_WAY = frozenset({AVAILABLE, RUNNING, QUEUED, WAITING, RETRY_WAIT})
# Waiting for its upstream (pending) or for an operator's release (held): it never goes on by itself.
HELD_UP = frozenset({PENDING, HELD})

# from -> the states it may move to. `undo` uses the moves back to available/held/pending.
# QUEUED wherever AVAILABLE may be reached: an offer with no free slot waits there instead.
INSTANCE_MOVES: dict[str, frozenset[str]] = {
    PENDING: frozenset({AVAILABLE, QUEUED, WAITING, HELD, SKIPPED, CANCELLED}),
    QUEUED: frozenset({AVAILABLE, HELD, SKIPPED, CANCELLED, PENDING, SUCCEEDED}),
    # succeeded/failed: a human task's overdue outcome (a default output, or fail) when its due passes
    AVAILABLE: frozenset({AVAILABLE, QUEUED, RUNNING, HELD, SKIPPED, CANCELLED, PENDING, SUCCEEDED, FAILED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, RETRY_WAIT, AVAILABLE, QUEUED, SKIPPED, CANCELLED, PENDING, HELD}),
    # succeeded from retry_wait, held and failed: an operator sets the output by hand (set_output)
    RETRY_WAIT: frozenset({AVAILABLE, QUEUED, HELD, SKIPPED, CANCELLED, PENDING, SUCCEEDED}),
    WAITING: frozenset({SUCCEEDED, WAITING, HELD, SKIPPED, CANCELLED, PENDING}),  # WAITING: undo re-arms
    HELD: frozenset({AVAILABLE, QUEUED, WAITING, PENDING, SKIPPED, CANCELLED, HELD, SUCCEEDED}),
    SUCCEEDED: frozenset({AVAILABLE, QUEUED, WAITING, HELD, PENDING}),
    FAILED: frozenset({AVAILABLE, QUEUED, HELD, PENDING, SKIPPED, SUCCEEDED}),
    SKIPPED: frozenset({AVAILABLE, QUEUED, WAITING, HELD, PENDING}),
    CANCELLED: frozenset(),
}

RUN_MOVES: dict[str, frozenset[str]] = {
    QUEUED: frozenset({RUNNING, CANCELLED}),
    RUNNING: frozenset({SUCCEEDED, FAILED, CANCELLED}),
    # queued: an operator's change gives a finished run work again while its workflow's max_active_runs
    # are all running (flow45.store.rules.reopen)
    SUCCEEDED: frozenset({RUNNING, QUEUED}),
    FAILED: frozenset({RUNNING, QUEUED, SUCCEEDED, CANCELLED}),  # succeeded: its failed instance was skipped
    CANCELLED: frozenset(),
}


def check_instance_move(what: str, current: str, target: str) -> None:
    """Raise IllegalTransition unless `current -> target` is in the table."""
    if target not in INSTANCE_MOVES.get(current, ()):
        raise IllegalTransition(f"{what} is {current} and cannot become {target}")


def check_run_move(what: str, current: str, target: str) -> None:
    if target not in RUN_MOVES.get(current, ()):
        raise IllegalTransition(f"{what} is {current} and cannot become {target}")


def run_status_from_not_done(not_done_states: Collection[str], current: str) -> str:
    """What a started run's status must be, given the states of its instances that are not done (a
    run has one instance at least: none left not done means all done). An instance failed for good
    fails the run once nothing else of it is still on its way (as Airflow's run, so that a teardown
    or a branch still running keeps the run's `max_active_runs` slot); a failed run stays failed when
    an operator lets a branch of it go again. Membership tests that stop at the first hit: a wide run's
    settle asks it for each message, with thousands not done."""
    if current in (QUEUED, CANCELLED):
        return current
    if FAILED in not_done_states:
        return FAILED if current == FAILED or ON_ITS_WAY.isdisjoint(not_done_states) else RUNNING
    return RUNNING if not_done_states else SUCCEEDED
