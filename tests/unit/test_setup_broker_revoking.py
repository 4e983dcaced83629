"""setup-broker takes back what it granted: it tags the team users it makes, and a run takes the
permissions on the vhost (and the connections) of a tagged user the settings no longer name, and
closes the connections of one whose grants changed. Users it did not make are never touched."""

from __future__ import annotations

import json

from bridge.setup_broker import (FLOW45_TAG, Held, as_shell, plan, regrants, revocations, revoking_note,
                                 team_permissions, topic_permissions)
from flow45.settings import Settings

URL = "amqp://flow45-bridge:pw@localhost/flow45"
TEAMS = {
    "reports": {"users": {"reports-worker": "worker", "reports-ops": "operator"}},
    "rival": {"users": {"rival-worker": "worker"}},
}
SETTINGS = Settings(amqp_url=URL, teams=TEAMS)


def _held(tags: dict[str, list[str]], permissions: dict[str, tuple], topics: dict[str, tuple] | None = None) -> Held:
    """A Held read from rabbitmqctl's JSON listings, as they come."""
    users = json.dumps([{"user": user, "tags": tagged} for user, tagged in tags.items()])
    granted = json.dumps([{"user": user, "configure": c, "write": w, "read": r}
                          for user, (c, w, r) in permissions.items()])
    topical = json.dumps([{"user": user, "exchange": e, "write": w, "read": r} for user, (e, w, r) in (topics or {}).items()])
    return Held.from_listings(json.loads(users), json.loads(granted), json.loads(topical))


def test_each_team_user_is_tagged_as_it_is_made_and_the_bridges_own_never():
    commands, _ = plan(SETTINGS, {})
    tagged = [c[1] for c in commands if c[0] == "set_user_tags"]
    assert tagged == ["reports-ops", "reports-worker", "rival-worker"]
    for user in tagged:
        made = commands.index(next(c for c in commands if c[:2] == ["add_user", user]))
        assert commands[made + 1] == ["set_user_tags", user, FLOW45_TAG]


def test_the_printed_script_tags_a_user_only_when_it_made_it():
    script = as_shell(plan(SETTINGS, placeholders=True)[0])
    assert ('rabbitmqctl add_user reports-ops "${PASSWORD_REPORTS_OPS:?}" && rabbitmqctl set_user_tags reports-ops '
            f"{FLOW45_TAG}\n") in script
    assert "set_user_tags flow45-bridge" not in script
    note = revoking_note(SETTINGS)
    assert "#   rabbitmqctl clear_permissions -p flow45 USER" in note
    assert "(they name: reports-ops, reports-worker, rival-worker)" in note and "delete_user USER" in note


def test_a_run_revokes_the_users_it_made_that_the_settings_no_longer_name():
    grant = team_permissions("reports")
    held = _held(
        tags={"gone-worker": [FLOW45_TAG], "gone-ops": [FLOW45_TAG, "monitoring"], "admins-app": ["monitoring"],
              "untagged": [], "reports-worker": [FLOW45_TAG], "flow45-bridge": [FLOW45_TAG],
              "elsewhere": [FLOW45_TAG]},
        permissions={"gone-worker": grant, "admins-app": grant, "untagged": grant, "reports-worker": grant,
                     "flow45-bridge": (".*", ".*", ".*")},
        topics={"gone-ops": topic_permissions("reports")},
    )
    taken = revocations(SETTINGS, held)
    assert list(taken) == ["gone-ops", "gone-worker"]  # made by setup-broker, named no more, holding some
    assert taken["gone-worker"] == [
        ["clear_permissions", "-p", "flow45", "gone-worker"], ["clear_topic_permissions", "-p", "flow45", "gone-worker"],
        ["close_all_user_connections", "gone-worker", "no longer a Flow45 user on this vhost"],
    ]
    # Once taken back, nothing more to take on the next run.
    assert revocations(SETTINGS, _held(tags={"gone-worker": [FLOW45_TAG]}, permissions={})) == {}


def test_a_user_moved_to_another_team_or_role_keeps_nothing_of_the_old_one():
    held = _held(
        tags={},
        permissions={"rival-worker": team_permissions("reports", "operator"),  # was an operator of reports
                     "reports-ops": team_permissions("reports", "worker"),  # was a worker
                     "reports-worker": team_permissions("reports", "worker")},  # unchanged
        topics={"rival-worker": topic_permissions("reports")},
    )
    assert regrants(SETTINGS, held) == {
        "reports-ops": [["close_all_user_connections", "reports-ops", "Flow45 permissions changed: reconnect"]],
        "rival-worker": [["clear_topic_permissions", "-p", "flow45", "rival-worker", "flow45.events"],
                         ["close_all_user_connections", "rival-worker", "Flow45 permissions changed: reconnect"]],
    }
    unchanged = _held(tags={}, permissions={"reports-ops": team_permissions("reports", "operator")},
                      topics={"reports-ops": topic_permissions("reports")})
    assert regrants(SETTINGS, unchanged) == {}
    assert regrants(SETTINGS, _held(tags={}, permissions={})) == {}  # new users: nothing held to take
