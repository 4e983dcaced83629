"""The bridge end to end: operators and workers over RabbitMQ, the store in PostgreSQL."""

from __future__ import annotations

import json
import time
import uuid

import pika
import pytest

from bridge.rpc import BridgeRefused, call
from flow45 import store
from flow45.config import load_config
from tests.bridge.broker_helpers import publish_raw, wait_offer
from tests.bridge.conftest import waiting
from tests.conftest import EXAMPLES, ROOT

pytestmark = pytest.mark.integration


def test_operator_deploys_triggers_and_worker_completes(bridge_env):
    ops = bridge_env.url("reports-ops")
    files = {p.name: p.read_text() for p in EXAMPLES.glob("*.yaml")}
    deployed = call(ops, "reports", {"type": "deploy", "files": files})
    assert {w["change"] for w in deployed["workflows"]} == {"created"}
    run = call(ops, "reports", {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-10"}})["run"]

    worker = bridge_env.url("reports-worker")
    offer = wait_offer(bridge_env, "reports", "extract_sales")
    assert offer["run"] == run and offer["params"] == {"month": "2026-10"}
    grant = call(worker, "reports", {"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w1"})
    assert grant["state"] == "running" and grant["lease_expires_at"]
    call(worker, "reports", {"type": "progress", "instance": offer["instance"], "token": offer["token"], "percent": 50})
    call(worker, "reports", {"type": "submit", "instance": offer["instance"], "token": offer["token"],
                             "output": {"uri": "s3://sales.parquet", "rows": 10}})
    render = wait_offer(bridge_env, "reports", "render_pdf")
    assert render["inputs"] == {"sales": {"uri": "s3://sales.parquet", "rows": 10}}
    status = call(ops, "reports", {"type": "status", "run": run})
    assert [(i["task"], i["state"]) for i in status["instances"]][:2] == [("extract", "succeeded"), ("render", "available")]


def test_once_a_deploy_is_answered_its_functions_queues_are_there_to_consume(bridge_env):
    ops = bridge_env.url("reports-ops")
    for n in range(3):  # each deploy adds a function; the bridge declared the last one less than a second ago
        config = EXAMPLES / "reports.yaml"
        extra = f"\n  extra_{n}:\n    tasks:\n      only: {{function: new_function_{n}, output: Document}}\n"
        text = config.read_text() + extra
        call(ops, "reports", {"type": "deploy", "files": {config.name: text}})
        channel = bridge_env.channel()
        try:  # a worker starting at once consumes it: a queue not declared yet would close the channel (404)
            channel.queue_declare(f"flow45.tasks.reports.new_function_{n}", passive=True)
        finally:
            channel.connection.close()


def test_a_dry_run_deploy_through_the_broker_answers_what_it_would_do_and_keeps_nothing(bridge_env):
    ops = bridge_env.url("reports-ops")
    config = EXAMPLES / "reports.yaml"
    call(ops, "reports", {"type": "deploy", "files": {config.name: config.read_text()}})
    changed = config.read_text().replace("max_active_runs: 2", "max_active_runs: 4") + (
        "\n  extra:\n    tasks:\n      only: {function: dry_function, output: Document}\n")
    events = len(store.list_events(0, limit=1000))
    answer = call(ops, "reports", {"type": "deploy", "files": {config.name: changed}, "dry_run": True})
    assert answer["dry_run"] is True
    assert {(w["workflow"], w["version"], w["change"]): w["changes"] for w in answer["workflows"]} == {
        ("extra", 1, "created"): [], ("monthly_report", 2, "updated"): ["max_active_runs: 2 -> 4"],
        ("nightly_sales", 1, "unchanged"): []}
    assert [w.version for w in store.list_workflows("reports")] == [1, 1]  # nothing kept
    assert len(store.list_events(0, limit=1000)) == events
    channel = bridge_env.channel()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="NOT_FOUND"):  # no queue for what is not deployed
        channel.queue_declare("flow45.tasks.reports.dry_function", passive=True)
    channel.connection.close()


def test_a_deploy_after_a_dry_run_of_other_content_runs_its_own_version(bridge_env):
    ops = bridge_env.url("reports-ops")
    config = EXAMPLES / "reports.yaml"
    call(ops, "reports", {"type": "deploy", "files": {config.name: config.read_text()}})
    tried = config.read_text().replace("max_active_runs: 2", "max_active_runs: 4")
    call(ops, "reports", {"type": "deploy", "files": {config.name: tried}, "dry_run": True})
    reviewed = config.read_text().replace("max_active_runs: 2", "max_active_runs: 3")  # changed after the review
    call(ops, "reports", {"type": "deploy", "files": {config.name: reviewed}})
    run = call(ops, "reports", {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-12"}})["run"]
    assert store.get_run(run).version == 2


def test_an_urgent_runs_offer_goes_ahead_of_those_waiting_in_the_queue(bridge_env):
    ops = bridge_env.url("reports-ops")
    config = (EXAMPLES / "reports.yaml").read_text().replace("max_active_runs: 2", "max_active_runs: 8")
    call(ops, "reports", {"type": "deploy", "files": {"reports.yaml": config}})
    waiting = [call(ops, "reports", {"type": "trigger", "workflow": "monthly_report", "params": {"month": f"2026-0{n}"}})
               ["run"] for n in range(1, 4)]
    urgent = call(ops, "reports", {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-09"},
                                   "priority": 9})["run"]
    channel = bridge_env.channel("reports-worker")
    deadline = time.monotonic() + 15
    while channel.queue_declare("flow45.tasks.reports.extract_sales", passive=True).method.message_count < 4:
        assert time.monotonic() < deadline, "the four offers did not all arrive"
        time.sleep(0.02)
    taken = []
    for _ in range(4):
        _method, props, body = channel.basic_get("flow45.tasks.reports.extract_sales", auto_ack=True)
        taken.append((json.loads(body)["run"], props.priority, json.loads(body)["priority"]))
    channel.connection.close()
    assert taken == [(urgent, 9, 9)] + [(run, 0, 0) for run in waiting]
    with pytest.raises(BridgeRefused, match="priority"):
        call(ops, "reports", {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-10"},
                              "priority": 10})


def test_a_trigger_answers_whether_its_key_named_a_run_already_and_refuses_a_key_no_log_can_hold(bridge_env):
    ops = bridge_env.url("reports-ops")
    call(ops, "reports", {"type": "deploy", "files": {"reports.yaml": (EXAMPLES / "reports.yaml").read_text()}})
    trigger = {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-10"}, "key": "oct"}
    first = call(ops, "reports", trigger)
    assert call(ops, "reports", trigger) == {**first, "existing": True} and first["existing"] is False
    with pytest.raises(BridgeRefused, match="key"):
        call(ops, "reports", {**trigger, "key": "oct\r\nX-Injected: 1"})


def test_a_submit_naming_the_workers_functions_gets_the_next_attempt_in_its_answer(bridge_env):
    ops = bridge_env.url("reports-ops")
    call(ops, "reports", {"type": "deploy", "files": {p.name: p.read_text() for p in EXAMPLES.glob("*.yaml")}})
    run = call(ops, "reports", {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-11"}})["run"]
    worker = bridge_env.url("reports-worker")
    offer = wait_offer(bridge_env, "reports", "extract_sales")
    call(worker, "reports", {"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w1"})
    submitted = call(worker, "reports", {"type": "submit", "instance": offer["instance"], "token": offer["token"],
                                         "output": {"uri": "s3://sales.parquet", "rows": 10},
                                         "next": ["extract_sales", "render_pdf"]})
    granted = submitted["next"]
    assert (granted["run"], granted["task"], granted["function"]) == (run, "render", "render_pdf")
    assert granted["inputs"] == {"sales": {"uri": "s3://sales.parquet", "rows": 10}} and granted["lease_expires_at"]
    done = call(worker, "reports", {"type": "submit", "instance": granted["instance"], "token": granted["token"],
                                    "output": {"uri": "s3://report.pdf", "pages": 2}, "next": ["render_pdf"]})
    assert done["state"] == "succeeded" and done["next"] is None  # approve is a human task: never handed out
    channel = bridge_env.channel("reports-worker")
    assert channel.queue_declare("flow45.tasks.reports.render_pdf", passive=True).method.message_count == 0
    channel.connection.close()
    view = store.get_run(run)
    assert {i.task: (i.state, i.worker) for i in view.instances}["render"] == ("succeeded", "w1")


def _dead_letters(env, queue: str = "flow45.dead") -> list[tuple[dict, bytes]]:
    channel = env.channel()
    found = []
    while True:
        method, props, body = channel.basic_get(queue, auto_ack=True)
        if method is None:
            break
        found.append((props.headers or {}, body))
    channel.connection.close()
    return found


def test_bad_messages_are_answered_and_dead_lettered(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    run = store.trigger("reports", "monthly_report", actor="ops")
    offer = wait_offer(bridge_env, "reports", "extract_sales")
    claim = {"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w"}
    call(bridge_env.url("reports-worker"), "reports", claim)
    submit = {"type": "submit", "instance": offer["instance"], "token": offer["token"]}
    cases = [
        ("reports-worker", b"{not json", "not JSON"),
        ("reports-worker", b"\xff\xfe", "not UTF-8"),
        ("reports-worker", json.dumps({"type": "claim", "instance": "x"}).encode(), "instance"),
        ("reports-worker", json.dumps({"type": "deploy", "files": {"a.yaml": "team: reports"}}).encode(), "is an operator message"),
        ("reports-worker", json.dumps({**claim, "instance": 999999}).encode(), "not found"),
        ("reports-worker", json.dumps({**submit, "token": "old", "output": {}}).encode(), "not the current attempt"),
        ("reports-worker", json.dumps({**submit, "output": {"uri": "x" * 20000, "rows": 1}}).encode(), "over the cap"),
        ("reports-worker", json.dumps({**submit, "output": {"uri": "Bearer abcdefghijklmnopqrstuvwxyz", "rows": 1}}).encode(), "bearer token"),
        ("reports-worker", json.dumps({**submit, "output": {"uri": "x", "rows": 1, "extra": 1}}).encode(), "unknown field"),
        ("rival-worker", json.dumps(claim).encode(), "not found for team rival"),
    ]
    for user, body, words in cases:
        exchange = f"flow45.in.{user.split('-')[0]}"
        reply = publish_raw(bridge_env, user, exchange, body, message_id=uuid.uuid4().hex, user_id=user)
        assert not reply["ok"] and words in reply["error"], (body[:60], reply)
    no_user = publish_raw(bridge_env, "reports-worker", "flow45.in.reports", json.dumps(claim).encode(), user_id=None)
    assert no_user["code"] == "unauthorized" and "no user_id" in no_user["error"]
    time.sleep(0.5)
    reports, rival, unknown = (_dead_letters(bridge_env, q) for q in ("flow45.dead.reports", "flow45.dead.rival", "flow45.dead"))
    # Each team's refusals in its own queue; one without a user_id is the team's whose exchange it came through.
    assert (len(reports), len(rival), len(unknown)) == (len(cases), 1, 0)
    assert all(headers.get("x-flow45-error") for headers, _ in reports + rival)
    assert not any(b"abcdefghijklmnopqrstuvwxyz" in body for _, body in reports), "the bearer token is redacted"
    assert store.get_run(run).instances[0].state == "running", "nothing bad changed the store"
    # ... and the bridge is still serving.
    done = call(bridge_env.url("reports-worker"), "reports", {**submit, "output": {"uri": "s3://ok", "rows": 1}})
    assert done["state"] == "succeeded"


def test_a_redelivered_message_takes_effect_once(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    store.trigger("reports", "monthly_report", actor="ops")
    offer = wait_offer(bridge_env, "reports", "extract_sales")
    claim = json.dumps({"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w"}).encode()
    first = publish_raw(bridge_env, "reports-worker", "flow45.in.reports", claim, message_id="same", user_id="reports-worker")
    again = publish_raw(bridge_env, "reports-worker", "flow45.in.reports", claim, message_id="same", user_id="reports-worker")
    assert first["ok"] and again["ok"] and again["result"]["duplicate"] and not first["result"]["duplicate"]


def test_team_b_is_refused_by_the_broker(bridge_env):
    store.deploy(load_config(EXAMPLES), actor="ops")
    channel = bridge_env.channel("rival-worker")
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
        channel.basic_get("flow45.tasks.reports.extract_sales", auto_ack=True)
    channel = bridge_env.channel("rival-worker")
    channel.confirm_delivery()
    with pytest.raises(pika.exceptions.ChannelClosedByBroker, match="ACCESS_REFUSED"):
        channel.basic_publish("flow45.in.reports", "claim", b"{}", pika.BasicProperties(user_id="rival-worker"))


def test_deploy_of_another_team_is_refused(bridge_env):
    with pytest.raises(BridgeRefused, match="may deploy only team reports"):
        call(bridge_env.url("reports-ops"), "reports", {"type": "deploy", "files": {"x.yaml": "team: rival\n"}})


def test_a_deploy_refused_against_what_is_deployed_names_the_files_as_sent(bridge_env):
    """As a refusal of the files alone does: not by the bridge's own folder for them, gone by then."""
    ops = bridge_env.url("reports-ops")
    call(ops, "reports", {"type": "deploy", "files": {"reports.yaml": (EXAMPLES / "reports.yaml").read_text()}})
    other = ("team: reports\ntypes: {Blob: {fields: {uri: string}}}\n"
             "workflows:\n  weekly: {tasks: {load: {function: extract_sales, output: Blob}}}\n")
    with pytest.raises(BridgeRefused) as refused:
        call(ops, "reports", {"type": "deploy", "files": {"weekly.yaml": other}})
    assert refused.value.message.splitlines()[1].startswith(
        "  weekly.yaml: workflows.weekly.tasks.load: function 'extract_sales' is () -> Blob here")
    assert "flow45-deploy-" not in refused.value.message


def test_a_deploy_whose_aliases_expand_to_a_billion_values_is_refused_and_the_bridge_goes_on(bridge_env):
    """Under a kilobyte of YAML; expanded, it would hold the bridge every team shares for minutes."""
    bomb = (ROOT / "tests" / "configs" / "bad" / "aliases_expanding_to_a_billion_values.yaml").read_text()
    started = time.monotonic()
    with pytest.raises(BridgeRefused, match=r"bomb.yaml: its aliases expand to more than 1,000,000 values"):
        call(bridge_env.url("reports-ops"), "reports", {"type": "deploy", "files": {"bomb.yaml": bomb}})
    assert time.monotonic() - started < 10
    files = {"reports.yaml": (EXAMPLES / "reports.yaml").read_text()}
    assert call(bridge_env.url("reports-ops"), "reports", {"type": "deploy", "files": files})["workflows"]


def test_a_bridge_stopped_while_it_starts_stops(bridge_env, monkeypatch):
    """A stop that comes while the bridge declares its queues, before it has a broker connection to
    close (a supervisor's SIGTERM moments after the start): the bridge stops all the same."""
    import threading

    from bridge import service

    bridge = service.Bridge(bridge_env.settings, batch_size=50)
    declare = service.declare_with_new_connection

    def stopped_meanwhile(url, settings):
        bridge.stop()
        return declare(url, settings)

    monkeypatch.setattr(service, "declare_with_new_connection", stopped_meanwhile)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the bridge went on after its stop"
    assert bridge.stopped.is_set() and not bridge.consuming


def test_a_bridge_stopped_while_its_broker_connection_opens_stops_without_a_warning(bridge_env, monkeypatch, caplog):
    """A stop closes the broker connection at once, and this one was still opening: that is the stop,
    not a broker to warn a supervisor about."""
    import threading

    from bridge import service

    bridge = service.Bridge(bridge_env.settings, batch_size=50)
    listen = bridge.relay.listen

    def stopped_meanwhile(*args):  # the last step before the connection's IO loop starts
        listen(*args)
        bridge.stop()

    monkeypatch.setattr(bridge.relay, "listen", stopped_meanwhile)
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the bridge went on after its stop"
    assert bridge.stopped.is_set() and not bridge.consuming
    assert [r.getMessage() for r in caplog.records if r.levelname == "WARNING"] == []


def test_a_bridge_stopped_in_the_middle_of_its_broker_handshake_closes_once_open_and_returns(bridge_env, monkeypatch):
    """Closed while the broker and pika were still shaking hands, the connection's IO loop died on an
    assertion of pika's, and the bridge's thread with a traceback; it closes once the connection is open."""
    import threading

    import pika.connection

    from bridge import service

    bridge = service.Bridge(bridge_env.settings, batch_size=50)
    start = pika.connection.Connection._on_connection_start

    def stopped_in_the_handshake(connection, frame):  # the broker's Connection.Start: the handshake has begun
        if connection is bridge._connection:
            bridge.stop()
        return start(connection, frame)

    monkeypatch.setattr(pika.connection.Connection, "_on_connection_start", stopped_in_the_handshake)
    raised = []

    def run() -> None:
        try:
            bridge.run()
        except BaseException as exc:  # noqa: BLE001 (what ended the thread is the finding)
            raised.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(timeout=15)
    assert not thread.is_alive(), "the bridge went on after its stop"
    assert raised == [] and bridge.stopped.is_set() and not bridge.consuming


def test_a_stop_with_a_batch_in_hand_commits_answers_and_acks_it_before_the_bridge_closes(bridge_env, monkeypatch):
    """What a stop promises, however soon it closes: the batch a committer holds is committed, its
    sender answered, and its delivery acked, so the broker does not deliver it again."""
    import threading

    from bridge import commits
    from flow45 import names

    ops = bridge_env.url("reports-ops")
    call(ops, "reports", {"type": "deploy", "files": {"reports.yaml": (EXAMPLES / "reports.yaml").read_text()}})
    call(ops, "reports", {"type": "trigger", "workflow": "monthly_report", "params": {"month": "2026-10"}})
    offer = wait_offer(bridge_env, "reports", "extract_sales")
    applying, go_on = threading.Event(), threading.Event()
    apply = commits.apply_parsed

    def held(*args):
        applying.set()
        go_on.wait(30)
        return apply(*args)

    monkeypatch.setattr(commits, "apply_parsed", held)
    answers: list = []
    claim = {"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w1"}
    claimer = threading.Thread(target=lambda: answers.append(call(bridge_env.url("reports-worker"), "reports", claim)))
    claimer.start()
    assert applying.wait(30), "the claim never reached a committer"
    bridge_env.bridge.stop()
    go_on.set()
    bridge_env.thread.join(30)
    claimer.join(30)
    assert not bridge_env.thread.is_alive() and answers and answers[0]["state"] == "running"
    assert store.get_instance(offer["instance"]).state == "running"
    assert waiting(bridge_env, names.inbox_queue("reports")) == 0, "the claim was not acked: it comes again"


def test_an_idle_bridge_and_its_side_parts_stop_at_once_whatever_their_waits_and_graces(
        broker_users, postgres_url, pg_store, monkeypatch):
    """A stop (a supervisor's SIGTERM) with nothing in hand ends the bridge and its side parts at once:
    their waits for the broker are woken, and the graces a stop gives batches and confirms only bound
    it. Each is a minute here: before, run() returned after half a second and left the reads and the
    event stream waiting out their minute."""
    import threading

    from bridge import reads, service
    from bridge.events import EventPublisher
    from flow45.settings import Settings, use_settings
    from tests.bridge.conftest import TEAMS, purge_all

    monkeypatch.setattr(service, "STOP_GRACE", 60.0)
    monkeypatch.setattr(service, "CONFIRMS_GRACE", 60.0)
    monkeypatch.setattr(reads, "IDLE_WAIT", 60.0)
    purge_all(broker_users)
    settings = Settings(database_url=postgres_url, amqp_url=broker_users.amqp_url, teams=TEAMS)
    use_settings(settings)
    bridge = service.Bridge(settings, batch_size=50)
    bridge.events = EventPublisher(settings, interval=60.0, standby_interval=60.0)
    before = set(threading.enumerate())
    thread = threading.Thread(target=bridge.run, daemon=True)
    thread.start()
    assert bridge.started.wait(30) and bridge.reads.ready.wait(30) and bridge.events.ready.wait(30)
    sides = [t for t in threading.enumerate() if t not in before and t.name.startswith("flow45-bridge-")]
    assert sorted(t.name for t in sides if not t.name.startswith("flow45-bridge-commit")) == [
        "flow45-bridge-events", "flow45-bridge-reads"]
    bridge.stop()
    deadline = time.monotonic() + 30  # far under the minute, far over a loaded machine's stop
    for each in [thread, *sides]:
        each.join(timeout=max(0.0, deadline - time.monotonic()))
    assert not [t.name for t in [thread, *sides] if t.is_alive()]
    assert bridge.stopped.is_set()


def test_a_team_deploying_in_a_loop_has_the_topology_declared_once_a_second_at_most(bridge_env, monkeypatch):
    """Declaring the queues holds the bridge's IO loop for every team (a quarter second at 50 teams
    of 10 functions): a deploy has them declared at once, but not again within TOPOLOGY_GAP."""
    from bridge import service

    declared: list[float] = []
    declare = service.declare_with_new_connection

    def counted(url, settings):
        declared.append(time.monotonic())
        return declare(url, settings)

    monkeypatch.setattr(service, "declare_with_new_connection", counted)
    files = {"reports.yaml": (EXAMPLES / "reports.yaml").read_text()}
    for _ in range(8):
        call(bridge_env.url("reports-ops"), "reports", {"type": "deploy", "files": files})
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and (not declared or bridge_env.bridge._needs_topology):
        time.sleep(0.05)  # the last deploy's declaration, at a relay tick
    gaps = [later - earlier for earlier, later in zip(declared, declared[1:])]
    assert declared and not bridge_env.bridge._needs_topology
    assert all(gap >= service.TOPOLOGY_GAP * 0.99 for gap in gaps), gaps


def test_a_deploy_with_the_database_declares_the_queues_when_the_broker_is_configured_too(bridge_env, tmp_path, capsys):
    from flow45.cli import main

    config = tmp_path / "reports.yaml"
    config.write_text((EXAMPLES / "reports.yaml").read_text()
                      + "\n  extra:\n    tasks:\n      only: {function: brand_new_function, output: Document}\n")
    assert main(["--as", "admin", "deploy", str(config)]) == 0
    assert capsys.readouterr().err == ""
    channel = bridge_env.channel()
    try:  # no offer yet, nor a deploy through the bridge: the command line declared it
        channel.queue_declare("flow45.tasks.reports.brand_new_function", passive=True)
    finally:
        channel.connection.close()


LIMITED = """
team: reports
types: {Blob: {fields: {uri: string}}}
workflows:
  calls:
    max_active_runs: null
    tasks:
      call: {function: call_crm, output: Blob, max_running: 1}
"""


def test_a_submit_hands_its_slot_to_the_next_queued_instance_with_no_scheduler_running(bridge_env):
    ops, worker = bridge_env.url("reports-ops"), bridge_env.url("reports-worker")
    call(ops, "reports", {"type": "deploy", "files": {"calls.yaml": LIMITED}})
    runs = [call(ops, "reports", {"type": "trigger", "workflow": "calls"})["run"] for _ in range(3)]
    assert [i.state for run in runs for i in store.get_run(run).instances] == ["available", "queued", "queued"]
    done = []
    for _ in runs:  # one at a time: each offer comes only once the one before is submitted
        offer = wait_offer(bridge_env, "reports", "call_crm", timeout=10)
        assert sum(i.state in ("available", "running") for run in runs for i in store.get_run(run).instances) == 1
        claim = {"type": "claim", "instance": offer["instance"], "token": offer["token"], "worker": "w"}
        call(worker, "reports", claim)
        call(worker, "reports", {"type": "submit", "instance": offer["instance"], "token": offer["token"],
                                 "output": {"uri": f"s3://crm/{offer['run']}"}})
        done.append(offer["run"])
    assert done == runs  # oldest first
    assert all(store.get_run(run).status == "succeeded" for run in runs)
