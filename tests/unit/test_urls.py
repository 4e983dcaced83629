"""URLs as Flow45 prints them: the password hidden, everything else as written."""

from __future__ import annotations

import pytest

from flow45.urls import hide_password


@pytest.mark.parametrize("url, shown", [
    ("amqp://ann:s3cr%40t@localhost:5673/%2F", "amqp://ann:***@localhost:5673/%2F"),
    ("postgresql://flow45:pw@db:5432/flow45?sslmode=require&password=pw2",
     "postgresql://flow45:***@db:5432/flow45?sslmode=require&password=***"),
    ("postgresql://flow45@db/flow45", "postgresql://flow45@db/flow45"),
    ("amqp://:only-a-password@host/", "amqp://:***@host/"),
    ("sqlite:///flow45.db", "sqlite:///flow45.db"),
    ("sqlite:////var/lib/flow45/x.db", "sqlite:////var/lib/flow45/x.db"),
])
def test_the_password_is_hidden_and_the_rest_kept(url, shown):
    assert hide_password(url) == shown
