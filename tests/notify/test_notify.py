"""`flow45 notify` as a process: a real HTTP server on loopback receives its posts, across a kill and
a restart of the process, with none lost and none duplicated once the receiver drops repeats by
their idempotency key. And which ledger events are which notify events, and the settings' checks."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from flow45 import store
from flow45.db import connect
from flow45.errors import SettingsError
from flow45.migrate import ensure_schema
from flow45.models import Event, TaskInstance
from flow45.notify.follow import team_state
from flow45.settings import Settings, load_settings, use_settings
from tests import pinned
from tests.harness.ports import free_port
from tests.metrics.helpers import scrape
from tests.store.helpers import T0, claim, deploy_text

CONFIG = """
    team: acme
    types:
      Ok: {fields: {ok: boolean}}
    workflows:
      job:
        sla: 1h
        tasks:
          work: {function: work, output: Ok}
      ask:
        tasks:
          decide: {function: decide, output: Ok, human: true}
"""


class Receiver:
    """A webhook receiver: answers the first post to /a with 500, holds the `hold_at`-th post until
    released, and keeps what it accepted (answered 200)."""

    def __init__(self, hold_at: int):
        self.accepted: list[tuple[str, str, dict]] = []  # (path, idempotency key, body)
        self.requests = 0
        self.hold_at = hold_at
        self.holding, self.release = threading.Event(), threading.Event()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with lock:
                    receiver.requests += 1
                    n = receiver.requests
                if n == 1 and self.path == "/a":
                    self.send_response(500)
                    self.end_headers()
                    return
                if n == receiver.hold_at:
                    receiver.holding.set()
                    receiver.release.wait(30)
                with lock:
                    receiver.accepted.append((self.path, self.headers["Idempotency-Key"], body))
                try:
                    self.send_response(200)
                    self.end_headers()
                except OSError:
                    pass  # the sender was killed meanwhile

            def log_message(self, *args):
                pass

        lock = threading.Lock()
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def ledger(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    use_settings(Settings(database_url=url))
    connect(url, create=True)
    ensure_schema()
    deploy_text(tmp_path, CONFIG)
    for _ in range(3):  # each: the instance fails with no retries left, then the run fails
        run = store.trigger("acme", "job", actor="ann", now=T0)
        grant = claim(run, "work")
        store.fail(grant.instance, grant.token, "disk full", retryable=False, now=T0)
    slow = store.trigger("acme", "job", actor="ann", now=T0)
    ask = store.trigger("acme", "ask", actor="ann", now=T0)
    assert store.sla_missed(now=T0 + dt.timedelta(minutes=59)) == []
    assert store.sla_missed(now=T0 + dt.timedelta(hours=2)) == [slow]
    assert store.sla_missed(now=T0 + dt.timedelta(hours=3)) == [], "once per run"
    decide = TaskInstance.get((TaskInstance.run == ask) & (TaskInstance.task == "decide"))
    runs_failed = [e.id for e in Event.select().where(Event.instance.is_null() & (Event.to_state == "failed"))]
    to_a = sorted(runs_failed + [
        Event.get((Event.instance == decide.id) & (Event.to_state == "available")).id,
        Event.get(Event.kind == "sla_missed").id])
    to_b = sorted(e.id for e in Event.select().where(Event.instance.is_null(False) & (Event.to_state == "failed")))
    return url, {("/a", f"flow45-event-{i}") for i in to_a} | {("/b", f"flow45-event-{i}") for i in to_b}


def _event_ids() -> list[int]:
    return [e.id for e in Event.select(Event.id)]


def _notify(url: str, receiver: Receiver, state, *extra: str) -> subprocess.Popen:
    hooks = {"acme": [{"url": receiver.url + "/a", "events": ["run_failed", "human_waiting", "sla_missed"]},
                      {"url": receiver.url + "/b", "events": ["retries_exhausted"], "format": "event"}]}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(state.parent), "FLOW45_DATABASE_URL": url,
           "FLOW45_NOTIFY": json.dumps(hooks), "FLOW45_NOTIFY_RETRY_DELAY": "0.05", "FLOW45_SWEEP_INTERVAL": "0.1"}
    argv = pinned.command([sys.executable, "-m", "flow45", "notify", "--state", str(state), *extra])
    return subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_posts_survive_a_kill_and_restart_none_lost_none_duplicated_by_key(ledger, tmp_path):
    url, expected = ledger
    receiver = Receiver(hold_at=4)
    state = tmp_path / "notify.json"
    port = free_port()
    first = _notify(url, receiver, state, "--after", "0", "--metrics-port", str(port))  # the whole ledger
    try:
        assert receiver.holding.wait(60), first.stderr.read() if first.poll() is not None else "no 4th post"
        scraped = scrape(port)  # what an operator's dashboard shows while a post hangs
        accepted, answered_500 = len(receiver.accepted), receiver.requests - 1 - len(receiver.accepted)
        assert scraped.value("flow45_notify_posts_total", outcome="sent") == accepted
        assert scraped.value("flow45_notify_posts_total", outcome="retried") == answered_500
        assert scraped.value("flow45_notify_posts_total", outcome="failed") == 0
        assert scraped.value("flow45_notify_lag_seconds", team="acme") > 3600, "its event was written at T0, long ago"
        assert scraped.value("flow45_notify_position", team="acme") < max(_event_ids()), "behind the ledger"
        first.kill()  # while its 4th post waits for an answer: it never learns it was taken
        first.wait(30)
    finally:
        receiver.release.set()
    second = _notify(url, receiver, state, "--once")
    _, err = second.communicate(timeout=60)
    assert second.returncode == 0, err
    keys = [(path, key) for path, key, _ in receiver.accepted]
    assert set(keys) == expected, "every chosen event reached its hook"
    repeated = {k for k in keys if keys.count(k) > 1}
    assert len(keys) == len(expected) + len(repeated) and len(repeated) <= 1, \
        "only the post in flight at the kill may come twice, with the same key"
    slack = [body for path, _, body in receiver.accepted if path == "/a"]
    assert all(set(body) == {"text"} for body in slack)
    assert any(body["text"].startswith("[acme] run ") and " failed (event " in body["text"] for body in slack)
    event_format = [body for path, _, body in receiver.accepted if path == "/b"]
    assert all(b["notify"] == ["retries_exhausted"] and b["event"]["to_state"] == "failed" for b in event_format)
    assert "disk full" in event_format[0]["text"]
    newest = Event.select().order_by(Event.id.desc()).first().id
    assert json.loads(team_state(state, "acme").read_text())["after"] == newest
    again = _notify(url, receiver, state, "--once")
    again.communicate(timeout=60)
    assert len(receiver.accepted) == len(keys), "the saved position: nothing is posted twice on a clean restart"


def test_a_first_start_begins_at_the_ledgers_end_and_keeps_that_place(ledger, tmp_path):
    """A new notifier (no state file, no --after) posts nothing of the history before it, and writes its
    place at once: what happens before its next start is posted then."""
    from flow45.client.local import LocalClient
    from flow45.notify.follow import Notifier
    from flow45.notify.hooks import Webhook

    url, _ = ledger
    receiver = Receiver(hold_at=0)
    state = tmp_path / "new.json"
    newest = Event.select().order_by(Event.id.desc()).first().id
    first = _notify(url, receiver, state, "--once")
    _, err = first.communicate(timeout=60)
    assert first.returncode == 0, err
    assert receiver.accepted == [] and "notify: team acme: 0 post(s)" in err, "none of the history is posted"
    assert json.loads(team_state(state, "acme").read_text())["after"] == newest

    run = store.trigger("acme", "job", actor="ann", now=T0)  # then a run fails
    grant = claim(run, "work")
    store.fail(grant.instance, grant.token, "disk full", retryable=False, now=T0)
    failed = Event.get((Event.run == run) & Event.instance.is_null() & (Event.to_state == "failed"))
    hooks = [Webhook(url=receiver.url + "/a", events=["run_failed"])]
    Notifier(LocalClient("notify"), "acme", hooks, team_state(state, "acme"), retry_delay=0.05).run(once=True)
    assert [key for _, key, _ in receiver.accepted] == [f"flow45-event-{failed.id}"]


@pytest.mark.parametrize("notify, words", [
    ({"acme": [{"url": "ftp://x", "events": ["run_failed"]}]}, "notify.acme.0.url: 'ftp://x' is not an http"),
    ({"acme": [{"url": "http://x/h", "events": ["failed"]}]}, "unknown event 'failed' (choose from run_failed"),
    ({"acme": [{"url": "http://x/h", "events": []}]}, "notify.acme.0.events"),
    ({"zeta": [{"url": "http://x/h", "events": ["run_failed"]}]}, "notify: zeta is not a team of this installation"),
    # URLs that could never be posted (each event tried again for ever, or a traceback): said without the path
    ({"acme": [{"url": "htps://hooks.example/T0/SECRET", "events": ["run_failed"]}]},
     "notify.acme.0.url: 'htps://hooks.example/…' is not an http:// or https:// URL"),
    ({"acme": [{"url": "https://hooks.example/T0/SECRET X", "events": ["run_failed"]}]},
     "'https://hooks.example/…' has a space or a control character: write it percent-encoded"),
    ({"acme": [{"url": "https://hooks.example/T0/SECRÉT", "events": ["run_failed"]}]},
     "'https://hooks.example/…' has a character that is not ASCII after its host"),
    ({"acme": [{"url": "https://bot:SECRET@hooks.example/T0", "events": ["run_failed"]}]},
     "'https://hooks.example/…' names a user or password, which are not sent"),
    ({"acme": [{"url": "https://hooks.example:SECRET/T0", "events": ["run_failed"]}]},
     "'https://hooks.example/…': its port must be a number from 0 to 65535"),
    ({"acme": [{"url": "https://hooks..example/T0/SECRET", "events": ["run_failed"]}]},
     "'https://hooks..example/…': its host is not a host name"),
])
def test_bad_notify_settings_are_refused_naming_the_place(notify, words):
    with pytest.raises(SettingsError) as refused:
        load_settings({"FLOW45_NOTIFY": json.dumps(notify), "FLOW45_TEAMS": json.dumps({"acme": {}})})
    assert words in str(refused.value)
    assert "SECRET" not in str(refused.value), "a webhook's path or password is its secret"


@pytest.mark.parametrize("url", ["https://bücher.example/T0/a%20b?c=%C3%A9", "http://[::1]:8080/hook",
                                 "http://127.0.0.1:9/h"])
def test_a_webhook_url_that_can_be_posted_to_is_taken(url):
    settings = load_settings({"FLOW45_NOTIFY": json.dumps({"acme": [{"url": url, "events": ["run_failed"]}]}),
                              "FLOW45_TEAMS": json.dumps({"acme": {}})})
    assert settings.notify["acme"][0].url == url


def _event(kind, to_state=None, instance=7, detail=None):
    from flow45.views import EventView

    return EventView(id=1, at=T0, team="acme", run=3, instance=instance, kind=kind, from_state=None,
                     to_state=to_state, actor="x", detail=detail)


@pytest.mark.parametrize("event, kinds", [
    (_event("run", "failed", instance=None), ["run_failed"]),
    (_event("run", "succeeded", instance=None), []),
    (_event("fail", "failed", detail={"error": "e", "retries": 2}), ["retries_exhausted"]),
    (_event("fail", "retry_wait"), []),
    (_event("expire", "failed"), ["retries_exhausted"]),
    (_event("expire", "failed", detail={"unclaimed": True, "error": "no worker claimed it within 10m"}),
     ["retries_exhausted", "unclaimed"]),
    (_event("ready", "available", detail={"human": True}), ["human_waiting"]),
    (_event("ready", "available"), []),
    (_event("remind", detail={"reminder": 1, "of": 2, "to": "ann", "due": "2026-03-01T14:00:00Z"}), ["due_soon"]),
    (_event("overdue", detail={"outcome": "none"}), ["overdue"]),
    (_event("overdue", detail={"outcome": "escalate", "to": "ann, bob"}), ["overdue", "escalated"]),
    (_event("overdue", "failed", detail={"outcome": "fail"}), ["retries_exhausted", "overdue"]),
    (_event("sla_missed", instance=None, detail={"workflow": "job", "sla": "1h"}), ["sla_missed"]),
    (_event("cancel", "cancelled", instance=None, detail={"reason": "timed out", "timeout": "2h"}), ["run_timed_out"]),
    (_event("cancel", "cancelled", instance=None, detail={"reason": "wrong month"}), []),
])
def test_which_ledger_events_are_which_notify_events(event, kinds):
    from flow45.notify.events import notify_kinds, text

    assert notify_kinds(event) == kinds
    if kinds:
        assert text(event, kinds).startswith("[acme] ")


def test_a_workers_error_reaches_a_slack_channel_as_text_and_cut_short():
    """A worker's error went into the line as is: `<!channel>` pinged the channel, `<url|label>` made a link."""
    from flow45.notify.events import text
    from flow45.notify.hooks import Webhook
    from flow45.notify.post import body

    event = _event("fail", "failed", detail={"error": "<!channel> see <https://x.example|the fix> & retry" + "." * 400})
    line = text(event, ["retries_exhausted"])
    assert line.endswith("…" + " (event 1)") and len(line) < 400
    slack = json.loads(body(Webhook.model_validate({"url": "https://h.example/x", "events": ["retries_exhausted"]}),
                            event, ["retries_exhausted"], line))
    assert slack["text"].startswith("[acme] task instance 7 of run 3 failed with no retries left: &lt;!channel&gt; "
                                    "see &lt;https://x.example|the fix&gt; &amp; retry...")
    raw = json.loads(body(Webhook.model_validate({"url": "https://h.example/x", "events": ["retries_exhausted"],
                                                  "format": "event"}), event, ["retries_exhausted"], line))
    assert raw["text"] == line and raw["event"]["detail"]["error"].startswith("<!channel>")  # not Slack: as it is
