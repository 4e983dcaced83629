"""Log links kept with the attempt that sent them, on SQLite and on PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from flow45 import store
from flow45.errors import InvalidLog, InvalidOutput
from flow45.models import Attempt
from tests.store.helpers import BLOB, DIAMOND, T0, claim, deploy_text

pytestmark = pytest.mark.usefixtures("store_db")


def test_progress_fail_and_submit_keep_their_log_with_the_attempt_and_hostile_ones_change_nothing(tmp_path):
    deploy_text(tmp_path, DIAMOND)
    run = store.trigger("acme", "diamond", actor="ann", now=T0)
    grant = claim(run, "a")
    store.progress(grant.instance, grant.token, 10, log_url="https://logs.example.org/a/1", now=T0)
    store.progress(grant.instance, grant.token, 20, "no link this time", now=T0)  # the link stays
    with pytest.raises(InvalidLog, match=r"task instance \d+: log_url must be an http:// or https:// URL"):
        store.progress(grant.instance, grant.token, 30, log_url="javascript:alert(1)", now=T0)
    with pytest.raises(InvalidLog, match="log_tail has a control character"):
        store.fail(grant.instance, grant.token, "boom", log_tail="\x1b]0;owned\x07", now=T0)
    store.fail(grant.instance, grant.token, "boom", log_tail="reading s3://in\nTimeout after 30s\n", now=T0)
    first = Attempt.get(Attempt.token == grant.token)
    assert (first.status, first.log_url, first.log_tail) == (
        "failed", "https://logs.example.org/a/1", "reading s3://in\nTimeout after 30s\n")
    store.release_due_retries(now=T0 + dt.timedelta(seconds=10))
    grant = claim(run, "a")
    # A refused submit keeps nothing of what it carried; the accepted one its link.
    with pytest.raises(InvalidOutput):
        store.submit(grant.instance, grant.token, {"uri": "x"}, log_url="https://logs.example.org/a/bad", now=T0)
    assert Attempt.get(Attempt.token == grant.token).log_url is None
    store.submit(grant.instance, grant.token, BLOB, log_url="https://logs.example.org/a/2", now=T0)
    view = store.get_instance(grant.instance)
    assert [(a.number, a.log_url) for a in view.attempts] == [
        (1, "https://logs.example.org/a/1"), (2, "https://logs.example.org/a/2")]
    assert view.log_url == "https://logs.example.org/a/2" and view.log_tail is None  # the current attempt's
