"""PostgreSQL engine (psycopg 3).

Passwords never reach the server in clear: the SCRAM-SHA-256 verifier is computed by libpq on this side
(``PQencryptPasswordConn``) and sent as the role's password, so neither the server log nor
``pg_stat_activity`` ever sees the plaintext.

Slot users own nothing: each is a member of a shared NOLOGIN owner role (``<dbname>_owner`` by default) and
logs in with ``role`` set to it, so every object either slot creates belongs to the owner role and stays
usable by the other slot. When the admin creates that owner role it grants it CONNECT, CREATE and TEMPORARY
on the database and USAGE, CREATE on schema ``public``: the admin needs CREATEROLE and the right to grant
those (owning the database and the schema, as an RDS master user created for it usually does).

Advisory locks are scoped to the database the admin session is connected to.

The slot-user marker (a password is changed only on a role proven to be one of this database's slot users):
the role's comment, ``COMMENT ON ROLE <user> IS '{"rotator": "slot user", "databases": ["<dbname>"]}'``, read
back with ``shobj_description(oid, 'pg_authid')``. A role is marked for a database only when the comment is
that JSON and lists the database (a role may serve several databases of one server; marking adds to the
list). Why a comment: it needs no extra object, goes away with the role, and an admin with CREATEROLE may set
it on any role that is not a superuser (PostgreSQL 15; from 16 on, on the roles it has ADMIN OPTION on, which
includes those it created). ``create_user`` creates the role and its comment in one transaction. A comment
that is not the rotator's is replaced by ``mark_user`` (only the planner's proof of a legacy slot user leads
there).
"""

from __future__ import annotations

import functools
import json
import math
import os
import re
import ssl
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any, LiteralString, cast

import psycopg
from psycopg import sql

from rotator.db._common import (
    pg_lock_key,
    short_reason,
    translate_errors,
    validate_pg_identifier,
)
from rotator.db.base import TLS_MODES, Endpoint, LoginResult, SessionInfo, Statement, TlsConfig, UserInfo, UserSessions
from rotator.errors import AdminLoginFailed, BadInput, DatabaseError
from rotator.log import get_logger

log = get_logger(__name__)

# libpq reports connection failures as text only (psycopg's OperationalError has no sqlstate for them),
# so a refused login is recognised by the server's (English) message. 28P01 / 28000:
_AUTH_REFUSED = re.compile(
    r"authentication failed for user"  # 28P01 password/md5/scram, also PAM/LDAP/ident (RDS IAM)
    r"|no pg_hba\.conf entry for"  # 28000
    r"|pg_hba\.conf rejects connection"  # 28000
    r"|FATAL:\s+role \".*\" does not exist"  # 28000 (only seen with trust/peer auth)
    r"|is not permitted to log in"  # 28000 NOLOGIN role
    r"|fe_sendauth: no password supplied"
    # PgBouncer answers a refused login with SQLSTATE 08P01 and its own words: a wrong password ("SASL
    # authentication failed", "password authentication failed"), an unknown user, or its server login with the
    # client's SCRAM keys refused by PostgreSQL. Not an outage: the credentials are the problem.
    r"|SASL authentication failed|password authentication failed|no such user"
    r"|server login (?:has been failing|failed)",
)
_NO_DB_ACCESS = re.compile(r"permission denied for database|does not have CONNECT privilege")
_DB_PRIVILEGES = ("CONNECT", "CREATE", "TEMPORARY")
_SCHEMA_PRIVILEGES = ("USAGE", "CREATE")
_ADMIN_STATEMENT_TIMEOUT = "60s"
_MARKER_KIND = "slot user"
_ATTRIBUTES = ("SUPERUSER", "CREATEROLE", "CREATEDB", "REPLICATION", "BYPASSRLS")
# Membership in these (predefined, or the cloud providers' administrative roles) is a dangerous right too.
_ADMIN_ROLES = (
    "pg_execute_server_program",
    "pg_read_server_files",
    "pg_write_server_files",
    "pg_read_all_data",
    "pg_write_all_data",
    "pg_signal_backend",
    "rds_superuser",
    "rds_password",
    "azure_pg_admin",
    "cloudsqlsuperuser",
)


