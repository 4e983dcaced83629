"""Checkpoints: where an attempt got to, sent by its worker with progress and kept with the attempt.
The next attempt of the instance (a retry, or after an expired lease) gets the last one in its
claim's answer, so a long task resumes instead of starting over (Temporal's heartbeat details). An
undo archives the attempts, and with them their checkpoints: the instance starts afresh. Every
operator of the team sees them, so they are small and carry no secrets, as outputs."""

from __future__ import annotations

from typing import Any

from flow45.errors import InvalidCheckpoint
from flow45.outputs import find_secret, json_size

CHECKPOINT_MAX = 4096  # bytes of compact JSON, and never over the output cap


def checkpoint_problem(checkpoint: Any, output_cap: int | None = None) -> str | None:
    """Why `checkpoint` cannot be kept; None if it can."""
    try:
        size = json_size(checkpoint)
    except (TypeError, ValueError) as exc:
        return f"is not JSON: {exc}"
    cap = CHECKPOINT_MAX if output_cap is None else min(CHECKPOINT_MAX, output_cap)
    if size > cap:
        return f"is {size} bytes of JSON, over {cap}: keep where the work got to, not the work"
    if secret := find_secret(checkpoint, "checkpoint"):
        return f"refused, {secret}; checkpoints are shown to every operator of the team"
    return None


def check_checkpoint(checkpoint: Any, what: str, output_cap: int) -> None:
    """Raise InvalidCheckpoint naming the problem, if one is given and cannot be kept."""
    if checkpoint is not None and (problem := checkpoint_problem(checkpoint, output_cap)):
        raise InvalidCheckpoint(f"{what}: checkpoint {problem}")
