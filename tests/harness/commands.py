"""`python -m MODULE ARGS` (or `-c CODE`) as subprocess.run would run it, in a process forked from a warm
interpreter: about 20 ms of CPU instead of the 0.4 s a fresh interpreter spends starting and importing
the command line, pydantic, peewee, pika and the store before it does a command's work.

    done = commands.run([sys.executable, "-m", "flow45", "runs"], env=env, cwd=tmp_path, timeout=60)

is `subprocess.run(same, env=env, cwd=tmp_path, capture_output=True, text=True, timeout=60)`, argv as
`pinned.command()` gives it included. The warm interpreter is multiprocessing's fork server, a fresh
interpreter (no fork of the test process: no test's state reaches it) that imported tests.harness.warm
(see there what, and why nothing of it reads the environment). Each command is a fork of it, made
into what a fresh `python -m` process would be: exactly the environment given (TZ and zoneinfo's
path read again), the cwd, sys.argv and sys.path[0] as Python sets them, stdin from `input` or empty,
stdout and stderr on files at the descriptor level (what C code and child processes write included),
the exit code as a process's, and the interpreter's own shutdown (threads joined, atexit handlers,
the standard streams flushed).

What differs from a fresh process: modules are already imported (a module that read the environment
as it was imported would keep the fork server's reading; tests.harness.warm imports none such), the
hash seed is the fork server's, and the process is the fork server's child, not the test's. A
grandchild still writing after the command's process exits is not waited for (subprocess.run waits
for the pipes to close). Commands that run until stopped, and tests of how the process itself starts
(its imports, its signals), take subprocess."""

from __future__ import annotations

import atexit
import io
import locale
import os
import pickle
import runpy
import select
import signal
import subprocess
import sys
import tempfile
import threading
import types
from multiprocessing import forkserver, resource_tracker

# The fork server's internals this uses are Python 3.11 to 3.13's (3.14 authenticates its connections):
# elsewhere each command is a fresh process, as subprocess.run starts it.
WARM = sys.platform == "linux" and (3, 11) <= sys.version_info[:2] <= (3, 13)
_started = threading.Lock()
_preloaded = False
# The fork server's own sys.path, less its '' (it runs as `python -c`) and its PYTHONPATH: what a fresh
# interpreter's path holds after its first entry and the PYTHONPATH it is given.
_INTERPRETER_PATH = [p for p in sys.path if p and p not in os.environ.get("PYTHONPATH", "").split(os.pathsep)]


def run(argv: list[str], *, cwd=None, env: dict[str, str] | None = None, input: str | None = None,
        timeout: float | None = None) -> subprocess.CompletedProcess:
    """subprocess.run(argv, cwd=cwd, env=env, input=input, timeout=timeout, capture_output=True,
    text=True), argv being [sys.executable, "-m", MODULE, *args] or [sys.executable, "-c", CODE, *args]."""
    if len(argv) < 3 or argv[0] != sys.executable or argv[1] not in ("-m", "-c"):
        raise ValueError(f"not [sys.executable, '-m' | '-c', ...]: {argv!r}")
    if not WARM:
        return subprocess.run(argv, cwd=cwd, env=env, input=input, timeout=timeout, capture_output=True, text=True)
    command = _Command(list(argv[1:]), dict(os.environ if env is None else env), os.path.abspath(cwd or os.getcwd()))
    with tempfile.TemporaryFile() as stdin, tempfile.TemporaryFile() as stdout, tempfile.TemporaryFile() as stderr:
        if input is not None:
            stdin.write(input.encode(locale.getpreferredencoding(False)))
            stdin.seek(0)
        returncode = _fork(command, [stdin.fileno(), stdout.fileno(), stderr.fileno()], argv, timeout, stdout, stderr)
        return subprocess.CompletedProcess(list(argv), returncode, _text(stdout), _text(stderr))


def _fork(command: _Command, fds: list[int], argv: list[str], timeout: float | None, stdout, stderr) -> int:
    """Run `command` in a child of the fork server with `fds` as its stdin, stdout and stderr; its exit code."""
    _preload()
    status, data = forkserver.connect_to_new_process(fds)
    try:
        with open(data, "wb") as to_child:
            pickle.dump({}, to_child)  # what spawn.prepare() sets up in the child: nothing
            pickle.dump(command, to_child)
        pid = forkserver.read_signed(status)
        finished = False
        try:
            finished = bool(select.select([status], [], [], timeout)[0])
        finally:
            if not finished:  # timed out, or the test was interrupted: killed, as subprocess.run does
                os.kill(pid, signal.SIGKILL)
                forkserver.read_signed(status)
        if not finished:
            raise subprocess.TimeoutExpired(argv, timeout, output=_bytes(stdout), stderr=_bytes(stderr))
        return forkserver.read_signed(status)
    finally:
        os.close(status)


