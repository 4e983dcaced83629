"""What every message shares: strict parsing, and the `type` values of a union of them."""

from __future__ import annotations

from typing import Any, get_args

from pydantic import BaseModel, ConfigDict


UTC_TIME = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,6})?Z$"


class _Message(BaseModel):
    # Strict: on the wire a number is never a string, nor a boolean an integer ("14" is no instance id).
    model_config = ConfigDict(extra="forbid", strict=True)


def _types(message: Any) -> frozenset[str]:
    """The `type` values of a discriminated union of messages."""
    union = get_args(message)[0]
    return frozenset(get_args(model.model_fields["type"].annotation)[0] for model in get_args(union))