def _tls_params(tls: TlsConfig) -> tuple[str, str | None]:
    """(sslmode, sslrootcert) for libpq. Never "prefer" or "allow": TLS asked for is TLS or nothing."""
    if tls.mode not in TLS_MODES:
        raise BadInput(f"unknown TLS mode {tls.mode!r}: use one of {', '.join(TLS_MODES)}")
    if tls.mode in ("verify-ca", "verify-full"):
        return tls.mode, tls.ca_bundle or _system_ca_bundle(tls.mode)
    return tls.mode, None


def _system_ca_bundle(mode: str) -> str:
    paths = ssl.get_default_verify_paths()
    for candidate in (paths.cafile, paths.openssl_cafile):
        if candidate and os.path.isfile(candidate):
            return candidate
    if mode == "verify-full":
        return "system"  # libpq >= 16 loads the system's trusted roots (only allowed with verify-full)
    raise BadInput("TLS mode verify-ca needs a CA bundle and no system CA file was found: set ca_bundle")


def _message(exc: BaseException) -> str:
    text = str(exc)
    # 'connection failed: connection to server at "h", port 5432 failed: FATAL:  <the server's words>'
    first = text.splitlines()[0] if text else "unknown error"
    reason = first.rsplit(" failed: ", 1)[-1]
    return re.sub(r"^(FATAL|ERROR):\s+", "", reason)


def marker_comment(databases: list[str]) -> str:
    return json.dumps({"rotator": _MARKER_KIND, "databases": databases}, ensure_ascii=False)


def marked_databases(comment: str | None) -> list[str] | None:
    """The databases a role comment marks it a slot user of; None when the comment is not the rotator's."""
    if not comment:
        return None
    try:
        value = json.loads(comment)
    except ValueError:
        return None
    if not isinstance(value, dict) or value.get("rotator") != _MARKER_KIND:
        return None
    databases = value.get("databases")
    if not isinstance(databases, list) or not all(isinstance(d, str) for d in databases):
        return None
    return databases


def _classify(exc: psycopg.Error, password: str) -> tuple[bool, str]:
    """(auth_failed, reason) for a failed connection attempt."""
    text = str(exc)
    if _AUTH_REFUSED.search(text):
        return True, "authentication refused"
    if _NO_DB_ACCESS.search(text):
        return False, "no access to database: " + short_reason(_message(exc), password)
    return False, "unreachable: " + short_reason(_message(exc), password)


_ATTRIBUTES_QUERY: LiteralString = (
    "SELECT r.rolname, r.rolsuper, r.rolcreaterole, r.rolcreatedb, r.rolreplication, r.rolbypassrls FROM pg_roles r"
)
_CAN_GRANT_ON_DATABASE: LiteralString = (
    "SELECT has_database_privilege(current_database(), 'CONNECT WITH GRANT OPTION')"
    " AND has_database_privilege(current_database(), 'CREATE WITH GRANT OPTION')"
    " AND has_database_privilege(current_database(), 'TEMPORARY WITH GRANT OPTION')"
)
_CAN_GRANT_ON_SCHEMA: LiteralString = (
    "SELECT has_schema_privilege('public', 'USAGE WITH GRANT OPTION')"
    " AND has_schema_privilege('public', 'CREATE WITH GRANT OPTION')"
)


