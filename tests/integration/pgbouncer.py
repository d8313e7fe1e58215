"""A real PgBouncer (Debian's package) in front of the test database: scram-sha-256 with auth_query, started on a
free port for one test and stopped after it. scripts/test.sh installs the package when it is missing."""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psycopg.sql

from tests.harness import DbEnv, PgServer, free_port, strong_password, unavailable


@dataclass(frozen=True)
class Bouncer:
    host: str
    port: int
    log: Path

    def log_tail(self, lines: int = 30) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or next(
        (p for p in ("/usr/sbin/pgbouncer", "/usr/bin/pgbouncer") if os.access(p, os.X_OK)), None
    )
    if found is None:
        unavailable("PgBouncer", "install Debian's pgbouncer package (scripts/test.sh does when it may)")
    assert found is not None
    return found


def _auth_query_setup(db: DbEnv) -> tuple[str, str]:
    """An auth user and a SECURITY DEFINER lookup function in the test database (PgBouncer's documented way)."""
    assert isinstance(db.server, PgServer)
    auth_user, password = db.user("pgb_auth"), strong_password()
    ident = psycopg.sql.Identifier
    with db.server.connect() as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(ident(auth_user), psycopg.sql.Literal(password))
        )
        conn.execute(psycopg.sql.SQL("GRANT CONNECT ON DATABASE {} TO {}").format(ident(db.dbname), ident(auth_user)))
    with db.server.connect(db.dbname) as conn:
        conn.execute(
            "CREATE FUNCTION public.pgbouncer_get_auth(p_usename text) RETURNS TABLE(usename name, passwd text) "
            "LANGUAGE sql SECURITY DEFINER SET search_path = pg_catalog AS "
            "$$ SELECT usename, passwd FROM pg_catalog.pg_shadow WHERE usename = p_usename $$"
        )
        conn.execute("REVOKE ALL ON FUNCTION public.pgbouncer_get_auth(text) FROM PUBLIC")
        conn.execute(
            psycopg.sql.SQL("GRANT EXECUTE ON FUNCTION public.pgbouncer_get_auth(text) TO {}").format(ident(auth_user))
        )
    return auth_user, password


def _wait_listening(host: str, port: int, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"pgbouncer exited ({proc.returncode}): {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise AssertionError("pgbouncer did not start listening within 15 s")


@contextlib.contextmanager
def pgbouncer(db: DbEnv, *, pool_mode: str = "session", **settings: str) -> Iterator[Bouncer]:
    """``settings``: more [pgbouncer] settings (``server_lifetime="1"``...)."""
    binary = pgbouncer_binary()
    auth_user, auth_password = _auth_query_setup(db)
    port = free_port()
    workdir = Path(tempfile.mkdtemp(prefix="rotator-pgbouncer-"))
    run_as = None
    if os.geteuid() == 0:  # PgBouncer refuses to run as root: it switches to this user after start-up
        run_as = next((u for u in ("postgres", "nobody") if _user_exists(u)), None)
        assert run_as is not None, "no unprivileged user to run pgbouncer as"
    log = workdir / "pgbouncer.log"
    (workdir / "userlist.txt").write_text(f'"{auth_user}" "{auth_password}"\n')
    (workdir / "pgbouncer.ini").write_text(
        "\n".join(
            [
                "[databases]",
                f"{db.dbname} = host={db.host} port={db.port} dbname={db.dbname}",
                "[pgbouncer]",
                "listen_addr = 127.0.0.1",
                f"listen_port = {port}",
                "unix_socket_dir =",
                "auth_type = scram-sha-256",
                f"auth_file = {workdir / 'userlist.txt'}",
                f"auth_user = {auth_user}",
                "auth_query = SELECT usename, passwd FROM public.pgbouncer_get_auth($1)",
                f"pool_mode = {pool_mode}",
                "max_client_conn = 200",
                "default_pool_size = 20",
                "server_tls_sslmode = disable",
                f"logfile = {log}",
                f"pidfile = {workdir / 'pgbouncer.pid'}",
                *([f"user = {run_as}"] if run_as else []),
                *(f"{key} = {value}" for key, value in settings.items()),
                "",
            ]
        )
    )
    for path in (workdir, *workdir.iterdir()):
        path.chmod(0o700 if path.is_dir() else 0o600)
        if run_as:
            entry = pwd.getpwnam(run_as)
            os.chown(path, entry.pw_uid, entry.pw_gid)
    # Quiet (-q): it logs to the logfile; a pipe nobody reads would fill and block it.
    proc = subprocess.Popen(
        [binary, "-q", str(workdir / "pgbouncer.ini")], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        _wait_listening("127.0.0.1", port, proc, log)
        yield Bouncer("127.0.0.1", port, log)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        shutil.rmtree(workdir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True
