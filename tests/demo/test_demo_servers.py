"""The same demo over a real installation: PostgreSQL for the store, RabbitMQ with the bridge."""

from __future__ import annotations

import pytest

from tests.bridge.conftest import purge_all
from tests.cli.test_demo import assert_the_story_was_told, demo_env, run_demo

pytestmark = pytest.mark.integration


def test_headless_demo_over_postgresql_and_rabbitmq(tmp_path, postgres_server, rabbitmq_server):
    postgres_server.drop_database("flow45_demo")
    url = postgres_server.create_database("flow45_demo")
    purge_all(rabbitmq_server)  # other tests' leftovers must not reach this demo's bridge and workers
    env = demo_env(FLOW45_DATABASE_URL=url, FLOW45_AMQP_URL=rabbitmq_server.amqp_url)

    done = run_demo(tmp_path, "--headless", "--pace", "0.25", env=env)  # the default pace: test_demo.py
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    first = done.stdout.splitlines()[0]
    assert first.startswith(f"flow45 demo: store {url}, RabbitMQ amqp://guest:***@127.0.0.1:"), first
    assert_the_story_was_told(done.stdout)
    assert not (tmp_path / "flow45-demo.db").exists(), "no SQLite file when PostgreSQL is configured"
    log = (tmp_path / "flow45-demo-output" / "flow45-demo.log").read_text()
    assert "bridge: connected to the broker" in log and "bridge: stopped" in log
    assert "connected to 127.0.0.1 as guest" in log, "the workers went through RabbitMQ"

    # A database that is not empty is left alone: the demo deploys its own config and refuses.
    again = run_demo(tmp_path, "--headless", env=env)
    assert again.returncode == 1
    assert "already has workflows; the demo deploys its own and needs an empty database" in again.stderr
    assert (tmp_path / "flow45-demo-output" / "published").is_dir(), "the first demo's files are kept"
