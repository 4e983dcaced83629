"""`import flow45` never loads the broker client or the TUI: only the commands that need them do."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, importlib.util, sys
modules = ["flow45", "flow45.store", "flow45.config"]
if importlib.util.find_spec("flow45.cli"):
    modules.append("flow45.cli")
for name in modules:
    importlib.import_module(name)
print(sorted(m for m in sys.modules if m.split(".")[0] in ("pika", "textual")))
"""


def test_core_imports_neither_pika_nor_textual():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
