"""The demo's database: a server (embedded, or given by a DSN), and on it a database, an admin, two slot users.

The admin is what an RDS master user is to the rotator: PostgreSQL: a role with CREATEROLE that owns the
database and its public schema; MySQL/MariaDB: a user with every privilege and GRANT OPTION. The slot users
are created through the rotator's own engines, as its bootstrap would. Everything is dropped at the end.
"""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import unquote, urlparse

import psycopg
import pymysql
from psycopg import sql

from rotator.db import get_engine
from rotator.db.base import Endpoint, TlsConfig
from rotator.db.mysql import marker_role
from rotator.passwords import PasswordPolicy
from rotator.secrets import Slot

NO_TLS = TlsConfig("disable")  # local servers: the embedded one has no certificate


class DemoSetupError(RuntimeError):
    pass


@dataclass(frozen=True)
class Login:
    host: str
    port: int
    dbname: str
    username: str
    password: str = field(repr=False)

    @property
    def endpoint(self) -> Endpoint:
        return Endpoint(self.host, self.port, self.dbname, NO_TLS)


@dataclass(frozen=True)
class DemoDatabase:
    engine: str  # "postgres" | "mysql"
    admin: Login
    slots: dict[Slot, Login]
    server_description: str

    @property
    def host(self) -> str:
        return self.admin.host

    @property
    def port(self) -> int:
        return self.admin.port

    @property
    def dbname(self) -> str:
        return self.admin.dbname


class Server(Protocol):
    engine: str
    host: str
    port: int
    description: str

    def provision(self, prefix: str) -> DemoDatabase: ...

    def drop(self, db: DemoDatabase) -> None: ...


def connect(engine: str, host: str, port: int, dbname: str, user: str, password: str, timeout: float = 5.0) -> Any:
    """A DB-API connection in autocommit mode, as the app opens it."""
    if engine == "postgres":
        return psycopg.connect(
            host=host,
            port=port,
            dbname=dbname,
            user=user,
            password=password,
            autocommit=True,
            connect_timeout=max(1, int(timeout)),
            sslmode="prefer",
            application_name="rotator-demo",
        )
    return pymysql.connect(
        host=host, port=port, database=dbname, user=user, password=password, autocommit=True, connect_timeout=timeout
    )


def _new_password() -> str:
    return PasswordPolicy().generate()


def _slot_users(prefix: str) -> dict[Slot, str]:
    return {"A": f"{prefix}_app_a", "B": f"{prefix}_app_b"}


def _create_slot_users(engine: str, admin: Login, prefix: str) -> dict[Slot, Login]:
    """Through the rotator's engine, as its bootstrap would: same rights for both, shared object ownership."""
    rotator_engine = get_engine(engine)
    slots: dict[Slot, Login] = {}
    session = rotator_engine.admin_session(admin.endpoint, admin.username, admin.password)
    try:
        previous: str | None = None
        for slot, user in _slot_users(prefix).items():
            password = _new_password()
            session.create_user(user, password, dbname=admin.dbname, grants_from=previous)
            slots[slot] = Login(admin.host, admin.port, admin.dbname, user, password)
            previous = user
    finally:
        session.close()
    return slots


def create_demo_table(engine: str, login: Login) -> None:
    """As slot A: on PostgreSQL the table then belongs to the shared owner role, usable by both slots."""
    conn = connect(engine, login.host, login.port, login.dbname, login.username, login.password)
    try:
        if engine == "postgres":
            conn.execute(
                "CREATE TABLE demo_hits (id bigserial PRIMARY KEY, instance int NOT NULL, slot text NOT NULL, "
                "at timestamptz NOT NULL DEFAULT now())"
            )
        else:
            with conn.cursor() as cur:
                cur.execute(
                    "CREATE TABLE demo_hits (id BIGINT AUTO_INCREMENT PRIMARY KEY, instance INT NOT NULL, "
                    "slot CHAR(1) NOT NULL, at TIMESTAMP(3) NOT NULL DEFAULT CURRENT_TIMESTAMP(3))"
                )
    finally:
        conn.close()


def prove_passwords_count(db: DemoDatabase) -> str:
    """A wrong password must be refused and the right one accepted, or the demo would prove nothing."""
    engine = get_engine(db.engine)
    admin = db.admin
    wrong = engine.check_login(admin.endpoint, admin.username, admin.password + "-wrong")
    if wrong.ok:
        raise DemoSetupError(
            f"the {db.engine} server at {db.host}:{db.port} accepts a wrong password (trust auth?): a rotation "
            "there proves nothing; require scram-sha-256 (PostgreSQL pg_hba.conf) for non-superusers"
        )
    right = engine.check_login(admin.endpoint, admin.username, admin.password)
    if not right.ok:
        raise DemoSetupError(f"the demo admin cannot log in to {db.host}:{db.port}: {right.reason}")
    return f"a wrong password is refused ({wrong.reason}), the right one logs in"


# ---------------------------------------------------------------- PostgreSQL


