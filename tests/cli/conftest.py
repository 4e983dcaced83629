"""The in-process command line on the test's store: `flow45(*args)` returns (exit code, stdout, stderr)."""

from __future__ import annotations

import pytest

from flow45.cli import main
from flow45.settings import Settings, use_settings


@pytest.fixture
def flow45(db_url, capsys, store_db):
    """Run `flow45 ARGS...` in-process as ops-ann; returns (exit code, stdout, stderr)."""
    use_settings(Settings(database_url=db_url))

    def run(*args: str):
        try:
            code = main(["--as", "ops-ann", *args])
        except SystemExit as exc:
            code = exc.code
        out, err = capsys.readouterr()
        return code, out, err

    return run