def _preload() -> None:
    """The fork server imports tests.harness.warm before it forks anything: set once, before it starts."""
    global _preloaded
    with _started:
        if not _preloaded:
            forkserver.set_forkserver_preload(["tests.harness.commands", "tests.harness.warm"])
            # Waited for as this process exits (multiprocessing leaves them to exit by themselves): their
            # CPU time, and their commands', counts in this process's children's, as a subprocess's does.
            atexit.register(forkserver._forkserver._stop)
            atexit.register(resource_tracker._resource_tracker._stop)
            _preloaded = True


def _bytes(file) -> bytes | None:
    file.seek(0)
    return file.read() or None


def _text(file) -> str:
    """As text=True decodes: the locale's encoding, universal newlines."""
    file.seek(0)
    text = file.read().decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


class _Command:
    """What the child runs; spawn._main in the fork server's child calls _bootstrap."""

    def __init__(self, argv: list[str], env: dict[str, str], cwd: str) -> None:
        self.argv, self.env, self.cwd = argv, env, cwd

    def _bootstrap(self, parent_sentinel: int) -> None:
        os.close(parent_sentinel)
        # The fork server's pipes came over a socket, inheritable: a process the command starts (os.system)
        # would hold them, and the fork server would outlive this test process waiting for it.
        for fd in (forkserver._forkserver._forkserver_alive_fd, resource_tracker._resource_tracker._fd):
            os.set_inheritable(fd, False)
        stdio = forkserver.get_inherited_fds()
        for target, fd in enumerate(stdio):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(self.cwd)
        os.environ.clear()  # in place: putenv/unsetenv, so C code and child processes see it too
        os.environ.update(self.env)
        time_zone_from_environment()
        _standard_streams(self.env)
        os._exit(_run_as_main(self.argv, self.env))


def time_zone_from_environment() -> None:
    """TZ, and zoneinfo's search path (PYTHONTZPATH), as a fresh process reads them when it starts."""
    import time

    time.tzset()
    if "zoneinfo" in sys.modules:
        sys.modules["zoneinfo"].reset_tzpath()


def _standard_streams(env: dict[str, str]) -> None:
    """sys.stdin/stdout/stderr on descriptors 0-2, as Python makes them for files (not a terminal)."""
    encoding, _, errors = env.get("PYTHONIOENCODING", "").partition(":")
    given_locale = env.get("LC_ALL") or env.get("LC_CTYPE") or env.get("LANG") or "C"
    errors = errors or ("surrogateescape" if given_locale in ("C", "POSIX") or env.get("PYTHONUTF8") == "1" else "strict")
    encoding = encoding or "utf-8"
    unbuffered = bool(env.get("PYTHONUNBUFFERED"))

    def stream(fd: int, mode: str, errors: str, line_buffering: bool = False) -> io.TextIOWrapper:
        raw = io.open(fd, mode + "b", buffering=0 if unbuffered and mode == "w" else -1, closefd=False)
        return io.TextIOWrapper(raw, encoding, errors, newline="\n", line_buffering=line_buffering,
                                write_through=unbuffered and mode == "w")

    sys.stdin = sys.__stdin__ = stream(0, "r", errors)
    sys.stdout = sys.__stdout__ = stream(1, "w", errors)
    sys.stderr = sys.__stderr__ = stream(2, "w", "backslashreplace", line_buffering=True)


def _run_as_main(argv: list[str], env: dict[str, str]) -> int:
    """`python -m MODULE ARGS` or `python -c CODE ARGS` from here on, to the exit code Python would give."""
    how, what, rest = argv[0], argv[1], argv[2:]
    sys.argv = [how, *rest]  # runpy puts the module's path in place of -m, as Python does
    first = [] if env.get("PYTHONSAFEPATH") else [os.getcwd() if how == "-m" else ""]
    sys.path[:] = first + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p] + _INTERPRETER_PATH
    main = sys.modules["__main__"] = types.ModuleType("__main__")
    try:
        if how == "-m":
            sys.modules.pop(what, None)  # warm (tests.pinned): run afresh as __main__, as runpy expects
            runpy._run_module_as_main(what)  # what `python -m` calls
        else:
            exec(compile(what, "<string>", "exec"), main.__dict__)
        code = 0
    except SystemExit as exc:
        code = _exit_code(exc.code)
    except BaseException as exc:
        exc.__traceback__ = exc.__traceback__.tb_next  # from runpy (or <string>) on, as Python prints it
        sys.excepthook(type(exc), exc, exc.__traceback__)
        code = -signal.SIGINT if isinstance(exc, KeyboardInterrupt) else 1
    return _shut_down(code)


def _exit_code(code) -> int:
    if code is None:
        return 0
    if isinstance(code, int):
        return code
    print(code, file=sys.stderr)
    return 1


def _shut_down(code: int) -> int:
    """What the interpreter does as it exits: wait for threads, run atexit handlers, flush stdout and stderr."""
    threading._shutdown()
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except Exception:
            code = 120
    if code == -signal.SIGINT:  # Python ends by SIGINT itself after an uncaught KeyboardInterrupt
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        os.kill(os.getpid(), signal.SIGINT)
    return code
