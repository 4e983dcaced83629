"""A message's change at most once (flow45.store.once): a copy applied again is answered as before, and
a change that breaks a constraint of its own is not taken for such a copy."""

from __future__ import annotations

import peewee
import pytest

from flow45.models import ProcessedMessage
from flow45.store.once import remember
from tests.store.helpers import T0

pytestmark = pytest.mark.usefixtures("store_db")


def _remember(message_id: str, change):
    return remember(message_id, "acme", "trigger", T0, change, encode=lambda r: r, decode=lambda r: r)


def test_a_message_applied_again_is_answered_as_before_and_changes_nothing_more():
    made = []
    assert _remember("m-1", lambda: made.append(1) or {"run": 7}) == {"run": 7}
    assert _remember("m-1", lambda: made.append(2) or {"run": 8}) == {"run": 7}
    assert made == [1]


def test_a_change_that_breaks_a_constraint_is_raised_not_answered_as_a_copy_applied_before():
    ProcessedMessage.create(message_id="elsewhere", team="acme", kind="trigger", processed_at=T0, reply=None)

    def clashing():
        ProcessedMessage.create(message_id="elsewhere", team="acme", kind="trigger", processed_at=T0, reply=None)

    with pytest.raises(peewee.IntegrityError):
        _remember("m-2", clashing)
    assert ProcessedMessage.get_or_none(ProcessedMessage.message_id == "acme/m-2") is None
