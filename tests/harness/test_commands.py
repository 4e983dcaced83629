"""commands.run runs a command as subprocess.run does, in a fork of a warm interpreter: the same
output, exit code and environment, and nothing of the fork server's or an earlier command's."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest

from flow45.db import connect, database
from flow45.migrate import ensure_schema
from tests.conftest import ROOT
from tests.harness import commands

PROGRAMS = {
    "exit code": "import sys; print('out'); sys.exit(3)",
    "exit message": "import sys; sys.exit('refused: no such run')",
    "exit none": "raise SystemExit",
    "uncaught": "def fail():\n    raise ValueError('no')\nfail()",
    "chained": "try:\n    1 / 0\nexcept ZeroDivisionError as exc:\n    raise KeyError('k') from exc",
    "syntax": "print(",
    "unflushed": "import sys; sys.stdout.write('no newline'); sys.stderr.write('err no newline')",
    "descriptors": "import os; os.write(1, b'fd1 '); os.write(2, b'fd2 '); print('printed')",
    "child process": "import os, sys; sys.stdout.flush(); os.system('echo from the shell; echo to stderr >&2')",
    "descriptors a child inherits": "import os; os.system('ls /proc/self/fd')",
    "threads and atexit": ("import atexit, threading, time\n"
                           "atexit.register(print, 'at exit')\n"
                           "threading.Thread(target=lambda: (time.sleep(0.2), print('thread done'))).start()\n"
                           "print('main done')"),
    "os._exit": "import os; print('lost, never flushed'); os._exit(7)",
    "signal": "import os, signal; os.kill(os.getpid(), signal.SIGTERM)",
    "process": "import os, sys; print(sys.argv, os.getcwd() == os.path.realpath('.'), sys.path[0], sys.stdin.read())",
    "text": "import sys; sys.stdout.buffer.write('crlf\\r\\nand cr\\r, é\\n'.encode())",
}


@pytest.mark.parametrize("program", PROGRAMS.values(), ids=PROGRAMS.keys())
def test_a_program_runs_as_in_a_process_of_its_own(program, tmp_path):
    argv = [sys.executable, "-c", program, "an argument"]
    env = {"PATH": "/usr/bin:/bin"}
    forked = commands.run(argv, env=env, cwd=tmp_path, input="some input", timeout=30)
    spawned = subprocess.run(argv, env=env, cwd=tmp_path, input="some input", capture_output=True, text=True,
                             timeout=30)
    assert (forked.returncode, forked.stdout, forked.stderr) == (spawned.returncode, spawned.stdout, spawned.stderr)
    assert forked.args == argv


def test_a_module_runs_as_python_m_runs_it(tmp_path):
    """sys.argv[0] the module's path, the cwd first on sys.path, PYTHONPATH next, a traceback from runpy on."""
    package = tmp_path / "lib" / "tool"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "__main__.py").write_text("import sys\nprint(sys.argv, sys.path[:2], __name__)\nraise RuntimeError('x')\n")
    argv = [sys.executable, "-m", "tool", "--flag"]
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(tmp_path / "lib")}
    forked = commands.run(argv, env=env, cwd=tmp_path, timeout=30)
    spawned = subprocess.run(argv, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=30)
    assert forked.returncode == spawned.returncode == 1
    assert forked.stdout == spawned.stdout and str(package / "__main__.py") in forked.stdout
    assert forked.stderr == spawned.stderr and '"<frozen runpy>"' in forked.stderr
    missing = commands.run([sys.executable, "-m", "no_such_module"], env=env, cwd=tmp_path)
    assert (missing.returncode, missing.stderr) == (1, f"{sys.executable}: No module named no_such_module\n")


def test_the_environment_is_exactly_the_one_given(tmp_path):
    show = [sys.executable, "-c", "import json, os, time; print(json.dumps([dict(os.environ), time.tzname[0]]))"]
    first = commands.run(show, env={"A": "1", "TZ": "America/New_York"}, cwd=tmp_path, timeout=30)
    second = commands.run(show, env={"B": "2", "TZ": "Asia/Tokyo"}, cwd=tmp_path, timeout=30)
    assert json.loads(first.stdout) == [{"A": "1", "TZ": "America/New_York"}, "EST"]
    assert json.loads(second.stdout) == [{"B": "2", "TZ": "Asia/Tokyo"}, "JST"]
    inherited = commands.run(show, cwd=tmp_path, timeout=30)  # no env: this process's, as subprocess.run
    assert json.loads(inherited.stdout)[0] == dict(os.environ)