# The privileges aclexplode() reports: the only words that reach a GRANT built from the catalogs.
_ACL_PRIVILEGES = frozenset(
    {
        "SELECT",
        "INSERT",
        "UPDATE",
        "DELETE",
        "TRUNCATE",
        "REFERENCES",
        "TRIGGER",
        "USAGE",
        "CREATE",
        "CONNECT",
        "TEMPORARY",
        "EXECUTE",
        "MAINTAIN",
        "SET",
        "ALTER SYSTEM",
    }
)
# Direct grants to one role on this database and its objects: (object kind, schema, name, routine arguments,
# column, privilege, with grant option, whether the role owns the object). Routine arguments are the server's
# own rendering (pg_get_function_identity_arguments), the only catalog text a statement takes unquoted.
_OBJECT_GRANTS_QUERY: LiteralString = """
WITH r AS (SELECT oid FROM pg_roles WHERE rolname = %(role)s)
SELECT 'DATABASE', NULL, d.datname, NULL, NULL, a.privilege_type, a.is_grantable,
       d.datdba = (SELECT oid FROM r)
  FROM pg_database d, aclexplode(d.datacl) a WHERE d.datname = current_database() AND a.grantee = (SELECT oid FROM r)
UNION ALL
SELECT 'SCHEMA', NULL, n.nspname, NULL, NULL, a.privilege_type, a.is_grantable, n.nspowner = (SELECT oid FROM r)
  FROM pg_namespace n, aclexplode(n.nspacl) a WHERE a.grantee = (SELECT oid FROM r)
UNION ALL
SELECT CASE WHEN c.relkind = 'S' THEN 'SEQUENCE' ELSE 'TABLE' END, n.nspname, c.relname, NULL, NULL,
       a.privilege_type, a.is_grantable, c.relowner = (SELECT oid FROM r)
  FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace, aclexplode(c.relacl) a
 WHERE c.relacl IS NOT NULL AND a.grantee = (SELECT oid FROM r)
UNION ALL
SELECT 'TABLE', n.nspname, c.relname, NULL, t.attname, a.privilege_type, a.is_grantable,
       c.relowner = (SELECT oid FROM r)
  FROM pg_attribute t JOIN pg_class c ON c.oid = t.attrelid JOIN pg_namespace n ON n.oid = c.relnamespace,
       aclexplode(t.attacl) a
 WHERE t.attacl IS NOT NULL AND a.grantee = (SELECT oid FROM r) AND NOT t.attisdropped
UNION ALL
SELECT 'ROUTINE', n.nspname, p.proname, pg_get_function_identity_arguments(p.oid), NULL, a.privilege_type,
       a.is_grantable, p.proowner = (SELECT oid FROM r)
  FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace, aclexplode(p.proacl) a
 WHERE p.proacl IS NOT NULL AND a.grantee = (SELECT oid FROM r)
UNION ALL
SELECT 'TYPE', n.nspname, t.typname, NULL, NULL, a.privilege_type, a.is_grantable, t.typowner = (SELECT oid FROM r)
  FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace, aclexplode(t.typacl) a
 WHERE t.typacl IS NOT NULL AND a.grantee = (SELECT oid FROM r)
"""

# Settings whose stored value is a list of (quoted) identifiers: given back one literal per element, else the
# server would take the whole list as one name.
_LIST_QUOTE_SETTINGS = frozenset(
    {"search_path", "temp_tablespaces", "session_preload_libraries", "local_preload_libraries"}
)


def _setting_value(name: str, value: str) -> sql.Composable:
    """The value of a stored ``name=value`` role setting, as ``ALTER ROLE .. SET`` takes it back."""
    if name.lower() not in _LIST_QUOTE_SETTINGS:
        return sql.Literal(value)
    elements, current, quoted, i = [], "", False, 0
    while i < len(value):
        ch = value[i]
        if ch == '"':
            if quoted and value[i + 1 : i + 2] == '"':
                current += '"'
                i += 1
            else:
                quoted = not quoted
        elif ch == "," and not quoted:
            elements.append(current.strip())
            current = ""
        else:
            current += ch
        i += 1
    elements.append(current.strip())
    return sql.SQL(", ").join(sql.Literal(e) for e in elements)


GrantItem = Callable[..., sql.Composed]  # called with target=Identifier: the statement that gives it this right

# One round trip per look (the drain looks 50 times a second): the server's time, then the user's sessions; the
# outer join keeps one row (pid NULL) when there are none. The statement's start time errs towards "new": a
# session that starts while the statement runs is seen now and again as started after it at the next look.
_SESSIONS_QUERY: LiteralString = (
    "SELECT extract(epoch FROM statement_timestamp())::float8, a.pid, host(a.client_addr), a.client_port,"
    " coalesce(a.application_name, ''), extract(epoch FROM a.backend_start)::float8,"
    " extract(epoch FROM CASE WHEN a.state = 'active' THEN clock_timestamp()"
    " ELSE greatest(a.query_start, a.state_change) END)::float8"
    " FROM (SELECT 1) AS one LEFT JOIN pg_stat_activity AS a ON a.usename = %s AND a.pid <> pg_backend_pid()"
    " AND a.backend_type = 'client backend' ORDER BY a.pid"
)


