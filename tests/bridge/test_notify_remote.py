"""`flow45 notify` with nothing but an operator's broker URL: it reads its own team's ledger through
the bridge and posts that team's chosen events, never another team's."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from flow45.models import Event
from tests.client.two_teams import deploy_two_teams
from tests.notify.test_notify import Receiver

pytestmark = pytest.mark.integration


def test_notify_through_the_broker_posts_its_own_teams_events(bridge_env, tmp_path):
    teams = deploy_two_teams(tmp_path)
    receiver = Receiver(hold_at=0)
    hooks = {"reports": [{"url": receiver.url + "/b", "events": ["human_waiting"]}]}
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOW45_AMQP_URL": bridge_env.url("reports-ops"),
               "FLOW45_NOTIFY": json.dumps(hooks)}
    argv = [sys.executable, "-m", "flow45", "notify", "--once", "--after", "0", "--state", str(tmp_path / "n.json")]
    done = subprocess.run(argv, cwd=tmp_path, env=environ, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    waiting = [e.id for e in Event.select().where(
        (Event.to_state == "available") & Event.instance.in_([t.approve for t in teams.values()]))]
    ours = Event.get((Event.instance == teams["reports"].approve) & (Event.to_state == "available"))
    assert len(waiting) == 2 and [key for _, key, _ in receiver.accepted] == [f"flow45-event-{ours.id}"]
    assert receiver.accepted[0][2]["text"].startswith(f"[reports] task instance {teams['reports'].approve} ")