def test_a_command_reads_its_settings_from_its_own_environment(tmp_path):
    """The fork server imported the command line and the store but read no settings: each command
    finds the database its own FLOW45_DATABASE_URL names, whatever an earlier one was given."""
    for name in ("one", "two"):
        (tmp_path / name).mkdir()
        connect(f"sqlite:///{tmp_path / name / 'f.db'}", create=True)
        ensure_schema()
        database.close()
    runs = [sys.executable, "-m", "flow45", "workflows", "--json"]
    for name in ("one", "two", "one"):
        env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "FLOW45_DATABASE_URL": f"sqlite:///{tmp_path / name / 'f.db'}"}
        deployed = commands.run([sys.executable, "-m", "flow45", "deploy", str(ROOT / "examples" / "config")],
                                env=env, cwd=tmp_path, timeout=60) if name == "two" else None
        assert deployed is None or deployed.returncode == 0, deployed.stderr
        done = commands.run(runs, env=env, cwd=tmp_path, timeout=60)
        assert done.returncode == 0, done.stderr
        assert bool(json.loads(done.stdout)) == (name == "two"), (name, done.stdout)
    nowhere = commands.run(runs, env={"PATH": "/usr/bin:/bin", "FLOW45_DATABASE_URL": "postgresql://u:secret@db:port/x"},
                           cwd=tmp_path, timeout=60)
    assert nowhere.returncode == 1 and "postgresql://u:***@db:port/x" in nowhere.stderr, nowhere.stderr


def test_the_interpreter_it_forks_from_is_warm_and_read_no_setting(tmp_path):
    check = ("import sys\n"
             "from flow45 import messages, settings\n"
             "print(sorted(m for m in sys.argv[1:] if m not in sys.modules), settings._current,\n"
             "      messages.worker_messages.cache_info().currsize, messages.operator_reads.cache_info().currsize)")
    wanted = ["flow45.cli", "flow45.client.local", "flow45.store", "bridge.remote", "pika", "psycopg2", "peewee",
              "pydantic", "time_machine"]
    done = commands.run([sys.executable, "-c", check, *wanted], env={}, cwd=tmp_path, timeout=30)
    assert done.stdout == "[] None 1 1\n", done.stderr


RECORD_READS = """
import json, os, sys
read = set()
class Recording(type(os.environ)):
    def __getitem__(self, key):
        read.add(key)
        return super().__getitem__(key)
    def __contains__(self, key):
        read.add(key)
        return super().__contains__(key)
    def __iter__(self):
        read.add("(every variable)")
        return super().__iter__()
real = os.environ
os.environ = Recording(real._data, real.encodekey, real.decodekey, real.encodevalue, real.decodevalue)
import tests.harness.warm
os.environ = real
print(json.dumps(sorted(read)))
"""

# Read as they are imported, and harmless for a command: each with why.
ALLOWED_READS = {
    "PYTHONTZPATH": "zoneinfo's search path, read again in each command (commands.time_zone_from_environment)",
    "PYDANTIC_DISABLE_PLUGINS": "which pydantic plugins to load: none is installed (below), whatever it says",
    # sysconfig's paths, as zoneinfo asks it for TZPATH: the user's site-packages, used only as Python starts
    "HOME": "", "PYTHONUSERBASE": "", "_PYTHON_PROJECT_BASE": "", "_PYTHON_SYSCONFIGDATA_NAME": "",
}


def test_what_the_fork_server_imports_reads_no_environment_variable():
    """A module that read one as it was imported would keep, in every command, what the fork server read."""
    from importlib.metadata import entry_points

    done = subprocess.run([sys.executable, "-c", RECORD_READS], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert set(json.loads(done.stdout)) <= set(ALLOWED_READS), done.stdout
    assert not entry_points(group="pydantic")


def test_a_command_past_its_timeout_is_killed(tmp_path):
    argv = [sys.executable, "-c", "import os, time; print(os.getpid(), flush=True); time.sleep(60)"]
    started = time.monotonic()
    with pytest.raises(subprocess.TimeoutExpired) as timed_out:
        commands.run(argv, env={}, cwd=tmp_path, timeout=0.5)
    assert time.monotonic() - started < 10
    assert timed_out.value.cmd == argv and timed_out.value.timeout == 0.5
    with pytest.raises(ProcessLookupError):  # killed and reaped
        os.kill(int(timed_out.value.stdout), 0)


def test_a_pinned_command_starts_at_its_moment_and_ticks_on(tmp_path):
    show = "import datetime, time; a = datetime.datetime.now(datetime.timezone.utc); time.sleep(0.05); print(a, datetime.datetime.now(datetime.timezone.utc) > a)"
    done = commands.run([sys.executable, "-m", "tests.pinned", "2026-03-02T12:30:00Z", "-c", show],
                        env={"PYTHONPATH": str(ROOT)}, cwd=tmp_path, timeout=30)
    assert done.stdout.startswith("2026-03-02 12:30:00") and done.stdout.endswith(" True\n") and done.stderr == "", done.stderr