def _pg_session(
    pid: int, addr: str | None, port: int | None, app: str, started: float | None, active: float | None
) -> SessionInfo:
    client = f"{addr}:{port}" if addr else "local" if port == -1 else "hidden"
    return SessionInfo(pid, client, app, started, active if active is not None else started)


class PostgresEngine:
    name = "postgres"

    def __init__(self, *, owner_role: str | None = None, application_name: str = "rotator") -> None:
        if owner_role is not None:
            validate_pg_identifier(owner_role, "owner role name")
        self.owner_role = owner_role
        self.application_name = application_name

    def _connect(
        self, endpoint: Endpoint, username: str, password: str, *, autocommit: bool
    ) -> psycopg.Connection[Any]:
        sslmode, sslrootcert = _tls_params(endpoint.tls)
        conn = psycopg.connect(
            host=endpoint.host,
            port=endpoint.port,
            dbname=endpoint.dbname,
            user=username,
            password=password,
            connect_timeout=max(1, math.ceil(endpoint.connect_timeout)),
            application_name=self.application_name,
            autocommit=autocommit,
            sslmode=sslmode,
            sslrootcert=sslrootcert,  # None is left out of the conninfo
            gssencmode="disable",  # GSS encryption would otherwise satisfy "require" without TLS
        )
        if endpoint.tls.mode != "disable" and not conn.pgconn.ssl_in_use:
            conn.close()  # libpq enforces sslmode; this is a second, independent check
            raise psycopg.OperationalError("server did not negotiate TLS")
        return conn

    def check_login(self, endpoint: Endpoint, username: str, password: str) -> LoginResult:
        try:
            self._connect(endpoint, username, password, autocommit=True).close()
        except psycopg.Error as exc:
            auth_failed, reason = _classify(exc, password)
            return LoginResult(ok=False, reason=reason, auth_failed=auth_failed)
        return LoginResult(ok=True, reason="ok")

    def admin_session(self, endpoint: Endpoint, username: str, password: str) -> PostgresAdminSession:
        where = f"{endpoint.host}:{endpoint.port}/{endpoint.dbname}"
        try:
            conn = self._connect(endpoint, username, password, autocommit=True)
        except psycopg.Error as exc:
            auth_failed, reason = _classify(exc, password)
            if auth_failed:
                raise AdminLoginFailed(
                    f"PostgreSQL at {where} refused the admin login as {username!r}: check the admin secret",
                    auth_failed=True,
                ) from None
            raise AdminLoginFailed(
                f"cannot open an admin session to PostgreSQL at {where}: {reason}", auth_failed=False
            ) from None
        try:
            conn.execute(sql.SQL("SET statement_timeout = {}").format(sql.Literal(_ADMIN_STATEMENT_TIMEOUT)))
        except psycopg.Error as exc:
            conn.close()
            raise AdminLoginFailed(
                f"admin session set-up failed: {short_reason(str(exc))}", auth_failed=False
            ) from None
        return PostgresAdminSession(conn, login_user=username, owner_role=self.owner_role)


