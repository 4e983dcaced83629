"""`import flow45` never loads the broker client or the TUI: only the commands that need them do.

flow45/cli is the one place that puts the parts together; every other flow45 module stays free of
pika and textual, and so does the command line until a command that needs them runs."""

from __future__ import annotations

import subprocess
import sys

CHECK = """
import importlib, pkgutil, sys
import flow45
modules = ["flow45", "flow45.cli"] + [
    m.name for m in pkgutil.walk_packages(flow45.__path__, "flow45.")
    if not (m.name.startswith("flow45.cli.") or m.name == "flow45.__main__")  # __main__ runs the command
]
for name in modules:
    importlib.import_module(name)
print(len(modules), sorted(m for m in sys.modules if m.split(".")[0] in ("pika", "textual", "bridge", "tui")))
"""


def test_core_and_command_line_import_neither_pika_nor_textual():
    done = subprocess.run([sys.executable, "-c", CHECK], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, loaded = done.stdout.split(" ", 1)
    assert int(count) > 30, "every module of the core was imported"
    assert loaded.strip() == "[]"


def test_only_the_command_line_names_bridge_or_tui():
    from pathlib import Path

    import flow45

    root = Path(flow45.__file__).parent
    offenders = [
        str(path.relative_to(root)) for path in root.rglob("*.py")
        if "cli" not in path.relative_to(root).parts[:1]
        and any(line.lstrip().startswith(("import bridge", "from bridge", "import tui", "from tui"))
                for line in path.read_text().splitlines())
    ]
    assert offenders == []


BUILT = """
import flow45.cli, flow45.client, flow45.store  # what a command on the store imports
from pydantic import BaseModel

def every(cls):
    for sub in cls.__subclasses__():
        yield sub
        yield from every(sub)

# The declared types' base is built as it is defined, as its subclasses are: a pattern pydantic cannot
# check is refused where the type is declared (flow45.types).
ours = [m for m in every(BaseModel) if m.__module__.startswith("flow45.") and m.__module__ != "flow45.types"]
print(len(ours), sorted({m.__qualname__ for m in ours if m.__pydantic_complete__}))
"""


def test_a_command_builds_no_schema_as_it_starts():
    """A model's validator, or a union's, is built on first use (defer_build, cached adapters), so a
    command pays only for the schemas it uses."""
    done = subprocess.run([sys.executable, "-c", BUILT], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    count, built = done.stdout.split(" ", 1)
    assert int(count) > 50, "the messages, config and settings models were imported"
    assert built.strip() == "[]"


def _loaded(imports: str, names: tuple[str, ...]) -> list[str]:
    """Which of the modules `names` are loaded once `imports` are, in a fresh interpreter."""
    check = f"import sys, {imports}; print(*sorted(m for m in {names!r} if m in sys.modules))"
    done = subprocess.run([sys.executable, "-c", check], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_the_command_line_parses_without_the_core():
    """The command modules import the core inside their commands: --help and a usage error need
    neither pydantic nor peewee (nor YAML, nor the store)."""
    heavy = ("pydantic", "pydantic_core", "peewee", "yaml", "flow45.store", "flow45.settings", "croniter",
             "prometheus_client", "pika", "textual")
    assert _loaded("flow45.cli", heavy) == []


def test_a_command_starts_without_what_few_commands_use():
    """croniter (schedules) and prometheus_client (the long-running processes' metrics) are imported
    where they are used; every command on the store would pay for them otherwise."""
    loaded = _loaded("flow45.cli, flow45.client, flow45.store", ("croniter", "prometheus_client", "pika", "textual"))
    assert loaded == []
