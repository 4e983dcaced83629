"""`flow45 notify` on the database posts each team's events on its own: one team's receiver that is
down holds back that team's posts alone, and an installation upgraded from one state file for every
team starts each team where that file was."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from flow45 import store
from flow45.db import connect
from flow45.migrate import ensure_schema
from flow45.models import Event
from flow45.notify.follow import team_state
from flow45.settings import Settings, use_settings
from tests import pinned
from tests.store.helpers import T0, claim, deploy_text

CONFIG = """
    team: {team}
    types:
      Ok: {{fields: {{ok: boolean}}}}
    workflows:
      job:
        tasks:
          work: {{function: work, output: Ok}}
"""


class Receivers:
    """/TEAM paths; a team in `down` is answered 500, the others 200 (and kept)."""

    def __init__(self) -> None:
        self.down: set[str] = set()
        self.accepted: dict[str, list[str]] = {}  # team -> idempotency keys, in order
        self.refused: dict[str, int] = {}
        lock = threading.Lock()
        receivers = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802 (http.server's name)
                self.rfile.read(int(self.headers["Content-Length"]))
                team = self.path.strip("/")
                with lock:
                    if team in receivers.down:
                        receivers.refused[team] = receivers.refused.get(team, 0) + 1
                    else:
                        receivers.accepted.setdefault(team, []).append(self.headers["Idempotency-Key"])
                self.send_response(500 if team in receivers.down else 200)
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


def _fail_a_run(team: str) -> int:
    """A run of `team` that fails; its run_failed ledger event."""
    run = store.trigger(team, "job", actor="ann", now=T0)
    grant = claim(run, "work")
    store.fail(grant.instance, grant.token, "disk full", retryable=False, now=T0)
    return Event.get((Event.run == run) & Event.instance.is_null() & (Event.to_state == "failed")).id


def _until(condition, what: str, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, what
        time.sleep(0.05)


def test_a_team_whose_receiver_is_down_holds_back_its_own_posts_alone(tmp_path):
    url = f"sqlite:///{tmp_path / 'n.db'}"
    use_settings(Settings(database_url=url))
    connect(url, create=True)
    ensure_schema()
    for team in ("acme", "rival"):
        deploy_text(tmp_path, CONFIG.format(team=team))
    _fail_a_run("acme")  # before the saved position: posted already by the notifier of every team
    state = tmp_path / "notify.json"
    state.write_text(json.dumps({"after": Event.select().order_by(Event.id.desc()).first().id}))
    acme = [f"flow45-event-{_fail_a_run('acme')}" for _ in range(2)]
    rival = [f"flow45-event-{_fail_a_run('rival')}" for _ in range(2)]

    receivers = Receivers()
    receivers.down.add("acme")
    hooks = {team: [{"url": f"{receivers.url}/{team}", "events": ["run_failed"]}] for team in ("acme", "rival")}
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(tmp_path), "FLOW45_DATABASE_URL": url,
           "FLOW45_NOTIFY": json.dumps(hooks), "FLOW45_NOTIFY_RETRY_DELAY": "0.05", "FLOW45_NOTIFY_RETRY_MAX": "0.2",
           "FLOW45_SWEEP_INTERVAL": "0.1"}
    process = subprocess.Popen(pinned.command([sys.executable, "-m", "flow45", "notify", "--state", str(state)]),
                               env=env, stderr=subprocess.PIPE, text=True)
    try:
        _until(lambda: receivers.accepted.get("rival") == rival and receivers.refused.get("acme", 0) >= 3,
               "rival's posts waited behind acme's receiver")
        receivers.down.clear()
        _until(lambda: receivers.accepted.get("acme") == acme, "acme's posts did not follow once its receiver was up")
        process.send_signal(signal.SIGTERM)
        _, said = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, said
    assert "notify: team acme: 2 post(s)" in said and "notify: team rival: 2 post(s)" in said
    for team, posted in (("acme", acme), ("rival", rival)):  # each file keeps its team's place
        saved = json.loads(team_state(state, team).read_text())
        assert all(int(key.rsplit("-", 1)[1]) <= saved["after"] or int(key.rsplit("-", 1)[1]) in saved["seen"]
                   for key in posted)