@dataclass
class PostgresServer:
    """Any PostgreSQL: ``superuser_connect`` opens a superuser session (unix socket, or the DSN's login)."""

    host: str
    port: int
    description: str
    superuser_connect: Callable[..., psycopg.Connection[Any]]
    engine: str = "postgres"

    def provision(self, prefix: str) -> DemoDatabase:
        dbname, admin_user = prefix, f"{prefix}_admin"
        admin_password = _new_password()
        ident = sql.Identifier
        with self.superuser_connect() as conn:
            # The verifier is computed here, so the server never sees the password in clear.
            verifier = conn.pgconn.encrypt_password(admin_password.encode(), admin_user.encode(), b"scram-sha-256")
            conn.execute(
                sql.SQL("CREATE ROLE {} LOGIN CREATEROLE PASSWORD {}").format(
                    ident(admin_user), sql.Literal(verifier.decode())
                )
            )
            conn.execute(sql.SQL("CREATE DATABASE {} OWNER {}").format(ident(dbname), ident(admin_user)))
        with self.superuser_connect(dbname) as conn:
            conn.execute(sql.SQL("ALTER SCHEMA public OWNER TO {}").format(ident(admin_user)))
        admin = Login(self.host, self.port, dbname, admin_user, admin_password)
        return DemoDatabase("postgres", admin, _create_slot_users("postgres", admin, prefix), self.description)

    def drop(self, db: DemoDatabase) -> None:
        ident = sql.Identifier
        with self.superuser_connect() as conn:
            conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(ident(db.dbname)))
            # Members before the role they belong to: the slot users, their owner role, then the admin.
            for role in (*(s.username for s in db.slots.values()), f"{db.dbname}_owner", db.admin.username):
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(ident(role)))


def postgres_from_dsn(dsn: str) -> PostgresServer:
    u = urlparse(dsn)
    host, port = u.hostname or "127.0.0.1", u.port or 5432
    user = unquote(u.username or "postgres")
    password = unquote(u.password) if u.password else None
    dbname = unquote(u.path.lstrip("/")) or "postgres"

    def superuser_connect(database: str = dbname) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=host, port=port, user=user, password=password, dbname=database, autocommit=True, connect_timeout=5
        )

    try:
        with superuser_connect() as conn:
            row = conn.execute("SHOW server_version").fetchone()
    except psycopg.Error as exc:
        raise DemoSetupError(f"cannot reach PostgreSQL at {host}:{port} (--postgres-dsn): {exc}") from None
    version = str(row[0]).split()[0] if row else "?"
    return PostgresServer(host, port, f"PostgreSQL {version} at {host}:{port}", superuser_connect)


# ---------------------------------------------------------------- MySQL / MariaDB


@dataclass
class MySqlServer:
    host: str
    port: int
    user: str
    password: str = field(repr=False)
    description: str = "MySQL"
    engine: str = "mysql"

    def _connect(self) -> Any:
        return pymysql.connect(
            host=self.host, port=self.port, user=self.user, password=self.password, autocommit=True, connect_timeout=5
        )

    def provision(self, prefix: str) -> DemoDatabase:
        dbname, admin_user = prefix, f"{prefix}_admin"
        admin_password = _new_password()
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE DATABASE `{dbname}`")
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (admin_user, admin_password))
                cur.execute("GRANT ALL PRIVILEGES ON *.* TO %s@'%%' WITH GRANT OPTION", (admin_user,))
        finally:
            conn.close()
        admin = Login(self.host, self.port, dbname, admin_user, admin_password)
        return DemoDatabase("mysql", admin, _create_slot_users("mysql", admin, prefix), self.description)

    def drop(self, db: DemoDatabase) -> None:
        conn = self._connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{db.dbname}`")
                for user in (*(s.username for s in db.slots.values()), db.admin.username):
                    cur.execute("DROP USER IF EXISTS %s@'%%'", (user,))
                cur.execute("DROP ROLE IF EXISTS %s", (marker_role(db.dbname),))  # the slot-user marker
        finally:
            conn.close()


def mysql_from_dsn(dsn: str) -> MySqlServer:
    u = urlparse(dsn)
    server = MySqlServer(
        host=u.hostname or "127.0.0.1",
        port=u.port or 3306,
        user=unquote(u.username or "root"),
        password=unquote(u.password or ""),
    )
    try:
        conn = server._connect()
        try:
            with conn.cursor() as cur:
                cur.execute("SELECT VERSION()")
                row = cur.fetchone()
        finally:
            conn.close()
    except pymysql.err.MySQLError as exc:
        raise DemoSetupError(f"cannot reach MySQL at {server.host}:{server.port} (--mysql-dsn): {exc}") from None
    version = str(row[0]) if row else "?"
    kind = "MariaDB" if "mariadb" in version.lower() else "MySQL"
    server.description = f"{kind} {version.split('-')[0]} at {server.host}:{server.port}"
    return server


def new_prefix(fixed: str | None = None) -> str:
    """Names of this run's database and users; random on a shared server, so that runs never collide."""
    return fixed or f"rtdemo_{secrets.token_hex(3)}"


@contextlib.contextmanager
def provisioned(server: Server, prefix: str) -> Iterator[DemoDatabase]:
    db = server.provision(prefix)
    try:
        yield db
    finally:
        server.drop(db)
