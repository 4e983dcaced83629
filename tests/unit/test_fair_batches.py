"""The bridge forms its batches from the teams in turn, and a team's backlog in the bridge goes in
batches of its own: another team's message neither waits behind it nor rides in a batch with it."""

from __future__ import annotations

from bridge.commits import Batcher, Waiting
from bridge.inbound import Delivery, Inbound
from flow45 import messages as m


class _Pool:
    size = 1

    def __init__(self) -> None:
        self.jobs = []

    def submit(self, job) -> None:
        self.jobs.append(job)


def _waiting(tag: int, team: str, run: int) -> Waiting:
    delivery = Delivery(tag=tag, exchange=f"flow45.in.{team}", user_id=f"{team}-worker", message_id=str(tag),
                        reply_to=None, correlation_id=None, body=b"{}")
    progress = m.Progress(type="progress", instance=run * 10, token="t", percent=1)
    return Waiting(delivery, Inbound(team, f"{team}-worker", "worker", str(tag), progress), ("run", run), 0.0)


def _batcher(batch_size: int) -> tuple[Batcher, _Pool]:
    batcher = Batcher(batch_size, list, lambda _ids: None, lambda _job: None)
    batcher.pool, batcher._ioloop = _Pool(), object()
    return batcher, batcher.pool


def test_a_message_of_another_team_goes_in_a_batch_of_its_own_ahead_of_the_backlog():
    """Applied in one batch with a team's backlog, the message would wait for all of it to apply."""
    batcher, pool = _batcher(batch_size=10)
    batcher.waiting = [_waiting(tag, "rival", run=tag) for tag in range(1, 101)] + [_waiting(101, "reports", run=500)]
    batcher.dispatch()
    [job] = pool.jobs
    assert [w.delivery.tag for w in job.waiting] == [101]
    assert [w.delivery.tag for w in batcher.waiting] == list(range(1, 101))  # the backlog keeps its order


def test_teams_without_a_backlog_share_a_batch_and_the_backlog_goes_with_the_next():
    batcher, pool = _batcher(batch_size=10)
    pool.size = 2
    batcher.waiting = ([_waiting(tag, "rival", run=tag) for tag in range(1, 101)]
                       + [_waiting(101, "reports", run=500), _waiting(102, "third", run=600),
                          _waiting(103, "reports", run=501)])
    batcher.dispatch()
    first, second = pool.jobs
    assert [w.delivery.tag for w in first.waiting] == [101, 102, 103]
    assert [w.delivery.tag for w in second.waiting] == list(range(1, 11))  # the backlog's oldest, a full batch
    assert [w.delivery.tag for w in batcher.waiting] == list(range(11, 101))


def test_a_team_alone_with_a_backlog_fills_its_batches():
    batcher, pool = _batcher(batch_size=10)
    batcher.waiting = [_waiting(tag, "rival", run=tag) for tag in range(1, 101)]
    batcher.dispatch()
    [job] = pool.jobs
    assert [w.delivery.tag for w in job.waiting] == list(range(1, 11))


def test_two_teams_with_backlogs_share_a_batch_in_turn():
    batcher, pool = _batcher(batch_size=10)
    batcher.waiting = ([_waiting(tag, "rival", run=tag) for tag in range(1, 51)]
                       + [_waiting(tag, "reports", run=tag) for tag in range(51, 101)])
    batcher.dispatch()
    [job] = pool.jobs
    assert [w.delivery.tag for w in job.waiting] == list(range(1, 6)) + list(range(51, 56))


def test_teams_share_a_batch_in_turn_and_runs_held_by_a_batch_in_flight_wait():
    batcher, pool = _batcher(batch_size=4)
    batcher.lanes.take({("run", 2)})  # a batch in flight holds rival's run 2
    batcher.waiting = [_waiting(1, "rival", 1), _waiting(2, "rival", 2), _waiting(3, "rival", 3),
                       _waiting(4, "rival", 4), _waiting(5, "reports", 5), _waiting(6, "reports", 6),
                       _waiting(7, "third", 7)]
    batcher.dispatch()
    [job] = pool.jobs
    assert [w.delivery.tag for w in job.waiting] == [1, 3, 5, 7]
    assert [w.delivery.tag for w in batcher.waiting] == [2, 4, 6]


def _operator(tag: int, team: str) -> Waiting:
    delivery = Delivery(tag=tag, exchange=f"flow45.in.{team}", user_id=f"{team}-ops", message_id=str(tag),
                        reply_to=None, correlation_id=None, body=b"{}")
    inbound = Inbound(team, f"{team}-ops", "operator", str(tag), m.Trigger(type="trigger", workflow="wide"))
    return Waiting(delivery, inbound, Batcher(1, list, print, print).lanes.of(inbound), 0.0)


def test_operator_messages_go_alone_one_at_a_time_for_each_team():
    """Each may be a trigger of thousands of tasks: rival's twenty go one after another, each in a
    batch of its own; reports' goes beside rival's first, on another connection, and so do the
    workers' messages, none waiting for a trigger's answer."""
    batcher, pool = _batcher(batch_size=10)
    pool.size = 4
    batcher.waiting = ([_operator(tag, "rival") for tag in range(1, 21)] + [_operator(21, "reports")]
                       + [_waiting(22, "rival", run=7), _waiting(23, "reports", run=8)])
    batcher.dispatch()
    assert [[w.delivery.tag for w in job.waiting] for job in pool.jobs] == [[1], [21], [22, 23]]
    assert [w.delivery.tag for w in batcher.waiting] == list(range(2, 21))


def test_a_teams_next_operator_message_goes_once_its_last_one_is_answered():
    batcher, pool = _batcher(batch_size=10)
    pool.size = 4
    batcher.waiting = [_operator(1, "rival"), _operator(2, "rival")]
    batcher.dispatch()
    [first] = pool.jobs
    batcher.running -= 1
    batcher.lanes.give_back(first.lanes)  # as the IO loop does once the batch is answered
    batcher.dispatch()
    assert [[w.delivery.tag for w in job.waiting] for job in pool.jobs] == [[1], [2]]


def test_workers_messages_older_than_an_operator_message_go_first():
    """A single connection (SQLite) takes the batches in the order their oldest message came."""
    batcher, pool = _batcher(batch_size=10)
    batcher.waiting = [_waiting(1, "rival", run=7), _operator(2, "reports"), _waiting(3, "rival", run=8)]
    batcher.dispatch()
    [job] = pool.jobs
    assert [w.delivery.tag for w in job.waiting] == [1, 3]
    assert [w.delivery.tag for w in batcher.waiting] == [2]
