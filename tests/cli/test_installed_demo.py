"""A real install, not an editable one: `pip install .` into a fresh venv, then `flow45 demo --headless`
from an empty folder exits 0, because the demo's config and workers ship inside the package."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ("pyproject.toml", "README.md", "flow45", "bridge", "tui")


@pytest.mark.integration  # slow: a venv and an install (about 15 s), then the whole demo
def test_the_installed_package_runs_the_demo_from_an_empty_folder(tmp_path):
    source = tmp_path / "source"  # a clean copy: no build/ left over from an earlier build of the checkout
    source.mkdir()
    for name in SOURCE:
        if (ROOT / name).is_dir():
            shutil.copytree(ROOT / name, source / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(ROOT / name, source / name)
    venv = tmp_path / "venv"
    # This interpreter's pip installs into the venv (--python): no copy of pip to set up in it first.
    # --no-compile: Python compiles what the demo imports as it imports it; the rest never runs.
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=120)
    installed = subprocess.run([sys.executable, "-m", "pip", "--python", str(venv / "bin" / "python"), "install", "-q",
                                "--no-compile", str(source)], capture_output=True, text=True, timeout=300)
    assert installed.returncode == 0, installed.stderr[-3000:]
    shutil.rmtree(source)  # whatever runs next can only come from the venv

    empty = tmp_path / "empty"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW45_") and k != "PYTHONPATH"}
    # A quick pace: the story at the default pace is tests/cli/test_demo.py's; this test is about packaging.
    done = subprocess.run([str(venv / "bin" / "flow45"), "demo", "--headless", "--pace", "0.05"], cwd=empty, env=env,
                          capture_output=True, text=True, timeout=180, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    assert "run 1 monthly_report (manual): succeeded" in done.stdout
    assert (empty / "flow45-demo-output" / "published").is_dir(), "the packaged workers wrote their files"
