"""Test harness: real database servers and a moto server, each test with its own names, cleaned up.

Databases come from env DSNs (``ROTATOR_TEST_POSTGRES_DSN``, ``ROTATOR_TEST_MYSQL_DSN``), else from
testcontainers when Docker is available. Under ``CI=true`` a missing database fails the test; outside CI
it is skipped, loudly.

PostgreSQL with ``trust`` auth accepts any password, which would make every login check meaningless.
The harness therefore makes the server enforce scram-sha-256 for every user but its own superuser
(a marked block at the top of pg_hba.conf, then ``pg_reload_conf()``), and proves it with a probe:
a wrong password must be refused, or the harness fails.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import string
import warnings
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlparse

import boto3
import psycopg
import pymysql
import pytest

from rotator.db.mysql import marker_role

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
HBA_BEGIN = "# BEGIN rotator-test-harness: scram-sha-256 for every user but the harness superuser"
HBA_END = "# END rotator-test-harness"


def unavailable(what: str, how: str) -> None:
    message = f"{what} is not available: {how}"
    if IN_CI:
        pytest.fail(message + " (CI=true: integration tests never skip)", pytrace=False)
    warnings.warn("SKIPPING INTEGRATION TEST: " + message, stacklevel=2)
    pytest.skip("SKIPPED LOUDLY: " + message)


def new_name(prefix: str = "rt") -> str:
    return f"{prefix}_{secrets.token_hex(4)}"


def strong_password(length: int = 32) -> str:
    alphabet = string.ascii_letters + string.digits + "-_.~"
    return "".join(secrets.choice(alphabet) for _ in range(length))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def docker_available() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        import docker  # type: ignore[import-untyped]

        docker.from_env().ping()
        return True
    except Exception:
        return False


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class PgServer:
    host: str
    port: int
    superuser: str
    superpassword: str | None
    container: Any = None

    def connect(self, dbname: str = "postgres") -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=self.host,
            port=self.port,
            user=self.superuser,
            password=self.superpassword,
            dbname=dbname,
            autocommit=True,
            connect_timeout=5,
            sslmode="disable",
        )

    def login_works(self, user: str, password: str, dbname: str = "postgres") -> bool:
        try:
            psycopg.connect(
                host=self.host,
                port=self.port,
                user=user,
                password=password,
                dbname=dbname,
                connect_timeout=5,
                sslmode="disable",
            ).close()
            return True
        except psycopg.OperationalError:
            return False


def _enforce_scram(server: PgServer) -> None:
    with server.connect() as conn:
        hba_path = conn.execute("SHOW hba_file").fetchone()[0]  # type: ignore[index]
        path = Path(hba_path)
        if os.access(path, os.W_OK):
            original = path.read_text()
            if HBA_BEGIN not in original:
                lines = [HBA_BEGIN]
                if not server.superpassword:
                    lines += [
                        f"host all {server.superuser} 127.0.0.1/32 trust",
                        f"host all {server.superuser} ::1/128 trust",
                    ]
                lines += ["host all all 127.0.0.1/32 scram-sha-256", "host all all ::1/128 scram-sha-256", HBA_END]
                path.write_text("\n".join(lines) + "\n" + original)
            conn.execute("SELECT pg_reload_conf()")
        # Prove it whatever we did: a wrong password must be refused.
        probe, good = new_name("rt_probe"), strong_password()
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                psycopg.sql.Identifier(probe), psycopg.sql.Literal(good)
            )
        )
        try:
            if server.login_works(probe, good + "x"):
                pytest.fail(
                    f"PostgreSQL at {server.host}:{server.port} accepts a wrong password (trust auth) and "
                    "pg_hba.conf is not writable here: configure scram-sha-256 for non-superusers",
                    pytrace=False,
                )
            if not server.login_works(probe, good):
                pytest.fail("PostgreSQL refused a correct scram-sha-256 password: check pg_hba.conf")
        finally:
            conn.execute(psycopg.sql.SQL("DROP ROLE {}").format(psycopg.sql.Identifier(probe)))


@contextlib.contextmanager
def pg_server_from_env() -> Iterator[PgServer | None]:
    dsn = os.environ.get("ROTATOR_TEST_POSTGRES_DSN")
    server: PgServer | None = None
    if dsn:
        u = urlparse(dsn)
        server = PgServer(
            host=u.hostname or "127.0.0.1",
            port=u.port or 5432,
            superuser=unquote(u.username or "postgres"),
            superpassword=unquote(u.password) if u.password else None,
        )
    elif docker_available():
        from testcontainers.postgres import PostgresContainer

        container = (
            PostgresContainer("postgres:16", password="harness-super")
            .with_env("POSTGRES_INITDB_ARGS", "--auth-host=scram-sha-256")
            .with_env("POSTGRES_HOST_AUTH_METHOD", "scram-sha-256")
        )
        container.start()
        server = PgServer(
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(5432)),
            superuser="test",
            superpassword="harness-super",
            container=container,
        )
    if server is None:
        yield None
        return
    try:
        with server.connect():
            pass
    except psycopg.OperationalError as exc:
        raise RuntimeError(f"cannot reach PostgreSQL at {server.host}:{server.port}: {exc}") from None
    _enforce_scram(server)
    # The pg_hba.conf block stays after the session (it is idempotent and marked): restoring it would
    # re-open trust auth under any other test session running against the same server.
    try:
        yield server
    finally:
        if server.container is not None:
            server.container.stop()


# ---------------------------------------------------------------- MySQL / MariaDB


@dataclass
class MySqlServer:
    host: str
    port: int
    user: str
    password: str
    container: Any = None

    def connect(self, database: str | None = None) -> pymysql.connections.Connection[Any]:
        return pymysql.connect(
            host=self.host,
            port=self.port,
            user=self.user,
            password=self.password,
            database=database,
            autocommit=True,
            connect_timeout=5,
        )

    def login_works(self, user: str, password: str) -> bool:
        try:
            pymysql.connect(  # UTF-8 bytes: PyMySQL sends a str password as latin-1
                host=self.host, port=self.port, user=user, password=password.encode(), connect_timeout=5
            ).close()
            return True
        except pymysql.err.OperationalError:
            return False


@contextlib.contextmanager
def mysql_server_from_env() -> Iterator[MySqlServer | None]:
    dsn = os.environ.get("ROTATOR_TEST_MYSQL_DSN")
    server: MySqlServer | None = None
    if dsn:
        u = urlparse(dsn)
        server = MySqlServer(
            host=u.hostname or "127.0.0.1",
            port=u.port or 3306,
            user=unquote(u.username or "root"),
            password=unquote(u.password or ""),
        )
    elif docker_available():
        from testcontainers.mysql import MySqlContainer

        container = MySqlContainer("mariadb:10.11", root_password="harness-root")
        container.start()
        server = MySqlServer(
            host=container.get_container_host_ip(),
            port=int(container.get_exposed_port(3306)),
            user="root",
            password="harness-root",
            container=container,
        )
    if server is None:
        yield None
        return
    try:
        server.connect().close()
    except pymysql.err.OperationalError as exc:
        raise RuntimeError(f"cannot reach MySQL at {server.host}:{server.port}: {exc}") from None
    try:
        yield server
    finally:
        if server.container is not None:
            server.container.stop()


# ---------------------------------------------------------------- per-test database environment


@dataclass
class DbEnv:
    """A fresh database on a real server, with an admin user that has a real (enforced) password."""

    engine: str  # "postgres" | "mysql"
    host: str
    port: int
    dbname: str
    admin_user: str
    admin_password: str
    prefix: str
    server: PgServer | MySqlServer
    users: list[str] = field(default_factory=list)

    def user(self, suffix: str) -> str:
        """A user name unique to this test; dropped at teardown."""
        name = f"{self.prefix}_{suffix}"
        self.users.append(name)
        return name

    def track(self, name: str) -> str:
        self.users.append(name)
        return name

    def login_works(self, user: str, password: str) -> bool:
        if isinstance(self.server, PgServer):
            return self.server.login_works(user, password, self.dbname)
        return self.server.login_works(user, password)

    def user_exists(self, user: str) -> bool:
        if isinstance(self.server, PgServer):
            with self.server.connect() as conn:
                return conn.execute("SELECT 1 FROM pg_roles WHERE rolname = %s", (user,)).fetchone() is not None
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT 1 FROM mysql.user WHERE user = %s", (user,))
                return cur.fetchone() is not None
        finally:
            conn.close()

    def password_hashes(self) -> dict[str, str]:
        """Stored password hashes of this test's users (to prove that nothing changed)."""
        if isinstance(self.server, PgServer):
            with self.server.connect() as conn:
                rows = conn.execute(
                    "SELECT rolname, coalesce(rolpassword, '') FROM pg_authid WHERE rolname LIKE %s",
                    (self.prefix + "%",),
                ).fetchall()
            return {r[0]: r[1] for r in rows}
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT CONCAT(user, '@', host), authentication_string FROM mysql.user WHERE user LIKE %s",
                    (self.prefix + "%",),
                )
                return {r[0]: r[1] for r in cur.fetchall()}
        finally:
            conn.close()

    def execute(self, statement: str, params: tuple[Any, ...] = (), *, in_db: bool = True) -> None:
        """One statement as the server's superuser (PostgreSQL: in this test's database unless ``in_db=False``)."""
        if isinstance(self.server, PgServer):
            with self.server.connect(self.dbname if in_db else "postgres") as conn:
                conn.execute(statement, params)  # type: ignore[arg-type]
            return
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(statement, params)
        finally:
            conn.close()

    def create_plain_user(self, name: str, password: str) -> None:
        """A login user the rotator never made (not a slot user), dropped at teardown."""
        self.track(name)
        if isinstance(self.server, PgServer):
            with self.server.connect() as conn:
                conn.execute(
                    psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                        psycopg.sql.Identifier(name), psycopg.sql.Literal(password)
                    )
                )
            return
        self.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))

    def set_password_directly(self, user: str, password: str) -> None:
        """Simulate drift: change a password behind the rotator's back."""
        if isinstance(self.server, PgServer):
            with self.server.connect() as conn:
                conn.execute(
                    psycopg.sql.SQL("ALTER ROLE {} PASSWORD {}").format(
                        psycopg.sql.Identifier(user), psycopg.sql.Literal(password)
                    )
                )
            return
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("ALTER USER %s@'%%' IDENTIFIED BY %s", (user, password))
        finally:
            conn.close()

    def drop_user(self, user: str) -> None:
        if isinstance(self.server, PgServer):
            with self.server.connect(self.dbname) as conn:
                conn.execute(psycopg.sql.SQL("DROP OWNED BY {}").format(psycopg.sql.Identifier(user)))
                conn.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(psycopg.sql.Identifier(user)))
            return
        conn = self.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT host FROM mysql.user WHERE user = %s", (user,))
                for (host,) in cur.fetchall():
                    cur.execute("DROP USER %s@%s", (user, host))
        finally:
            conn.close()


