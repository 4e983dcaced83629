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


def _as_granted(commands: list[list[str]]) -> Held:
    """What the broker holds once `commands` (setup-broker's plan) ran, as rabbitmqctl's listings give it."""
    users, permissions, topics, policies = [], [], [], []
    for argv in commands:
        if argv[0] == "add_user":
            users.append({"user": argv[1], "tags": [FLOW45_TAG]})
        elif argv[0] == "set_permissions":
            permissions.append(dict(zip(("user", "configure", "write", "read"), argv[3:])))
        elif argv[0] == "set_topic_permissions":
            topics.append(dict(zip(("user", "exchange", "write", "read"), argv[3:])))
        elif argv[0] == "set_policy":  # rabbitmqctl lists the definition as compact JSON text
            policies.append({"name": argv[5], "pattern": argv[6], "apply-to": argv[4], "priority": 0,
                             "definition": json.dumps(json.loads(argv[7]), separators=(",", ":"))})
    return Held.from_listings(users, permissions, topics, policies)


def test_a_run_again_on_what_it_granted_runs_only_what_changes_something():
    commands, _ = plan(SETTINGS, {})
    held = _as_granted(commands)
    assert [argv for argv in commands if not held.holds(argv)] == [
        argv for argv in commands if argv[0] == "set_user_tags"]  # skipped too: its add_user is

    nothing = Held.from_listings([], None, None)  # a broker without the vhost
    assert not any(nothing.holds(argv) for argv in commands)

    moved = Settings(amqp_url=URL, teams={**TEAMS, "rival": {"users": {"rival-worker": "operator"}}},
                     inbox_max_messages=5)
    changed = [argv for argv in plan(moved, {})[0] if not held.holds(argv) and argv[0] != "set_user_tags"]
    assert [argv[:4] if argv[0] != "set_policy" else argv[:6] for argv in changed] == [
        ["set_permissions", "-p", "flow45", "rival-worker"],
        ["set_topic_permissions", "-p", "flow45", "rival-worker"],
        ["set_policy", "-p", "flow45", "--apply-to", "queues", "flow45-inbox"],
    ]
    # What a revocation clears is held until cleared: a user without topic permissions has none to clear.
    gone = revocations(SETTINGS, _held(tags={"gone": [FLOW45_TAG]}, permissions={"gone": team_permissions("reports")}))
    held_gone = _held(tags={"gone": [FLOW45_TAG]}, permissions={"gone": team_permissions("reports")})
    assert [argv[0] for argv in gone["gone"] if not held_gone.holds(argv)] == [
        "clear_permissions", "close_all_user_connections"]
