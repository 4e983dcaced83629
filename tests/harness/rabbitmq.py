"""A throwaway RabbitMQ node for tests: own temp dir, node name and ports, gone after stop()."""
from __future__ import annotations

import base64
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pika

from tests.harness.ports import free_port

START_TIMEOUT = 90.0
BIN_DIR = Path("/usr/lib/rabbitmq/bin")  # the real scripts; /usr/sbin wrappers switch to the rabbitmq user

_CONFIG = """\
# guest stays restricted to loopback (the default); we only listen on 127.0.0.1 anyway.
log.console = false
log.file.level = info
# Keep a nearly full CI disk from raising the disk alarm, which silently blocks publishers.
disk_free_limit.absolute = 1MB
"""
# The HTTP API answers in milliseconds where each rabbitmqctl call starts an Erlang VM (a second or more).
_MANAGEMENT = """\
management.tcp.ip = 127.0.0.1
management.tcp.port = {port}
# No statistics: the tests only list queues and set users, which need none.
management_agent.disable_metrics_collector = true
"""


def find_binaries() -> tuple[Path, Path] | None:
    """(rabbitmq-server, rabbitmqctl) if they and Erlang are installed, else None."""
    server, ctl = BIN_DIR / "rabbitmq-server", BIN_DIR / "rabbitmqctl"
    if os.access(server, os.X_OK) and os.access(ctl, os.X_OK) and shutil.which("erl"):
        return server, ctl
    return None


def has_management() -> bool:
    """True if the management plugin (the HTTP API) is installed beside the server."""
    return bool(list(BIN_DIR.parent.glob("lib/rabbitmq_server-*/plugins/rabbitmq_management-*")))


def available() -> tuple[bool, str]:
    """(True, "") if a node can be started here, else (False, reason)."""
    if find_binaries() is None:
        return False, (f"RabbitMQ not found ({BIN_DIR}/rabbitmq-server, rabbitmqctl and erl on PATH); "
                       "install the 'rabbitmq-server' package")
    return True, ""


def _group_alive(pgid: int) -> bool:
    """True while a process of group `pgid` runs (a zombie has let go of its sockets and files)."""
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[2] == str(pgid) and fields[0] != "Z":
            return True
    return False


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(2)
        return s.connect_ex(("127.0.0.1", port)) == 0


class _PortTaken(Exception):
    pass


