"""A throwaway PostgreSQL cluster for tests: own temp dir, own port, gone after stop()."""
from __future__ import annotations

import glob
import os
import pwd
import re
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path

import psycopg2
from psycopg2 import sql

from tests.harness.ports import free_port

START_TIMEOUT = 60.0

_SETTINGS = """
listen_addresses = '127.0.0.1'
unix_socket_directories = '{socket_dir}'
max_connections = 200
"""
# Tests trade durability for speed; benchmarks keep PostgreSQL's defaults (fsync on).
_FAST = """
fsync = off
synchronous_commit = off
full_page_writes = off
"""


def _version_key(bindir: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.findall(r"\d+", Path(bindir).parent.name))


def find_binaries() -> Path | None:
    """The directory holding initdb and pg_ctl: pg_config's bindir, else the newest Debian one."""
    candidates = []
    if pg_config := shutil.which("pg_config"):
        try:
            out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10)
            candidates.append(out.stdout.strip())
        except (OSError, subprocess.SubprocessError):
            pass
    # Debian's pg_config (libpq-dev) may name a bindir whose server package is not installed.
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version_key, reverse=True)
    for d in candidates:
        if d and all(os.access(Path(d, b), os.X_OK) for b in ("initdb", "pg_ctl", "postgres")):
            return Path(d)
    return None


def _children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    return fields[0] != "Z"


def available() -> tuple[bool, str]:
    """(True, "") if a server can be started here, else (False, reason)."""
    if find_binaries() is None:
        return False, ("PostgreSQL server binaries (initdb, pg_ctl) not found via pg_config "
                       "or /usr/lib/postgresql/*/bin; install the 'postgresql' package")
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            return False, "running as root needs 'runuser' to start PostgreSQL as the postgres user"
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return False, "running as root needs a 'postgres' system user (initdb refuses root)"
    return True, ""


