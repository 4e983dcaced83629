"""setup-broker takes back what it granted: it tags the team users it makes, and a run takes the
permissions on the vhost (and the connections) of a tagged user the settings no longer name, and
closes the connections of one whose grants changed. Users it did not make are never touched."""

from __future__ import annotations

import base64
import hashlib
import json

from bridge.setup_broker import (FLOW45_TAG, Held, as_shell, definitions, plan, regrants, revocations,
                                 revoking_note, team_permissions, topic_permissions)
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


def _logs_in(user: dict, password: str) -> bool:
    """Whether the broker would take `password` for an imported `user` (its salted SHA-256)."""
    stored = base64.b64decode(user["password_hash"])
    salt, digest = stored[:4], stored[4:]
    return user["hashing_algorithm"] == "rabbit_password_hashing_sha256" and hashlib.sha256(salt + password.encode()).digest() == digest


def test_a_plan_is_one_import_of_what_its_commands_would_make():
    commands, passwords = plan(SETTINGS, {})
    document = definitions(commands)
    assert document["vhosts"] == [{"name": "flow45"}]
    users = {user["name"]: user for user in document["users"]}
    assert {name: user["tags"] for name, user in users.items()} == {
        "flow45-bridge": [], "reports-ops": [FLOW45_TAG], "reports-worker": [FLOW45_TAG], "rival-worker": [FLOW45_TAG]}
    assert all(_logs_in(users[name], password) for name, password in {**passwords, "flow45-bridge": "pw"}.items())
    assert not _logs_in(users["reports-ops"], passwords["reports-worker"])
    assert users["reports-ops"]["password_hash"] != definitions(commands)["users"][1]["password_hash"]  # salted
    assert {(p["user"], p["vhost"]): (p["configure"], p["write"], p["read"]) for p in document["permissions"]} == {
        ("flow45-bridge", "flow45"): (".*", ".*", ".*"), ("reports-ops", "flow45"): team_permissions("reports", "operator"),
        ("reports-worker", "flow45"): team_permissions("reports"), ("rival-worker", "flow45"): team_permissions("rival")}
    assert document["topic_permissions"] == [
        dict(zip(("vhost", "user", "exchange", "write", "read"), ("flow45", "reports-ops", *topic_permissions("reports"))))]
    policies = {p["name"]: p for p in document["policies"]}
    assert policies["flow45-inbox"]["definition"]["max-length"] == SETTINGS.inbox_max_messages
    assert {(p["vhost"], p["apply-to"], p["priority"]) for p in policies.values()} == {("flow45", "queues", 0)}
    # What the broker then exports is what a run again finds held: it has nothing left to do.
    exported = {**document, "users": [{"name": u["name"], "tags": u["tags"]} for u in document["users"]]}
    again = Held.from_definitions(exported, "flow45")
    assert [argv for argv in commands if not again.holds(argv) and argv[0] != "set_user_tags"] == []


def test_an_export_is_read_for_the_settings_vhost_alone():
    grant = team_permissions("reports")
    exported = {
        "vhosts": [{"name": "/"}, {"name": "flow45"}],
        "users": [{"name": "reports-worker", "tags": [FLOW45_TAG]}, {"name": "older", "tags": "monitoring,flow45"}],
        "permissions": [dict(zip(("vhost", "user", "configure", "write", "read"), ("flow45", "reports-worker", *grant))),
                        dict(zip(("vhost", "user", "configure", "write", "read"), ("/", "older", ".*", ".*", ".*")))],
        "topic_permissions": [{"vhost": "/", "user": "older", "exchange": "flow45.events", "write": "", "read": ".*"}],
        "policies": [{"vhost": "/", "name": "theirs", "pattern": ".*", "apply-to": "all", "definition": {}, "priority": 1}],
    }
    held = Held.from_definitions(exported, "flow45")
    assert held.tags == {"reports-worker": [FLOW45_TAG], "older": ["monitoring", FLOW45_TAG]}
    assert held.permissions == {"reports-worker": grant} and held.topics == {} and held.policies == {} and held.vhost
    missing = Held.from_definitions(exported, "elsewhere")
    assert not missing.vhost and missing.permissions == {} and missing.holds(["add_user", "older", "x"])
