"""A throwaway RabbitMQ node for tests: own temp dir, node name and ports, gone after stop()."""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

START_TIMEOUT = 90.0
BIN_DIR = Path("/usr/lib/rabbitmq/bin")  # the real scripts; /usr/sbin wrappers switch to the rabbitmq user

_CONFIG = """\
# guest stays restricted to loopback (the default); we only listen on 127.0.0.1 anyway.
log.console = false
log.file.level = info
# Keep a nearly full CI disk from raising the disk alarm, which silently blocks publishers.
disk_free_limit.absolute = 1MB
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def find_binaries() -> tuple[Path, Path] | None:
    """(rabbitmq-server, rabbitmqctl) if they and Erlang are installed, else None."""
    server, ctl = BIN_DIR / "rabbitmq-server", BIN_DIR / "rabbitmqctl"
    if os.access(server, os.X_OK) and os.access(ctl, os.X_OK) and shutil.which("erl"):
        return server, ctl
    return None


def available() -> tuple[bool, str]:
    """(True, "") if a node can be started here, else (False, reason)."""
    if find_binaries() is None:
        return False, (f"RabbitMQ not found ({BIN_DIR}/rabbitmq-server, rabbitmqctl and erl on PATH); "
                       "install the 'rabbitmq-server' package")
    return True, ""


class _PortTaken(Exception):
    pass


class RabbitMQServer:
    """Start with start(), connect via amqp_url, always stop() (or use as a context manager)."""

    def __init__(self, timeout: float = START_TIMEOUT) -> None:
        self.timeout = timeout
        self.dir: Path | None = None
        self.nodename: str | None = None
        self.port: int | None = None
        self.dist_port: int | None = None
        self.proc: subprocess.Popen | None = None

    @property
    def amqp_url(self) -> str:
        assert self.port is not None, "server not started"
        return f"amqp://guest:guest@127.0.0.1:{self.port}/%2F"

    def start(self) -> RabbitMQServer:
        ok, reason = available()
        if not ok:
            raise RuntimeError(reason)
        for _ in range(3):
            try:
                self._start_once()
                return self
            except _PortTaken:
                # A port picked by free_port() was taken before the node bound it; try fresh ones.
                self.stop()
            except BaseException:
                self.stop()
                raise
        raise RuntimeError("RabbitMQ could not bind its ports (eaddrinuse) in 3 attempts")

    def stop(self) -> None:
        if self.proc is not None:
            if self.proc.poll() is None:
                try:
                    self.ctl("stop", check=False, timeout=30)
                    self.proc.wait(timeout=30)
                except subprocess.TimeoutExpired:
                    pass
            # The node's helpers (erl_child_setup, inet_gethost) share its process group.
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            self.proc.wait()
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = self.nodename = self.port = self.dist_port = None

    def restart(self, downtime: float = 0.0) -> None:
        """Stop and restart the RabbitMQ application in the same node (same data, same port).

        Clients are disconnected and the AMQP port refuses connections until it is back.
        """
        self.ctl("stop_app")
        time.sleep(downtime)
        self.ctl("start_app")
        self.ctl("await_startup")

    def ctl(self, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run rabbitmqctl against this node; returns the completed process (text output)."""
        assert self.nodename is not None, "server not started"
        proc = subprocess.run([str(BIN_DIR / "rabbitmqctl"), "-n", self.nodename, *args],
                              env=self._env(), cwd=self.dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout or self.timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed (exit {proc.returncode}): "
                               f"{proc.stdout}{proc.stderr}")
        return proc

    def __enter__(self) -> RabbitMQServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_once(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flow45-rmq-", dir="/tmp"))
        self.nodename = f"flow45test-{secrets.token_hex(4)}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        (self.dir / "rabbitmq.conf").write_text(_CONFIG)
        (self.dir / "enabled_plugins").write_text("[].\n")
        # Write the cookie ourselves: the server and rabbitmqctl would each create one if missing.
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self._launch()

    def kill(self) -> None:
        """kill -9 the node (the Erlang VM and its helpers): clients see their sockets die."""
        assert self.proc is not None, "server not started"
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()

    def start_again(self) -> None:
        """Start the killed node again: same name, ports and data (durable queues and messages)."""
        self._launch()

    def _launch(self) -> None:
        with open(self.dir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen([str(BIN_DIR / "rabbitmq-server")], env=self._env(), cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        deadline = time.monotonic() + self.timeout
        while True:
            if self.proc.poll() is not None:
                tail = self._log_tail()
                if "eaddrinuse" in tail:
                    raise _PortTaken
                raise RuntimeError(f"RabbitMQ node exited with {self.proc.returncode}\n{tail}")
            # await_startup fails fast while the node is not yet registered with epmd.
            left = deadline - time.monotonic()
            if left <= 0:
                raise RuntimeError(f"RabbitMQ node {self.nodename} not up after {self.timeout}s\n{self._log_tail()}")
            if self.ctl("await_startup", "--timeout", str(max(1, int(left))), check=False,
                        timeout=left + 10).returncode == 0:
                return
            time.sleep(0.2)

    def _env(self) -> dict[str, str]:
        assert self.dir is not None
        d = str(self.dir)
        env = {k: v for k, v in os.environ.items() if not k.startswith("RABBITMQ_")}
        env.update(
            HOME=d,
            RABBITMQ_NODENAME=self.nodename,
            RABBITMQ_NODE_IP_ADDRESS="127.0.0.1",
            RABBITMQ_NODE_PORT=str(self.port),
            RABBITMQ_DIST_PORT=str(self.dist_port),
            RABBITMQ_MNESIA_BASE=f"{d}/mnesia",
            RABBITMQ_LOG_BASE=f"{d}/log",
            RABBITMQ_CONFIG_FILE=f"{d}/rabbitmq.conf",
            RABBITMQ_ENABLED_PLUGINS_FILE=f"{d}/enabled_plugins",
            # Ignore the machine's /etc/rabbitmq/rabbitmq-env.conf and advanced.config.
            RABBITMQ_CONF_ENV_FILE=f"{d}/rabbitmq-env.conf",
            RABBITMQ_ADVANCED_CONFIG_FILE=f"{d}/advanced.config",
            # Erlang distribution on loopback only, like AMQP.
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}",
        )
        return env

    def _log_tail(self, lines: int = 40) -> str:
        assert self.dir is not None
        parts = []
        for f in [self.dir / "stdout.log", *sorted((self.dir / "log").glob("*.log"))]:
            try:
                text = "\n".join(f.read_text(errors="replace").splitlines()[-lines:])
            except OSError:
                continue
            parts.append(f"--- {f.name} (tail) ---\n{text}")
        return "\n".join(parts) or "(no log)"