class PostgresServer:
    """Start with start(), connect via url_for(dbname), always stop() (or use as a context manager)."""

    # (what, seconds) per server start in this process: the suite's summary.
    timings: list[tuple[str, float]] = []

    def __init__(self, timeout: float = START_TIMEOUT, durable: bool = False, conf: str = "",
                 env: dict[str, str] | None = None) -> None:
        """`conf`: more postgresql.conf lines; `env`: more environment for the server's processes
        (the benchmarks' slowed-down disk)."""
        self.timeout = timeout
        self.durable = durable
        self.conf = conf
        self.env = env
        self.as_root = os.geteuid() == 0
        self.user = "postgres" if self.as_root else pwd.getpwuid(os.geteuid()).pw_name
        self.bindir: Path | None = None
        self.dir: Path | None = None
        self.port: int | None = None

    @property
    def data_dir(self) -> Path:
        assert self.dir is not None, "server not started"
        return self.dir / "data"

    @property
    def log_file(self) -> Path:
        assert self.dir is not None, "server not started"
        return self.dir / "server.log"

    def url_for(self, dbname: str = "postgres") -> str:
        assert self.port is not None, "server not started"
        return f"postgresql://{self.user}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> PostgresServer:
        ok, reason = available()
        if not ok:
            raise RuntimeError(reason)
        self.bindir = find_binaries()
        started = time.monotonic()
        # Under /tmp with 0755 so that the postgres user can reach it when we are root.
        self.dir = Path(tempfile.mkdtemp(prefix="flow45-pg-", dir="/tmp"))
        try:
            self.dir.chmod(0o755)
            if self.as_root:
                pw = pwd.getpwnam("postgres")
                os.chown(self.dir, pw.pw_uid, pw.pw_gid)
            self._pg("initdb", "-D", self.data_dir, "-U", self.user, "--auth=trust",
                     "--encoding=UTF8", "--locale=C", "--no-sync")
            with open(self.data_dir / "postgresql.conf", "a") as f:
                f.write(_SETTINGS.format(socket_dir=self.dir) + ("" if self.durable else _FAST) + self.conf + "\n")
            for attempt in range(3):
                # Reserved among test processes, but something else on the machine may hold it.
                self.port = free_port()
                self.log_file.unlink(missing_ok=True)
                proc = self._pg("pg_ctl", "start", "-D", self.data_dir, "-l", self.log_file, "-w",
                                "-t", str(int(self.timeout)), "-o", f"-p {self.port}", check=False)
                if proc.returncode == 0:
                    break
                if "Address already in use" not in self._log_tail() or attempt == 2:
                    raise RuntimeError(f"PostgreSQL did not start (pg_ctl exit {proc.returncode}): "
                                       f"{proc.stdout}{proc.stderr}\n--- server log tail ---\n{self._log_tail()}")
            self._await_connect()
        except BaseException:
            self.stop()
            raise
        self.timings.append(("start", time.monotonic() - started))
        return self

    def stop(self) -> None:
        if self.dir is None:
            return
        pid_file = self.data_dir / "postmaster.pid"
        if pid_file.exists():
            proc = self._pg("pg_ctl", "stop", "-D", self.data_dir, "-m", "immediate", "-w", check=False)
            if proc.returncode != 0 and pid_file.exists():
                try:
                    os.kill(int(pid_file.read_text().split()[0]), signal.SIGKILL)
                except (OSError, ValueError, IndexError):
                    pass
        shutil.rmtree(self.dir, ignore_errors=True)
        self.dir = self.port = None

    # ---- faults (tests/faults) ----------------------------------------------------------------

    def postmaster_pid(self) -> int:
        return int((self.data_dir / "postmaster.pid").read_text().split()[0])

    def shut_down(self, mode: str = "fast") -> None:
        """`pg_ctl stop -m fast|immediate`: fast ends sessions cleanly, immediate like a power cut
        (crash recovery at the next start)."""
        self._pg("pg_ctl", "stop", "-D", self.data_dir, "-m", mode, "-w")

    def crash(self) -> None:
        """kill -9 the postmaster; its backends notice and exit (killed too if they linger)."""
        pid = self.postmaster_pid()
        children = _children(pid)
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and any(_alive(c) for c in [pid, *children]):
            time.sleep(0.05)
        for child in children:
            if _alive(child):
                os.kill(child, signal.SIGKILL)
        # A killed postmaster may stay a zombie when nothing reaps orphans here; PostgreSQL would take
        # its lock files for a live server's, so they go as a crashed server's would on a real machine.
        (self.data_dir / "postmaster.pid").unlink(missing_ok=True)
        (self.dir / f".s.PGSQL.{self.port}.lock").unlink(missing_ok=True)

    def start_again(self) -> None:
        """Start the stopped or crashed server on the same port and data."""
        self._pg("pg_ctl", "start", "-D", self.data_dir, "-l", self.log_file, "-w",
                 "-t", str(int(self.timeout)), "-o", f"-p {self.port}")
        self._await_connect()

    def restart(self, mode: str = "fast", downtime: float = 0.0) -> None:
        self.shut_down(mode)
        time.sleep(downtime)
        self.start_again()

    def create_database(self, name: str) -> str:
        """Create database `name`; returns its URL."""
        self._admin(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return self.url_for(name)

    def add_password_user(self, name: str, password: str) -> None:
        """A login role that must give `password` over TCP (everyone else is trusted)."""
        self._admin(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(sql.Identifier(name), sql.Literal(password)))
        hba = self.data_dir / "pg_hba.conf"
        hba.write_text(f"host all {name} 127.0.0.1/32 scram-sha-256\n" + hba.read_text())  # first match wins
        self._admin(sql.SQL("SELECT pg_reload_conf()"))

    def drop_database(self, name: str) -> None:
        """Drop database `name` if present, disconnecting any remaining sessions."""
        self._admin(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))

    def __enter__(self) -> PostgresServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _admin(self, statement: sql.Composable) -> None:
        conn = psycopg2.connect(self.url_for("postgres"))
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement)
        finally:
            conn.close()

    def _pg(self, program: str, *args: object, check: bool = True) -> subprocess.CompletedProcess:
        assert self.bindir is not None and self.dir is not None
        cmd = [str(self.bindir / program), *map(str, args)]
        if self.as_root:  # initdb and pg_ctl refuse to run as root
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        # cwd: the postgres user may not be able to enter ours (e.g. /root).
        env = {**os.environ, **self.env} if self.env else None
        proc = subprocess.run(cmd, cwd=self.dir, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, timeout=self.timeout + 30, env=env)
        if check and proc.returncode != 0:
            raise RuntimeError(f"{program} failed (exit {proc.returncode}): {proc.stdout}{proc.stderr}")
        return proc

    def _await_connect(self) -> None:
        deadline = time.monotonic() + self.timeout
        while True:
            try:
                psycopg2.connect(self.url_for("postgres"), connect_timeout=5).close()
                return
            except psycopg2.OperationalError as e:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"PostgreSQL on port {self.port} not accepting connections: {e}\n"
                                       f"--- server log tail ---\n{self._log_tail()}") from e
                time.sleep(0.1)

    def _log_tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_file.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no server log)"