@contextlib.contextmanager
def pg_env(server: PgServer) -> Iterator[DbEnv]:
    prefix = new_name("rt")
    env = DbEnv(
        engine="postgres",
        host=server.host,
        port=server.port,
        dbname=f"{prefix}_db",
        admin_user=f"{prefix}_admin",
        admin_password=strong_password(),
        prefix=prefix,
        server=server,
    )
    ident = psycopg.sql.Identifier
    with server.connect() as conn:
        conn.execute(
            psycopg.sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                ident(env.admin_user), psycopg.sql.Literal(env.admin_password)
            )
        )
        conn.execute(psycopg.sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(env.dbname), ident(env.admin_user)))
    with server.connect(env.dbname) as conn:
        conn.execute(psycopg.sql.SQL("ALTER SCHEMA public OWNER TO {}").format(ident(env.admin_user)))
    try:
        yield env
    finally:
        with server.connect() as conn:
            conn.execute(psycopg.sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(env.dbname)))
            roles = [
                r[0]
                for r in conn.execute(
                    "SELECT rolname FROM pg_roles WHERE rolname LIKE %s OR rolname = ANY(%s)",
                    (prefix + "%", env.users),
                ).fetchall()
            ]
            # Members before the roles they belong to; owner roles last.
            for role in sorted(roles, key=lambda r: (r.endswith("_owner"), r)):
                conn.execute(psycopg.sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


@contextlib.contextmanager
def mysql_env(server: MySqlServer) -> Iterator[DbEnv]:
    prefix = new_name("rt")
    env = DbEnv(
        engine="mysql",
        host=server.host,
        port=server.port,
        dbname=f"{prefix}_db",
        admin_user=f"{prefix}_admin",
        admin_password=strong_password(),
        prefix=prefix,
        server=server,
    )
    conn = server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{env.dbname}`")
            cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (env.admin_user, env.admin_password))
            cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (env.admin_user,))
    finally:
        conn.close()
    try:
        yield env
    finally:
        conn = server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{env.dbname}`")
                # The privilege-less role that marks this database's slot users (rotator.db.mysql).
                cur.execute("DROP ROLE IF EXISTS %s", (marker_role(env.dbname),))
                cur.execute(
                    "SELECT user, host FROM mysql.user WHERE user LIKE %s OR user IN %s",
                    (prefix + "%", tuple(env.users) or ("",)),
                )
                for user, host in cur.fetchall():
                    cur.execute("DROP USER %s@%s", (user, host))
        finally:
            conn.close()


# ---------------------------------------------------------------- AWS (the moto server)


@dataclass
class AwsEnv:
    endpoint_url: str
    region: str
    session: boto3.Session
    prefix: str
    secret_ids: list[str] = field(default_factory=list)

    def client(self, service: str) -> Any:
        return self.session.client(service, endpoint_url=self.endpoint_url, region_name=self.region)

    def create_secret(self, suffix: str, value: str) -> str:
        name = f"{self.prefix}/{suffix}"
        arn: str = self.client("secretsmanager").create_secret(Name=name, SecretString=value)["ARN"]
        self.secret_ids.append(arn)
        return arn
