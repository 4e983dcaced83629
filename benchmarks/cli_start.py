"""How long a `flow45` command line process takes to start and finish, when its work is small: a usage
error, `--help`, a validate and two reads on an embedded (SQLite) store; and what its imports cost.

    python benchmarks/cli_start.py [-n 10] [--imports-only | --commands-only]

Each command runs N times as `python -m flow45 ...` (this interpreter, this checkout first on the
path), the commands taken in turn so that a change in the machine's load falls on all of them alike.
Python's bytecode is written to a temporary folder by the first processes (a user's installed package
is compiled too). The store is a throwaway SQLite file with examples/config deployed and one run
triggered. Then N processes each import, in order, the heavy third-party packages and Flow45's
modules, timing each import with perf_counter: a module's figure is what it added beyond those
imported before it.
Prints the min and median wall time of each, in milliseconds.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

COMMANDS = {
    "usage error (runs --since 99999999d)": ["runs", "--since", "99999999d"],
    "--help": ["--help"],
    "validate examples/config": ["validate", str(ROOT / "examples" / "config")],
    "runs (embedded store)": ["runs"],
    "show 1 (embedded store)": ["show", "1"],
}

# In the order a command's imports meet them; each figure excludes what the ones above loaded.
IMPORTS = ["pydantic", "yaml", "peewee", "croniter", "prometheus_client", "pika", "flow45.config", "flow45.views",
           "flow45.messages", "flow45.store", "flow45.client", "flow45.cli"]

_TIME_IMPORTS = """
import importlib, json, sys, time
took = {}
started = time.perf_counter()
for name in sys.argv[1:]:
    begun = time.perf_counter()
    importlib.import_module(name)
    took[name] = time.perf_counter() - begun
took["all of them"] = time.perf_counter() - started
print(json.dumps(took))
"""

_LOADED = "import sys, flow45.cli; print(' '.join(sorted(n for n in sys.argv[1:] if n in sys.modules)))"


def environment(folder: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLOW45_") and k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPATH"] = str(ROOT)  # this checkout, ahead of any installed flow45
    # Compiled once, as an installed package is: not timing the compiler. Kept out of the checkout.
    env["PYTHONPYCACHEPREFIX"] = os.path.join(folder, "pycache")
    env["FLOW45_DATABASE_URL"] = f"sqlite:///{folder}/flow45.db"
    env["FLOW45_ACTOR"] = "bench"
    return env


def flow45(args: list[str], env: dict[str, str], folder: str, check: bool = True) -> float:
    """Seconds one `python -m flow45 ARGS` took, start to exit."""
    started = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "flow45", *args], env=env, cwd=folder,
                          stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    took = time.perf_counter() - started
    if check and done.returncode not in (0, 2):
        raise SystemExit(f"flow45 {' '.join(args)} failed ({done.returncode}): {done.stderr.decode()}")
    return took


def prepare(env: dict[str, str], folder: str) -> None:
    """The store, and the bytecode of everything timed (writing it is not timed)."""
    subprocess.run([sys.executable, "-c", f"import {', '.join(IMPORTS)}"], env=env, cwd=folder, check=True)
    for args in (["db", "upgrade"], ["deploy", str(ROOT / "examples" / "config")],
                 ["trigger", "reports/monthly_report", "--logical-time", "2026-03-01T06:00:00Z"]):
        flow45(args, env, folder)


def line(name: str, seconds: list[float]) -> str:
    return f"{name:<40} min {min(seconds) * 1000:7.1f} ms   median {statistics.median(seconds) * 1000:7.1f} ms"


def time_commands(n: int, env: dict[str, str], folder: str) -> None:
    taken: dict[str, list[float]] = {name: [] for name in COMMANDS}
    taken["python -c 'import flow45.cli'"] = []
    taken["python -c pass (the interpreter alone)"] = []
    for _ in range(n):
        for name, args in COMMANDS.items():
            taken[name].append(flow45(args, env, folder))
        for name, code in (("python -c 'import flow45.cli'", "import flow45.cli"),
                           ("python -c pass (the interpreter alone)", "pass")):
            started = time.perf_counter()
            subprocess.run([sys.executable, "-c", code], env=env, cwd=folder, check=True)
            taken[name].append(time.perf_counter() - started)
    print(f"wall time of a process, {n} each:")
    for name, seconds in taken.items():
        print("  " + line(name, seconds))


def time_imports(n: int, env: dict[str, str], folder: str) -> None:
    taken: dict[str, list[float]] = {}
    for _ in range(n):
        done = subprocess.run([sys.executable, "-c", _TIME_IMPORTS, *IMPORTS], env=env, cwd=folder, check=True,
                              capture_output=True, text=True)
        for name, seconds in json.loads(done.stdout).items():
            taken.setdefault(name, []).append(seconds)
    print(f"imports, in-process (perf_counter), in this order, {n} processes:")
    for name, seconds in taken.items():
        print("  " + line(name, seconds))
    third_party = [name for name in IMPORTS if not name.startswith("flow45")]
    loaded = subprocess.run([sys.executable, "-c", _LOADED, *third_party], env=env, cwd=folder, check=True,
                            capture_output=True, text=True).stdout.split()
    print(f"  `import flow45.cli` alone loads: {', '.join(loaded) or 'none of them'}"
          f"; not: {', '.join(sorted(set(third_party) - set(loaded))) or '-'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", type=int, default=10, help="processes per figure")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--imports-only", action="store_true")
    only.add_argument("--commands-only", action="store_true")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as folder:
        env = environment(folder)
        print(f"{ROOT}, {sys.executable}")
        prepare(env, folder)
        if not args.imports_only:
            time_commands(args.n, env, folder)
        if not args.commands_only:
            time_imports(args.n, env, folder)


if __name__ == "__main__":
    main()
