"""setup-broker's permission regexes: each team's operators read their own dead letters, nobody else's."""

from __future__ import annotations

import json
import re

from bridge.setup_broker import plan
from flow45.settings import Settings

TEAMS = {
    "reports": {"users": {"reports-worker": "worker", "reports-ops": "operator"}},
    "reports2": {"users": {"r2-ops": "operator"}},
}


def _read_regex(user: str) -> str:
    commands, _ = plan(Settings(amqp_url="amqp://bridge:pw@localhost/flow45", teams=TEAMS), {})
    [read] = [c[-1] for c in commands if c[0] == "set_permissions" and c[3] == user]
    return read


def test_operators_read_their_teams_dead_letters_and_offers_only():
    read = _read_regex("reports-ops")
    assert re.search(read, "flow45.dead.reports") and re.search(read, "flow45.tasks.reports.render_pdf")
    for other in ("flow45.dead.reports2", "flow45.dead", "flow45.dead.rival", "flow45.tasks.reports2.x", "flow45.inbox"):
        assert not re.search(read, other), other


def test_workers_do_not_read_dead_letters():
    read = _read_regex("reports-worker")
    assert re.search(read, "flow45.tasks.reports.render_pdf")
    assert not re.search(read, "flow45.dead.reports")


def test_the_length_policy_covers_every_dead_letter_queue():
    commands, _ = plan(Settings(amqp_url="amqp://bridge:pw@localhost/flow45", teams=TEAMS), {})
    [policy] = [c for c in commands if c[0] == "set_policy" and "flow45-dead" in c]
    pattern = policy[policy.index("flow45-dead") + 1]
    assert all(re.search(pattern, q) for q in ("flow45.dead", "flow45.dead.reports"))
    assert not re.search(pattern, "flow45.inbox")
    assert json.loads(policy[-1]) == {"max-length": 1_000_000, "max-length-bytes": 2**30, "overflow": "drop-head"}


def test_the_inbox_policy_caps_each_teams_inbox_alone():
    settings = Settings(amqp_url="amqp://bridge:pw@localhost/flow45", teams=TEAMS, inbox_max_messages=500,
                        inbox_max_bytes=2**21)
    [policy] = [c for c in plan(settings, {})[0] if c[0] == "set_policy" and "flow45-inbox" in c]
    pattern = policy[policy.index("flow45-inbox") + 1]
    assert all(re.search(pattern, q) for q in ("flow45.inbox.reports", "flow45.inbox.reports2"))
    others = ("flow45.inbox", "flow45.dead.reports", "flow45.reads", "xflow45.inbox.a")
    assert not any(re.search(pattern, q) for q in others)
    assert json.loads(policy[-1]) == {"max-length": 500, "max-length-bytes": 2**21, "overflow": "reject-publish"}


def test_operators_alone_may_send_reads():
    commands, _ = plan(Settings(amqp_url="amqp://bridge:pw@localhost/flow45", teams=TEAMS), {})
    write = {c[3]: c[-2] for c in commands if c[0] == "set_permissions"}
    assert all(re.search(write["reports-ops"], x) for x in ("flow45.read", "flow45.read.reports", "flow45.in.reports"))
    assert not any(re.search(write["reports-worker"], x) for x in ("flow45.read", "flow45.read.reports"))
    for other in ("flow45.in.reports2", "flow45.read.reports2", "flow45.read.rival", "flow45.reads", "flow45.readx",
                  "flow45.reads.reports", "flow45.tasks"):
        assert not re.search(write["reports-ops"], other), other


def test_operators_follow_their_own_teams_event_stream_only():
    commands, _ = plan(Settings(amqp_url="amqp://bridge:pw@localhost/flow45", teams=TEAMS), {})
    topics = {c[3]: c[4:] for c in commands if c[0] == "set_topic_permissions"}
    assert set(topics) == {"reports-ops", "r2-ops"}  # operators only
    exchange, write, read = topics["reports-ops"]
    assert exchange == "flow45.events" and re.search(read, "reports")
    assert not any(re.search(read, key) for key in ("reports2", "rival", "#", "*", "reports.x"))
    assert not re.search(write, "reports")  # nobody but the bridge publishes events
    configure = {c[3]: c[-3] for c in commands if c[0] == "set_permissions"}
    assert re.search(configure["reports-ops"], "amq.gen-Xy1") and not re.search(configure["reports-ops"], "flow45.x")
    assert configure["reports-worker"] == "^$"


def test_each_teams_waiting_reads_are_capped_apart():
    commands, _ = plan(Settings(amqp_url="amqp://bridge:pw@localhost/flow45", teams=TEAMS), {})
    [policy] = [c for c in commands if c[0] == "set_policy" and "flow45-reads" in c]
    pattern = policy[policy.index("flow45-reads") + 1]
    assert all(re.search(pattern, q) for q in ("flow45.reads.reports", "flow45.reads"))
    assert not any(re.search(pattern, q) for q in ("flow45.readsx", "flow45.read", "flow45.inbox.reports"))
    assert json.loads(policy[-1]) == {"max-length": 1000, "overflow": "reject-publish"}
