"""What each inbound message does, through the core's API; the answer is JSON for the Reply."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path
from typing import Any

from bridge.inbound import Inbound, Refusal
from flow45 import messages as m
from flow45 import store
from flow45.config import load_config
from flow45.errors import ConfigError
from flow45.messages.base import utc_time
from flow45.store.once import remember


MAX_FILE_NAME = 255  # bytes of a file name a file system takes


def _configs(inbound: Inbound, files: dict[str, str]):
    """The sent YAML files, loaded from a private folder; every team named must be the sender's."""
    with tempfile.TemporaryDirectory(prefix="flow45-deploy-") as folder:
        for name, text in files.items():
            # As the folder is read (flow45.config.config_files): `.yaml` alone has no suffix, and is passed over.
            if (Path(name).suffix not in (".yaml", ".yml") or Path(name).name != name
                    or len(name.encode("utf-8")) > MAX_FILE_NAME):
                raise Refusal("invalid_message", f"files: {name!r} must be a plain file name ending in .yaml or .yml, "
                              f"of at most {MAX_FILE_NAME} bytes")
            (Path(folder) / name).write_text(text, encoding="utf-8")
        try:
            teams = load_config(folder)
        except ConfigError as exc:
            problems = [p.replace(folder + "/", "") for p in exc.problems]
            raise ConfigError(problems) from None
    for config in teams:  # as the sender named them: the store's checks at deploy name the files too
        config.origins = {key: Path(origin).name for key, origin in config.origins.items()}
        if config.team != inbound.team:
            raise Refusal(
                "unauthorized",
                f"the config names team {config.team}; user {inbound.user} may deploy only team {inbound.team}",
            )
    return teams


def _operator_change(inbound: Inbound, at: dt.datetime) -> Any:
    msg, team, actor = inbound.message, inbound.team, inbound.user
    if isinstance(msg, m.Validate):
        teams = _configs(inbound, msg.files)
        return {"teams": [{"team": t.team, "workflows": sorted(t.workflows), "types": sorted(t.types)} for t in teams]}
    if isinstance(msg, m.Deploy):
        return store.deploy(_configs(inbound, msg.files), actor=actor, now=at, prune=msg.prune,
                            dry_run=msg.dry_run).to_json()
    if isinstance(msg, m.Trigger):
        return store.trigger_run(team, msg.workflow, msg.params, actor=actor, now=at, trigger_kind="api",
                                 logical_time=utc_time(msg.logical_time), priority=msg.priority, key=msg.key).to_json()
    if isinstance(msg, m.Pause):
        store.pause(team, msg.workflow, actor=actor, triggers=msg.triggers, reason=msg.reason, now=at)
        return {"workflow": msg.workflow, "paused": msg.triggers}
    if isinstance(msg, m.Resume):
        store.resume(team, msg.workflow, actor=actor, now=at)
        return {"workflow": msg.workflow, "paused": None}
    if isinstance(msg, m.Backfill):
        plan = store.backfill(team, msg.workflow, utc_time(msg.start), utc_time(msg.end), actor=actor,
                              dry_run=msg.dry_run, now=at)
        return plan.to_json()
    if isinstance(msg, m.Undo):
        plan = store.undo(msg.instance, msg.reason, actor=actor, hold=msg.hold, dry_run=msg.dry_run, now=at, team=team,
                          cancel_connected=msg.cancel_connected)
        return plan.to_json()
    if isinstance(msg, m.OperatorSkip):
        store.skip_instance(msg.instance, msg.reason, actor=actor, now=at, team=team)
    elif isinstance(msg, m.Retry):
        store.retry_instance(msg.instance, actor=actor, now=at, team=team)
    elif isinstance(msg, m.Hold):
        store.hold(msg.instance, actor=actor, reason=msg.reason, now=at, team=team)
    elif isinstance(msg, m.Release):
        store.release(msg.instance, actor=actor, now=at, team=team)
    elif isinstance(msg, m.OperatorSubmit):
        store.submit_human(msg.instance, msg.output, actor=actor, comment=msg.comment, now=at, team=team)
    elif isinstance(msg, m.Take):
        previous = store.take(msg.instance, actor=actor, reason=msg.reason, now=at, team=team, for_user=msg.user)
        return {"instance": msg.instance, "taken_by": msg.user or actor, "previous": previous}
    elif isinstance(msg, m.HandBack):
        store.hand_back(msg.instance, actor=actor, now=at, team=team)
        return {"instance": msg.instance, "taken_by": None, "previous": actor}
    elif isinstance(msg, m.SetOutput):
        store.set_output(msg.instance, msg.output, reason=msg.reason, actor=actor, now=at, team=team)
    elif isinstance(msg, m.Note):
        status = store.note_run(msg.run, msg.text, actor=actor, now=at, team=team, task=msg.task)
        return {"run": msg.run, "status": status}
    elif isinstance(msg, m.Cancel):
        store.cancel_run(msg.run, actor=actor, reason=msg.reason, now=at, team=team)
        return {"run": msg.run, "status": store.get_run(msg.run).status}
    elif isinstance(msg, m.CallbackSubmit):
        done = store.complete_callback(msg.key, msg.output, actor=actor, team=team, now=at)
        return {"instance": done.instance, "state": done.state}
    elif isinstance(msg, m.CallbackFail):
        done = store.fail_callback(msg.key, msg.error, actor=actor, retryable=msg.retryable, team=team, now=at)
        return {"instance": done.instance, "state": done.state}
    if isinstance(msg, m.Status):
        if msg.run is not None:
            return store.get_run(msg.run, team=team).to_json()
        return {"runs": [r.to_json() for r in store.list_runs(team=team, limit=msg.limit)]}
    view = store.get_instance(msg.instance, team=team)
    return {"instance": view.id, "state": view.state}


def apply_operator(inbound: Inbound, at: dt.datetime) -> Any:
    if isinstance(inbound.message, (m.Validate, m.Status)) or getattr(inbound.message, "dry_run", False):
        return _operator_change(inbound, at)  # reads change nothing: no need to remember them
    return remember(
        inbound.message_id, inbound.team, inbound.message.type, at,
        lambda: _operator_change(inbound, at), encode=lambda r: r, decode=lambda r: r,
        instance=getattr(inbound.message, "instance", None),
    )


def apply(inbound: Inbound, at: dt.datetime) -> Any:
    """An operator message, or a callback key's holder's. (Worker messages go through the set-based
    batch, `flow45.store.batch`.)"""
    return apply_operator(inbound, at)