class PostgresAdminSession:
    def __init__(self, conn: psycopg.Connection[Any], *, login_user: str, owner_role: str | None = None) -> None:
        self._conn = conn
        self._login_user = login_user
        self._owner_role = owner_role

    def __enter__(self) -> PostgresAdminSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------ helpers

    def _one(self, query: LiteralString, params: tuple[Any, ...] = ()) -> Any:
        row = self._conn.execute(query, params).fetchone()
        return None if row is None else row[0]

    def _role_exists(self, name: str) -> bool:
        return self._one("SELECT 1 FROM pg_roles WHERE rolname = %s", (name,)) is not None

    def _verifier(self, username: str, password: str) -> str:
        hashed = self._conn.pgconn.encrypt_password(password.encode(), username.encode(), b"scram-sha-256")
        return hashed.decode("ascii")

    def _ensure_owner_role(self, owner: str, dbname: str) -> None:
        """Create the owner role if missing and give it exactly the rights it lacks (heals a crash half-way)."""
        if not self._role_exists(owner):
            self._conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
            log.info("owner_role_created", engine="postgres", role=owner)
        current_db = self._one("SELECT current_database()")
        if current_db != dbname:
            raise DatabaseError(
                f"the admin session is connected to database {current_db!r}, not {dbname!r}: "
                "connect it to the database whose slot users it manages"
            )
        have_db = self._explicit_privileges(
            "SELECT a.privilege_type FROM pg_database d, aclexplode(d.datacl) a "
            "WHERE d.datname = %s AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (dbname, owner),
        )
        if set(_DB_PRIVILEGES) - have_db:
            self._conn.execute(
                sql.SQL("GRANT CONNECT, CREATE, TEMPORARY ON DATABASE {} TO {}").format(
                    sql.Identifier(dbname), sql.Identifier(owner)
                )
            )
        have_schema = self._explicit_privileges(
            "SELECT a.privilege_type FROM pg_namespace n, aclexplode(n.nspacl) a "
            "WHERE n.nspname = 'public' AND a.grantee = (SELECT oid FROM pg_roles WHERE rolname = %s)",
            (owner,),
        )
        if set(_SCHEMA_PRIVILEGES) - have_schema:
            self._conn.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(sql.Identifier(owner)))

    def _explicit_privileges(self, query: LiteralString, params: tuple[Any, ...]) -> set[str]:
        return {row[0] for row in self._conn.execute(query, params).fetchall()}

    # ------------------------------------------------------------ the AdminSession protocol

    def user_exists(self, username: str) -> bool:
        validate_pg_identifier(username)
        with translate_errors("checking whether a role exists", (psycopg.Error,)):
            return self._role_exists(username)

    def create_user(self, username: str, password: str, *, dbname: str, grants_from: str | None) -> None:
        """Create (or, if it exists, re-password) a login role that acts as the owner role of ``dbname``.

        ``grants_from`` is not used: membership in the owner role is what both slots share.
        """
        validate_pg_identifier(username)
        validate_pg_identifier(dbname, "database name")
        owner = validate_pg_identifier(self._owner_role or f"{dbname}_owner", "owner role name")
        user, owner_id = sql.Identifier(username), sql.Identifier(owner)
        with translate_errors(f"creating role {username!r}", (psycopg.Error,), password):
            self._ensure_owner_role(owner, dbname)
            if self._role_exists(username):
                self._set_password(username, password)
                self._mark(username, dbname)
            else:
                verifier = self._verifier(username, password)
                with self._conn.transaction():  # never a role of ours without its marker
                    self._conn.execute(sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(user, sql.Literal(verifier)))
                    self._mark(username, dbname)
                log.info("user_created", engine="postgres", username=username, owner_role=owner)
            is_member = self._one(
                "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s",
                (owner, username),
            )
            if is_member is None:
                self._conn.execute(sql.SQL("GRANT {} TO {}").format(owner_id, user))
            # Objects a slot user creates are then owned by the owner role, shared by both slots.
            self._conn.execute(sql.SQL("ALTER ROLE {} SET role = {}").format(user, sql.Literal(owner)))

    def inspect_user(self, username: str, *, dbname: str) -> UserInfo:
        validate_pg_identifier(username)
        validate_pg_identifier(dbname, "database name")
        with translate_errors(f"inspecting role {username!r}", (psycopg.Error,)):
            row = self._conn.execute(
                "SELECT rolsuper, shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (username,)
            ).fetchone()
            if row is None:
                return UserInfo(exists=False)
            is_super, comment = bool(row[0]), row[1]
            databases = marked_databases(comment)
            return UserInfo(
                exists=True,
                privileges=tuple(self._privileges(username, is_super)),
                marked=databases is not None and dbname in databases,
                owner_member=self._is_member(username, self._owner_of(dbname), direct_only=is_super),
            )

    def _owner_of(self, dbname: str) -> str:
        return validate_pg_identifier(self._owner_role or f"{dbname}_owner", "owner role name")

    def _is_member(self, username: str, role: str, *, direct_only: bool) -> bool:
        """Whether ``username`` may SET ROLE to ``role`` (for a superuser, who may become any role: a real grant)."""
        if direct_only:
            query: LiteralString = (
                "SELECT 1 FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE g.rolname = %s AND u.rolname = %s"
            )
            return self._one(query, (role, username)) is not None
        if not self._role_exists(role):
            return False
        return bool(self._one("SELECT pg_has_role(%s, %s, 'MEMBER')", (username, role)))

    def _privileges(self, username: str, is_super: bool) -> list[str]:
        """The role's dangerous attributes, then those of the roles it may become, then admin-role memberships."""
        if is_super:
            # A superuser may become any role: listing every role's attributes would add nothing.
            rows = self._conn.execute(_ATTRIBUTES_QUERY + " WHERE r.rolname = %s", (username,)).fetchall()
        else:
            rows = self._conn.execute(
                _ATTRIBUTES_QUERY + " WHERE r.rolname = %s OR (r.rolname <> %s AND pg_has_role(%s, r.oid, 'MEMBER'))"
                " ORDER BY r.rolname <> %s, r.rolname",
                (username, username, username, username),
            ).fetchall()
        found: list[str] = []
        for name, *flags in rows:
            via = "" if name == username else f" (via role {name})"
            found += [attribute + via for attribute, flag in zip(_ATTRIBUTES, flags, strict=True) if flag]
            if name != username and name in _ADMIN_ROLES:
                found.append(f"MEMBER OF {name}")
        return found

    def mark_user(self, username: str, *, dbname: str) -> None:
        validate_pg_identifier(username)
        validate_pg_identifier(dbname, "database name")
        with translate_errors(f"marking role {username!r} as a slot user", (psycopg.Error,)):
            if not self._role_exists(username):
                raise DatabaseError(f"role {username!r} does not exist: it cannot be marked as a slot user")
            self._mark(username, dbname)

    def _mark(self, username: str, dbname: str) -> None:
        comment = self._one("SELECT shobj_description(oid, 'pg_authid') FROM pg_roles WHERE rolname = %s", (username,))
        databases = marked_databases(comment)
        if databases is not None and dbname in databases:
            return
        if comment and databases is None:
            log.warning("role_comment_replaced", engine="postgres", username=username)
        marker = marker_comment([*(databases or []), dbname])
        self._conn.execute(sql.SQL("COMMENT ON ROLE {} IS {}").format(sql.Identifier(username), sql.Literal(marker)))
        log.info("user_marked", engine="postgres", username=username, dbname=dbname)

    def admin_problems(self, *, dbname: str) -> list[str]:
        validate_pg_identifier(dbname, "database name")
        with translate_errors("reading the admin's own rights", (psycopg.Error,)):
            row = self._conn.execute(
                "SELECT current_user, rolsuper, rolcreaterole, current_database() FROM pg_roles "
                "WHERE rolname = current_user"
            ).fetchone()
            assert row is not None  # the current user always exists
            me, is_super, can_create_role, current_db = row
            problems: list[str] = []
            if current_db != dbname:
                problems.append(
                    f"the admin session is connected to database {current_db!r}, not {dbname!r}: "
                    "give the admin secret (or the slot secret) the database whose slot users it manages"
                )
                return problems
            if not (is_super or can_create_role):
                problems.append(
                    f"admin role {me!r} has neither SUPERUSER nor CREATEROLE: run ALTER ROLE {me} CREATEROLE "
                    "as a superuser, or use an admin that has it"
                )
            owner = self._owner_of(dbname)
            if not is_super and not self._role_exists(owner):
                # create_user will create the owner role and grant it these; the admin must be able to.
                for what, query in (
                    (f"database {dbname}", _CAN_GRANT_ON_DATABASE),
                    ("schema public", _CAN_GRANT_ON_SCHEMA),
                ):
                    if not self._one(query):
                        problems.append(
                            f"admin role {me!r} cannot grant the rights of the new owner role {owner!r} on {what}: "
                            f"make the admin the owner of {what}, or create {owner!r} with its rights beforehand"
                        )
            return problems

    def set_password(self, username: str, password: str) -> None:
        validate_pg_identifier(username)
        with translate_errors(f"setting the password of role {username!r}", (psycopg.Error,), password):
            self._set_password(username, password)

    def _set_password(self, username: str, password: str) -> None:
        verifier = self._verifier(username, password)
        self._conn.execute(sql.SQL("ALTER ROLE {} PASSWORD {}").format(sql.Identifier(username), sql.Literal(verifier)))
        log.info("password_set", engine="postgres", username=username)

    def show_grants(self, username: str) -> list[str]:
        """Attributes, memberships, per-role settings and effective rights on this database and its public schema."""
        validate_pg_identifier(username)
        with translate_errors(f"reading the grants of role {username!r}", (psycopg.Error,)):
            can_login = self._one("SELECT rolcanlogin FROM pg_roles WHERE rolname = %s", (username,))
            if can_login is None:
                raise DatabaseError(f"role {username!r} does not exist")
            lines = ["LOGIN" if can_login else "NOLOGIN"]
            rows = self._conn.execute(
                "SELECT g.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
                "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s ORDER BY 1",
                (username,),
            ).fetchall()
            lines += [f"MEMBER OF {role}" + (" WITH ADMIN OPTION" if admin else "") for role, admin in rows]
            settings = self._conn.execute(
                "SELECT unnest(s.setconfig) FROM pg_db_role_setting s JOIN pg_roles u ON u.oid = s.setrole "
                "WHERE u.rolname = %s AND s.setdatabase IN "
                "(0, (SELECT oid FROM pg_database WHERE datname = current_database())) ORDER BY 1",
                (username,),
            ).fetchall()
            lines += [f"SET {setting}" for (setting,) in settings]
            dbname = self._one("SELECT current_database()")
            for priv in _DB_PRIVILEGES:
                if self._one("SELECT has_database_privilege(%s, current_database(), %s)", (username, priv)):
                    lines.append(f"{priv} ON DATABASE {dbname}")
            for priv in _SCHEMA_PRIVILEGES:
                if self._one("SELECT has_schema_privilege(%s, 'public', %s)", (username, priv)):
                    lines.append(f"{priv} ON SCHEMA public")
            return lines

    # ------------------------------------------------------------ for rotator.adopt

    @property
    def connection(self) -> psycopg.Connection[Any]:
        return self._conn

    def owner_role_of(self, dbname: str) -> str:
        return self._owner_of(dbname)

    def verifier(self, username: str, password: str) -> str:
        """The SCRAM-SHA-256 verifier of ``password`` for ``username``, computed by libpq on this side."""
        return self._verifier(username, password)

    def grant_items(self, username: str, *, owned: bool = True) -> dict[str, GrantItem]:
        return self._grant_items(username, owned=owned)

    # ------------------------------------------------------------ grants kept equal

    def _grant_items(self, username: str, *, owned: bool = True) -> dict[str, GrantItem]:
        """What ``username`` holds, by a name that does not mention it -> how to give it to another role.
        ``owned=False``: without its rights on the objects it owns (an owner's, which move with ownership)."""
        items: dict[str, GrantItem] = {}
        for role, admin in self._conn.execute(
            "SELECT g.rolname, m.admin_option FROM pg_auth_members m JOIN pg_roles g ON g.oid = m.roleid "
            "JOIN pg_roles u ON u.oid = m.member WHERE u.rolname = %s",
            (username,),
        ).fetchall():
            option = " WITH ADMIN OPTION" if admin else ""
            items[f"MEMBER OF {role}{option}"] = functools.partial(
                sql.SQL("GRANT {role} TO {target}" + (" WITH ADMIN OPTION" if admin else "")).format,
                role=sql.Identifier(role),
            )
        dbname = self._one("SELECT current_database()")
        for in_db, setting in self._conn.execute(
            "SELECT s.setdatabase <> 0, unnest(s.setconfig) FROM pg_db_role_setting s "
            "JOIN pg_roles u ON u.oid = s.setrole WHERE u.rolname = %s AND s.setdatabase IN "
            "(0, (SELECT oid FROM pg_database WHERE datname = current_database()))",
            (username,),
        ).fetchall():
            name, _, value = str(setting).partition("=")
            items[f"SET {name}={value}" + (" IN DATABASE" if in_db else "")] = functools.partial(
                sql.SQL("ALTER ROLE {target}{scope} SET {name} = {value}").format,
                scope=sql.SQL(" IN DATABASE {}").format(sql.Identifier(dbname)) if in_db else sql.SQL(""),
                name=sql.Identifier(*name.split(".")),
                value=_setting_value(name, value),
            )
        for kind, schema, name, args, column, privilege, grantable, own in self._conn.execute(
            _OBJECT_GRANTS_QUERY, {"role": username}
        ).fetchall():
            if privilege not in _ACL_PRIVILEGES or (own and not owned):
                continue
            what = sql.SQL("{}{} ON {} {}{}{}").format(
                sql.SQL(privilege),
                sql.SQL(" ({})").format(sql.Identifier(column)) if column else sql.SQL(""),
                sql.SQL(kind),
                sql.Identifier(schema, name) if schema else sql.Identifier(name),
                sql.SQL("(" + cast(LiteralString, args) + ")") if args is not None else sql.SQL(""),
                sql.SQL(" WITH GRANT OPTION") if grantable else sql.SQL(""),
            )
            items[what.as_string(self._conn)] = functools.partial(sql.SQL("GRANT {what} TO {target}").format, what=what)
        return items

    def missing_grants(self, source: str, target: str) -> tuple[str, ...]:
        validate_pg_identifier(source)
        validate_pg_identifier(target)
        with translate_errors(f"comparing the rights of roles {source!r} and {target!r}", (psycopg.Error,)):
            have = self._grant_items(target)
            return tuple(sorted(k for k in self._grant_items(source) if k not in have))

    def missing_grants_both(self, a: str, b: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        validate_pg_identifier(a)
        validate_pg_identifier(b)
        with translate_errors(f"comparing the rights of roles {b!r} and {a!r}", (psycopg.Error,)):
            of_a, of_b = self._grant_items(a), self._grant_items(b)
            return tuple(sorted(k for k in of_b if k not in of_a)), tuple(sorted(k for k in of_a if k not in of_b))

    def grant_statements(self, source: str, target: str) -> list[Statement]:
        validate_pg_identifier(source)
        validate_pg_identifier(target)
        with translate_errors(f"comparing the rights of roles {source!r} and {target!r}", (psycopg.Error,)):
            have = self._grant_items(target)
            out: list[Statement] = []
            for key, make in sorted(self._grant_items(source).items()):
                if key not in have:
                    query = make(target=sql.Identifier(target))
                    out.append(Statement(query.as_string(self._conn), query, right=key))
            return out

    def execute(self, statements: Sequence[Statement]) -> None:
        """Each statement on its own; one whose query is a tuple runs its parts in one transaction."""
        for statement in statements:
            with translate_errors(statement.text, (psycopg.Error,)):
                if isinstance(statement.query, tuple):
                    with self._conn.transaction():
                        for part in statement.query:
                            self._conn.execute(part)
                else:
                    self._conn.execute(statement.query, statement.params or None)
            log.info("statement", engine="postgres", sql=statement.text)

    def sessions_of(self, username: str) -> UserSessions:
        # Without pg_read_all_stats (or the role's privileges) the server hides a session's address and times.
        with translate_errors(f"reading the sessions of role {username!r}", (psycopg.Error,)):
            rows = self._conn.execute(_SESSIONS_QUERY, (username,)).fetchall()
        return UserSessions(float(rows[0][0]), tuple(_pg_session(*row[1:]) for row in rows if row[1] is not None))

    def try_lock(self, name: str) -> bool:
        with translate_errors("taking the advisory lock", (psycopg.Error,)):
            return bool(self._one("SELECT pg_try_advisory_lock(%s)", (pg_lock_key(name),)))

    def unlock(self, name: str) -> None:
        with translate_errors("releasing the advisory lock", (psycopg.Error,)):
            self._one("SELECT pg_advisory_unlock(%s)", (pg_lock_key(name),))

    def close(self) -> None:
        self._conn.close()
