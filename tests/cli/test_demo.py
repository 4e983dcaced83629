"""The README's first command: the demo runs every example workflow to the end."""

from __future__ import annotations

import subprocess
import sys


def test_demo_finishes_every_run(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "flow45", "demo", "--timeout", "60"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "run 1 monthly_report: succeeded" in done.stdout
    assert "run 2 nightly_sales: succeeded" in done.stdout
    assert "undo notices published: 1" in done.stdout
    assert " fail " in done.stdout and " undo " in done.stdout, "the demo shows a retried failure and an undo"
    assert (tmp_path / "flow45-demo.db").exists()
