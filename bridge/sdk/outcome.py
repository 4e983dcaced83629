"""What a worker sends about an attempt, as the plain dicts the transports encode.

Built straight from values that are already checked (the offer was parsed strictly, texts are cut
to their limits here, log links checked by `Task.log`), so no model is validated per message; the
bridge parses each one strictly anyway.
"""

from __future__ import annotations

import logging
from typing import Any

from bridge.inbound import MAX_BODY
from bridge.sdk.binding import Binding, dump_output
from bridge.sdk.errors import PermanentError, SkipTask
from bridge.sdk.task import MAX_TEXT, Task, plain_text
from flow45 import wire

log = logging.getLogger("bridge.sdk.worker")


def outcome(task: Task, binding: Binding) -> dict[str, Any] | None:
    """Run the handler: the submit, fail or skip to send; None when it parked the attempt and returned."""
    attempt = {"instance": task.instance, "token": task.token}
    try:
        result = binding.fn(task, **binding.arguments(task.inputs))
        if task.callback_key is not None:
            return None
    except SkipTask as skip:
        return {"type": "skip", **attempt, "reason": plain_text(skip.reason)}
    except PermanentError as exc:
        log.error("%r failed permanently: %s", task, exc)
        return {"type": "fail", **attempt, "error": describe(exc), "retryable": False, **logs(task)}
    except Exception as exc:  # noqa: BLE001 - the handler's failure is the task's
        log.exception("%r failed", task)
        return {"type": "fail", **attempt, "error": describe(exc), "retryable": True, **logs(task)}
    try:
        output = dump_output(result)
        size = len(wire.dumps(output).encode())  # NaN and ±Infinity are not JSON: refused here, before anything is sent
    except Exception as exc:  # noqa: BLE001 - not JSON: trying again returns the same
        log.error("%r returned %s, which is not JSON: %s", task, type(result).__name__, exc)
        return {"type": "fail", **attempt, "retryable": False,
                "error": f"the handler's return value is not JSON: {describe(exc)}"[:MAX_TEXT]}
    if size > MAX_BODY:  # the inbox refuses it, and a broker's max_message_size closes the channel sending it
        log.error("%r returned %d bytes of JSON, over %d", task, size, MAX_BODY)
        return refused_output(task, f"the output is {size} bytes of JSON, over the {MAX_BODY} a message may have")
    return {"type": "submit", **attempt, "output": output, **logs(task)}


def refused_output(task: Task, error: str | None) -> dict[str, Any]:
    """The permanent fail that follows a submit whose output the bridge refused."""
    return {"type": "fail", "instance": task.instance, "token": task.token, "retryable": False,
            "error": f"output refused: {error}"[:MAX_TEXT]}


def progress(task: Task, percent: float | None, message: str | None, with_logs: dict[str, str],
             checkpoint: Any = None) -> dict[str, Any]:
    sent = {"type": "progress", "instance": task.instance, "token": task.token, "percent": percent,
            "message": message, **with_logs}
    if checkpoint is not None:
        sent["checkpoint"] = checkpoint
    return sent


def logs(task: Task) -> dict[str, str]:
    """The log link and tail the handler gave (`Task.log`), for the message that carries them."""
    return {name: value for name, value in (("log_url", task.log_url), ("log_tail", task.log_tail)) if value is not None}


def describe(exc: BaseException) -> str:
    try:
        text = str(exc)
    except Exception:  # noqa: BLE001 - a broken __str__ must not keep the failure from being reported
        text = ""
    name = type(exc).__name__
    return plain_text(f"{name}: {text}" if text else name)
