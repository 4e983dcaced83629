"""A throwaway PostgreSQL whose WAL flushes take an extra, fixed delay: the benchmarks' slow disk.

The delay comes from a small LD_PRELOAD library (`slow_fsync.c`, compiled here with the system's C
compiler), loaded into the server's processes: every fdatasync or fsync of a WAL file sleeps first.
With wal_sync_method = fdatasync every commit's flush goes through it, so a bare commit costs the
disk's own flush plus the delay; concurrent commits still share one flush (PostgreSQL's group commit),
as they would on a slow disk.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.harness.postgres import PostgresServer

SOURCE = Path(__file__).resolve().parent / "slow_fsync.c"


def build_library() -> Path:
    """Compile the library into a temporary folder the server's user can read; returns its path."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        raise SystemExit("--fsync-delay-ms needs a C compiler (cc or gcc) to build benchmarks/slow_fsync.c")
    folder = Path(tempfile.mkdtemp(prefix="flow45-slow-fsync-"))
    folder.chmod(0o755)  # PostgreSQL may run as another user
    library = folder / "slow_fsync.so"
    result = subprocess.run([compiler, "-shared", "-fPIC", "-O2", "-o", str(library), str(SOURCE), "-ldl"],
                            capture_output=True, text=True)
    if result.returncode != 0:
        raise SystemExit(f"cannot build {SOURCE.name}: {result.stderr.strip()}")
    library.chmod(0o755)
    return library


def postgres_server(delay_ms: float | None, library: Path | None = None) -> PostgresServer:
    """A durable server (fsync on), its WAL flushes `delay_ms` slower (None: the disk as it is)."""
    if delay_ms is None:
        return PostgresServer(durable=True)
    if library is None:
        library = build_library()
    return PostgresServer(durable=True, conf="wal_sync_method = fdatasync",
                          env={"LD_PRELOAD": str(library), "FLOW45_FSYNC_DELAY_US": str(round(delay_ms * 1000))})
