"""The SDK on the local transport, over the store on each backend."""

from __future__ import annotations

import pytest

from bridge.sdk import LocalTransport, Worker
from flow45 import store
from flow45.config import load_config
from tests.conftest import EXAMPLES
from tests.sdk.helpers import ACME
from tests.store.helpers import deploy_text
from tests.wirecheck import wire_log  # noqa: F401  (autouse: every message checked against flow45 schema)


@pytest.fixture
def acme(store_db, tmp_path):
    """The test team `acme` deployed."""
    deploy_text(tmp_path, ACME)
    return "acme"


@pytest.fixture
def reports(store_db):
    """The example team `reports` deployed from examples/config."""
    store.deploy(load_config(EXAMPLES), actor="tester")
    return "reports"


@pytest.fixture
def make_worker(store_db):
    """Workers on the local transport; each is stopped and joined at the end of the test."""
    made: list[Worker] = []

    def make(team: str, name: str = "w1", **options) -> Worker:
        worker = Worker(LocalTransport(team, name, poll_interval=0.01), **options)
        made.append(worker)
        return worker

    yield make
    for worker in made:
        worker.stop()
    for worker in made:
        assert worker.join(timeout=30), "a worker did not stop"