class RabbitMQServer:
    """Start with start(), connect via amqp_url, always stop() (or use as a context manager).

    With `management` (when the plugin is installed) queues are listed and users, permissions and
    policies are set over the HTTP API instead of with rabbitmqctl; the node starts a little slower."""

    # (what, seconds) per node start and per rabbitmqctl call in this process: the suite's summary.
    timings: list[tuple[str, float]] = []

    def __init__(self, timeout: float = START_TIMEOUT, management: bool = False) -> None:
        self.timeout = timeout
        self.management = management and has_management()
        self.dir: Path | None = None
        self.nodename: str | None = None
        self.port: int | None = None
        self.dist_port: int | None = None
        self.http_port: int | None = None
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
        """Kill the node and remove its directory. No graceful stop: its data goes with it, and
        `rabbitmqctl stop` would start an Erlang VM and wait for the node's shutdown (seconds)."""
        if self.proc is not None:
            self.kill()
            self.proc = None
        if self.dir is not None:
            shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = self.nodename = self.port = self.dist_port = self.http_port = None

    def restart(self, downtime: float = 0.0) -> None:
        """Stop and restart the RabbitMQ application in the same node (same data, same port).

        Clients are disconnected and the AMQP port refuses connections until it is back.
        """
        self.ctl("stop_app")
        time.sleep(downtime)
        self.start_app()

    def start_app(self) -> None:
        """Start the node's RabbitMQ application after `stop_app`; returns once it serves AMQP."""
        self.ctl("start_app")  # returns once the application has started
        self.await_serving()

    def serving(self) -> bool:
        """True if the node accepts an AMQP login as guest now (a refused or unanswered try: False)."""
        if not _port_open(self.port):  # a closed port: no try with pika, which logs each refusal as an error
            return False
        params = pika.URLParameters(self.amqp_url)
        params.connection_attempts, params.retry_delay = 1, 0
        params.socket_timeout = params.stack_timeout = params.blocked_connection_timeout = 5
        try:
            connection = pika.BlockingConnection(params)
        except pika.exceptions.AMQPError:
            return False
        # The node names its cluster in the handshake: another node that took our port first answers too.
        name = connection._impl.server_properties.get("cluster_name") or b""
        connection.close()
        name = name.decode() if isinstance(name, bytes) else str(name)
        return name.split("@")[0] == self.nodename.split("@")[0]  # the host part may be expanded

    def await_serving(self, timeout: float | None = None) -> None:
        """Wait until the node accepts an AMQP login (and answers HTTP, with the management API): the
        listeners start last in a node's boot, after its plugins. A node that dies or never answers
        fails with its log's tail."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while not (self.serving() and (self.http_port is None or self._http_answers())):
            if self.proc is not None and self.proc.poll() is not None:
                tail = self._log_tail()
                if "eaddrinuse" in tail:
                    raise _PortTaken
                raise RuntimeError(f"RabbitMQ node {self.nodename} exited with {self.proc.returncode}\n{tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"RabbitMQ node {self.nodename} not serving AMQP on port {self.port} after "
                                   f"{timeout or self.timeout:g}s\n{self._log_tail()}")
            time.sleep(0.1)

    def _http_answers(self) -> bool:
        try:
            self.http("GET", "/api/whoami", timeout=5)
        except (OSError, RuntimeError):
            return False
        return True

    def ctl(self, *args: str, check: bool = True, timeout: float | None = None) -> subprocess.CompletedProcess:
        """Run rabbitmqctl against this node; returns the completed process (text output)."""
        assert self.nodename is not None, "server not started"
        started = time.monotonic()
        proc = subprocess.run([str(BIN_DIR / "rabbitmqctl"), "-n", self.nodename, *args],
                              env=self._env(), cwd=self.dir, stdin=subprocess.DEVNULL,
                              capture_output=True, text=True, timeout=timeout or self.timeout)
        self.timings.append((f"rabbitmqctl {args[0]}", time.monotonic() - started))
        if check and proc.returncode != 0:
            raise RuntimeError(f"rabbitmqctl {' '.join(args)} failed (exit {proc.returncode}): "
                               f"{proc.stdout}{proc.stderr}")
        return proc

    def queues(self) -> list[str]:
        """The names of the queues in the default vhost."""
        if self.management:
            return [q["name"] for q in self.http("GET", "/api/queues/%2F?columns=name")]
        return self.ctl("list_queues", "-q", "name").stdout.split()

    def close_user_connections(self, user: str, reason: str) -> None:
        """Close every client connection of `user` (as `rabbitmqctl close_all_user_connections`)."""
        if not self.management:
            self.ctl("close_all_user_connections", user, reason)
            return
        for connection in self.http("GET", f"/api/connections/username/{urllib.parse.quote(user, safe='')}"):
            try:
                self.http("DELETE", f"/api/connections/{urllib.parse.quote(connection['name'], safe='')}",
                          headers={"X-Reason": reason})
            except RuntimeError as exc:
                if ": 404 " not in str(exc):  # closed meanwhile
                    raise

    def apply(self, argv: list[str]) -> None:
        """Run a rabbitmqctl command (as `flow45 bridge setup-broker` prints them); over the HTTP API
        when it has an equivalent, else with rabbitmqctl."""
        if self.management and argv[0] == "set_user_tags" and len(argv) >= 2 and not argv[1].startswith("-"):
            self._set_tags(argv[1], argv[2:])
            return
        request = self._as_http(argv) if self.management else None
        if request is None:
            self.ctl(*argv)
        else:
            self.http(*request)

    def _set_tags(self, user: str, tags: list[str]) -> None:
        """`set_user_tags` over HTTP: the user is put again, with its password's hash as it was."""
        path = f"/api/users/{urllib.parse.quote(user, safe='')}"
        found = self.http("GET", path)
        self.http("PUT", path, {"password_hash": found["password_hash"],
                                "hashing_algorithm": found["hashing_algorithm"], "tags": ",".join(tags)})

    def http(self, method: str, path: str, body: dict | None = None, headers: dict[str, str] | None = None,
             timeout: float = 30):
        """One call to the management API as guest; its JSON answer (None when empty)."""
        assert self.http_port is not None, "no management API on this node"
        request = urllib.request.Request(
            f"http://127.0.0.1:{self.http_port}{path}", method=method,
            data=None if body is None else json.dumps(body).encode(),
            headers={"Authorization": "Basic " + base64.b64encode(b"guest:guest").decode(),
                     "Content-Type": "application/json", **(headers or {})},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as answer:
                text = answer.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"management API {method} {path}: {e.code} {e.read()[:500]!r}") from None
        return json.loads(text) if text else None

    @staticmethod
    def _as_http(argv: list[str]) -> tuple[str, str, dict | None] | None:
        """The HTTP API call doing what rabbitmqctl `argv` does, for the commands the tests use."""
        command, rest = argv[0], list(argv[1:])
        vhost = "/"
        if rest[:1] == ["-p"]:
            vhost, rest = rest[1], rest[2:]
        apply_to = "all"
        if command == "set_policy" and rest[:1] == ["--apply-to"]:
            apply_to, rest = rest[1], rest[2:]
        if any(arg.startswith("-") for arg in rest):
            return None  # an option not mapped here
        quote = lambda text: urllib.parse.quote(text, safe="")  # noqa: E731
        v = quote(vhost)
        if command == "delete_user" and len(rest) == 1:
            return "DELETE", f"/api/users/{quote(rest[0])}", None
        if command == "add_user" and len(rest) == 2:
            return "PUT", f"/api/users/{quote(rest[0])}", {"password": rest[1], "tags": ""}
        if command == "set_permissions" and len(rest) == 4:
            user, configure, write, read = rest
            return "PUT", f"/api/permissions/{v}/{quote(user)}", {"configure": configure, "write": write, "read": read}
        if command == "set_topic_permissions" and len(rest) == 4:
            user, exchange, write, read = rest
            return "PUT", f"/api/topic-permissions/{v}/{quote(user)}", {"exchange": exchange, "write": write, "read": read}
        if command == "set_policy" and len(rest) == 3:
            name, pattern, definition = rest
            return "PUT", f"/api/policies/{v}/{quote(name)}", {
                "pattern": pattern, "definition": json.loads(definition), "apply-to": apply_to}
        return None

    def __enter__(self) -> RabbitMQServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _start_once(self) -> None:
        self.dir = Path(tempfile.mkdtemp(prefix="flow45-rmq-", dir="/tmp"))
        self.nodename = f"flow45test-{secrets.token_hex(4)}@localhost"
        self.port, self.dist_port = free_port(), free_port()
        config = _CONFIG
        if self.management:
            self.http_port = free_port()
            config += _MANAGEMENT.format(port=self.http_port)
        (self.dir / "rabbitmq.conf").write_text(config + self._extra_config())
        (self.dir / "enabled_plugins").write_text("[rabbitmq_management].\n" if self.management else "[].\n")
        # Write the cookie ourselves: the server and rabbitmqctl would each create one if missing.
        cookie = self.dir / ".erlang.cookie"
        cookie.write_text(secrets.token_hex(16).upper())
        cookie.chmod(0o400)
        self._launch()

    def _extra_config(self) -> str:
        return ""

    def kill(self) -> None:
        """kill -9 the node (the Erlang VM and its helpers, which share its process group): clients
        see their sockets die."""
        assert self.proc is not None, "server not started"
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        self.proc.wait()
        # proc is the rabbitmq-server script; the VM it started (its child, holding the ports) may
        # take a moment longer to die, and may stay a zombie (without its sockets) if nothing reaps it.
        deadline = time.monotonic() + 30
        while _group_alive(self.proc.pid) and time.monotonic() < deadline:
            time.sleep(0.05)

    def start_again(self) -> None:
        """Start the killed node again: same name, ports and data (durable queues and messages)."""
        self._launch()

    def _launch(self) -> None:
        started = time.monotonic()
        with open(self.dir / "stdout.log", "ab") as out:
            self.proc = subprocess.Popen([str(BIN_DIR / "rabbitmq-server")], env=self._env(), cwd=self.dir,
                                         stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        # Polled over AMQP, not with `rabbitmqctl await_startup`: each rabbitmqctl call starts an Erlang
        # VM, seconds on a loaded machine.
        self.await_serving()
        self.timings.append(("start", time.monotonic() - started))

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
