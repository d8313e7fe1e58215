"""MySQL / MariaDB engine (pymysql).

User names and hosts reach SQL only as string literals bound by pymysql (``%s@%s``); database names
only backtick-quoted by :func:`quote_mysql_identifier`; passwords only as bound parameters.

Granting ``ALL PRIVILEGES ON `dbname`.*``: in a GRANT, ``_`` and ``%`` in a database name are wildcards
(unless MySQL 8's ``partial_revokes`` is on); the name is granted as given, like the usual
``GRANT ALL ON dbname.*``.

Copying grants parses SHOW GRANTS of the source user as MariaDB and MySQL 8 print it (backtick-quoted
grantee); only the grantee is replaced (by bound parameters) and the authentication clause is dropped.
Copying adds grants; it never revokes what the target already has.

GET_LOCK names are server-wide (not per database): callers include the database in the lock name.

Passwords reach the server only as their stored hash (see :mod:`rotator.db.mysql_auth`): MariaDB gets
``IDENTIFIED BY PASSWORD '*<mysql_native_password hash>'``, MySQL ``IDENTIFIED WITH caching_sha2_password AS
'$A$005$...'``; the server is told apart by ``VERSION()``. Logins send the password's UTF-8 bytes.

The account managed is ``user@user_host`` (``--mysql-user-host``, default ``%``); ``inspect_user`` also
reports every other host part the name exists with, so that the planner can refuse a name that would become a
second, untracked account.

The slot-user marker (a password is changed only on a user proven to be one of this database's slot users):
a role without any privilege per database, ``rotator_slot_<dbname>`` (or, when that is longer than 32
characters, MySQL 8's limit for role names, ``rotator_slot_`` + the first 19 hex digits of SHA-256 of the
database name), created when missing and granted to the slot user (``GRANT role TO user@host``). A user is
marked when it holds that role without ADMIN OPTION (``mysql.roles_mapping`` on MariaDB, ``mysql.role_edges``
on MySQL 8). Why a role: MariaDB has no per-account comment or attribute (MySQL 8's ``ATTRIBUTE`` is not
there), and a role is a first-class, visible, privilege-free object that goes into SHOW GRANTS, so copying the
peer's grants copies the marker along. The cost: MariaDB lets only the holders of a role's ADMIN OPTION grant
it (not even root may otherwise); the admin that creates the role gets it, which is why holding the role WITH
ADMIN OPTION is not a mark, and why ``admin_problems`` reports an admin that lacks it (MySQL 8 also accepts
ROLE_ADMIN). The marker role is left in place when the slot users are dropped (``DROP ROLE`` it by hand).
"""

from __future__ import annotations

import hashlib
import re
import ssl
from collections.abc import Iterable, Sequence
from types import TracebackType
from typing import Any

import pymysql
import pymysql.cursors

from rotator.db._common import (
    escape_pyformat,
    mysql_lock_name,
    quote_mysql_identifier,
    short_reason,
    translate_errors,
    validate_mysql_database,
    validate_mysql_host,
    validate_mysql_user,
)
from rotator.db.base import TLS_MODES, Endpoint, LoginResult, SessionInfo, Statement, TlsConfig, UserInfo, UserSessions
from rotator.db.mysql_auth import caching_sha2_password_hash, native_password_hash
from rotator.errors import AdminLoginFailed, BadInput, DatabaseError
from rotator.log import get_logger

log = get_logger(__name__)

# 1045 access denied (28000), 1698 access denied without password, 3118 / 4151 account locked (MySQL / MariaDB)
_AUTH_ERRNOS = frozenset({1045, 1698, 3118, 4151})
_NO_DB_ACCESS_ERRNO = 1044
_TLS_REQUIRED_ERRNO = 2026  # pymysql: "SSL is required but the server doesn't support it"
_ADMIN_READ_TIMEOUT = 60.0  # seconds; admin statements are short, a silent server must not hang the run

_QUOTED_STRING = r"'(?:[^'\\]|\\.|'')*'"
_AUTH_CLAUSE = re.compile(
    r"\s+IDENTIFIED\s+(?:BY\s+PASSWORD\s+" + _QUOTED_STRING + r"|BY\s+" + _QUOTED_STRING + r"|(?:VIA|WITH)\s+.*?)"
    r"(?=\s+(?:REQUIRE|WITH)\s|$)",
    re.IGNORECASE | re.DOTALL,
)
_BARE_USAGE = re.compile(r"GRANT\s+USAGE\s+ON\s+\*\.\*", re.IGNORECASE)
# Global privileges are printed as upper-case words (MySQL 8's dynamic ones joined by "," without a space).
_GLOBAL_GRANT = re.compile(r"GRANT ([A-Z_ ,]+) ON \*\.\* TO ")
_MYSQL_SCHEMA_GRANT = re.compile(r"GRANT (.+?) ON (`mysql`\.(?:\*|`(?:[^`]|``)*`)) TO ")
_MARKER_PREFIX = "rotator_slot_"
_MAX_ROLE_NAME_CHARS = 32  # MySQL 8's limit (MariaDB allows more): one rule for both servers


def marker_role(dbname: str) -> str:
    """The privilege-less role that marks the slot users of ``dbname``."""
    name = _MARKER_PREFIX + dbname
    if len(name) <= _MAX_ROLE_NAME_CHARS:
        return name
    digest = hashlib.sha256(dbname.encode()).hexdigest()
    return _MARKER_PREFIX + digest[: _MAX_ROLE_NAME_CHARS - len(_MARKER_PREFIX)]


def global_privileges(lines: Iterable[str], grantee: str) -> list[str]:
    """The global privileges (and those on the ``mysql`` schema) in SHOW GRANTS lines of ``grantee``.

    ``grantee`` is the account as SHOW GRANTS prints it (```user`@`host``` or, for a MariaDB role, ```role```).
    Bare ``USAGE`` is no privilege; ``WITH GRANT OPTION`` is reported as ``GRANT OPTION ON <target>``.
    """
    found: list[str] = []
    for raw in lines:
        line = strip_auth_clause(raw.strip())
        at = line.rfind(f" TO {grantee}")
        tail = line[at + len(grantee) + 4 :] if at >= 0 else ""
        match = _GLOBAL_GRANT.match(line)
        if match:
            target = "*.*"
            privileges = [p.strip() for p in match.group(1).split(",")]
        else:
            match = _MYSQL_SCHEMA_GRANT.match(line)
            if not match:
                continue
            target = match.group(2)
            privileges = [match.group(1)]  # may hold column lists: kept as printed
        found += [f"{p} ON {target}" for p in privileges if p and p != "USAGE"]
        if re.search(r"\bWITH\b.*\bGRANT OPTION\b", tail):
            found.append(f"GRANT OPTION ON {target}")
    return found


def strip_auth_clause(grant: str) -> str:
    """Drop ``IDENTIFIED BY PASSWORD '<hash>'`` (and VIA/WITH forms) from a SHOW GRANTS line."""
    return _AUTH_CLAUSE.sub("", grant)


def _split_grant(grant: str, user: str, host: str) -> tuple[str, str, str]:
    """(head, keyword, tail) of one SHOW GRANTS line of ``user@host``: the text before and after its grantee."""
    line = strip_auth_clause(grant.strip())
    found: tuple[int, str, str] | None = None  # (position, keyword, grantee as printed)
    for grantee in (quote_mysql_identifier(user) + "@" + quote_mysql_identifier(host), f"'{user}'@'{host}'"):
        for keyword in ("TO", "FOR"):  # GRANT ... TO grantee / SET DEFAULT ROLE r FOR grantee
            at = line.rfind(f" {keyword} {grantee}")
            if at >= 0 and (found is None or at > found[0]):
                found = (at, keyword, grantee)
    if found is None:
        raise DatabaseError(f"cannot find the grantee in SHOW GRANTS line {line!r}: copy the grants by hand")
    at, keyword, grantee = found
    return line[:at], keyword, line[at + len(keyword) + len(grantee) + 2 :]


def grant_template(grant: str, user: str, host: str) -> str | None:
    """Turn one SHOW GRANTS line of ``user@host`` into a pymysql statement whose grantee is ``%s@%s``.

    Returns None for the bare ``GRANT USAGE ON *.*`` line, which carries nothing but authentication.
    """
    head, keyword, tail = _split_grant(grant, user, host)
    if _BARE_USAGE.fullmatch(head) and not tail.strip():
        return None
    return f"{escape_pyformat(head)} {keyword} %s@%s{escape_pyformat(tail)}"


def _top_level(text: str, separator: str) -> list[str]:
    """Split ``text`` at ``separator`` outside backticks, quotes and parentheses."""
    parts, depth, quote, start, i = [], 0, "", 0, 0
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == quote:
                quote = ""
        elif ch in "`'":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif depth == 0 and text.startswith(separator, i):
            parts.append(text[start:i])
            i += len(separator)
            start = i
            continue
        i += 1
    parts.append(text[start:])
    return parts


def grant_atoms(grant: str, user: str, host: str) -> list[str]:
    """One SHOW GRANTS line of ``user@host`` as rights that do not name it: ``SELECT ON `db`.*``, ``GRANT OPTION
    ON `db`.*``, ``GRANT `role``` (a role), ``SET DEFAULT ROLE `r` FOR <grantee>``; bare USAGE is nothing."""
    head, keyword, tail = _split_grant(grant, user, host)
    tail = tail.strip()
    if keyword == "FOR" or not head.startswith("GRANT "):
        return [f"{head} {keyword} <grantee>{(' ' + tail) if tail else ''}"]
    on = _top_level(head[len("GRANT ") :], " ON ")
    if len(on) != 2:  # a role grant: GRANT `role` [WITH ADMIN OPTION]
        return [f"{head}{(' ' + tail) if tail else ''}"]
    privileges, target = on
    atoms = [f"{p.strip()} ON {target}" for p in _top_level(privileges, ",") if p.strip() and p.strip() != "USAGE"]
    rest = tail
    if re.search(r"\bGRANT OPTION\b", tail):
        atoms.append(f"GRANT OPTION ON {target}")
        rest = re.sub(r"\bGRANT OPTION\b", "", rest)
    rest = re.sub(r"^WITH\b", "", rest.strip()).strip()
    if rest:
        atoms.append(f"{rest} ON {target}")
    return atoms


def missing_atoms(source: Iterable[str], target: set[str]) -> list[str]:
    """The rights of ``source`` that ``target`` lacks; ``ALL PRIVILEGES ON x`` covers every privilege on x
    (not GRANT OPTION)."""
    out = []
    for atom in source:
        if atom in target or atom in out:
            continue
        privilege, sep, on = atom.partition(" ON ")
        if sep and privilege != "GRANT OPTION" and f"ALL PRIVILEGES ON {on}" in target:
            continue
        out.append(atom)
    return out


def _ssl_context(tls: TlsConfig) -> ssl.SSLContext | None:
    if tls.mode not in TLS_MODES:
        raise BadInput(f"unknown TLS mode {tls.mode!r}: use one of {', '.join(TLS_MODES)}")
    if tls.mode == "disable":
        return None
    if tls.mode == "require":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE  # encrypted, server not verified: what "require" means
        return ctx
    try:
        ctx = ssl.create_default_context(cafile=tls.ca_bundle)  # None: the system's trusted roots
    except OSError as exc:
        raise BadInput(f"cannot read CA bundle {tls.ca_bundle!r}: {exc.strerror or exc}") from None
    ctx.check_hostname = tls.mode == "verify-full"
    return ctx


def _errno(exc: BaseException) -> int | None:
    first = exc.args[0] if exc.args else None
    return first if isinstance(first, int) else None


def _message(exc: BaseException) -> str:
    """pymysql errors are (errno, message): keep the message."""
    return str(exc.args[1]) if _errno(exc) is not None and len(exc.args) >= 2 else str(exc)


def _classify(exc: BaseException, password: str) -> tuple[bool, str]:
    """(auth_failed, reason) for a failed connection attempt."""
    errno = _errno(exc)
    if errno in _AUTH_ERRNOS:
        return True, "authentication refused"
    message = short_reason(_message(exc), password)
    if errno == _NO_DB_ACCESS_ERRNO:
        return False, "no access to database: " + message
    if errno == _TLS_REQUIRED_ERRNO:
        return False, "unreachable: server did not negotiate TLS (" + message + ")"
    return False, "unreachable: " + message


class _NoTls(Exception):
    pass


class MySQLEngine:
    name = "mysql"

    def __init__(self, *, user_host: str = "%") -> None:
        self.user_host = validate_mysql_host(user_host)

    def _connect(
        self,
        endpoint: Endpoint,
        username: str,
        password: str,
        *,
        database: str | None,
        read_timeout: float,
    ) -> pymysql.connections.Connection[pymysql.cursors.Cursor]:
        ctx = _ssl_context(endpoint.tls)
        conn = pymysql.connect(
            host=endpoint.host,
            port=endpoint.port,
            user=username,
            password=password.encode("utf-8"),  # PyMySQL would send a str as latin-1; servers and PHP use UTF-8
            database=database,
            connect_timeout=endpoint.connect_timeout,
            read_timeout=read_timeout,
            write_timeout=read_timeout,
            ssl=ctx,
            # --db-tls disable means plaintext: without this PyMySQL negotiates TLS whenever the server offers
            # it (and pays ~45 ms per connection for a handshake nobody asked for).
            ssl_disabled=ctx is None,
            autocommit=True,
            charset="utf8mb4",
        )
        if ctx is not None:
            # pymysql only uses TLS when the server offers it; prove that this connection is encrypted.
            try:
                with conn.cursor() as cur:
                    cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
                    row = cur.fetchone()
            except BaseException:
                conn.close()
                raise
            if not row or not row[1]:
                conn.close()
                raise _NoTls
        return conn

    def check_login(self, endpoint: Endpoint, username: str, password: str) -> LoginResult:
        try:
            conn = self._connect(
                endpoint,
                username,
                password,
                database=endpoint.dbname or None,
                read_timeout=endpoint.connect_timeout,
            )
        except _NoTls:
            return LoginResult(ok=False, reason="unreachable: server did not negotiate TLS")
        except pymysql.err.MySQLError as exc:
            auth_failed, reason = _classify(exc, password)
            return LoginResult(ok=False, reason=reason, auth_failed=auth_failed)
        conn.close()
        return LoginResult(ok=True, reason="ok")

    def admin_session(self, endpoint: Endpoint, username: str, password: str) -> MySQLAdminSession:
        """The admin connects without a default database: every statement names its database."""
        where = f"{endpoint.host}:{endpoint.port}"
        try:
            conn = self._connect(
                endpoint,
                username,
                password,
                database=None,
                read_timeout=max(_ADMIN_READ_TIMEOUT, endpoint.connect_timeout),
            )
        except _NoTls:
            raise AdminLoginFailed(
                f"cannot open an admin session to MySQL at {where}: server did not negotiate TLS", auth_failed=False
            ) from None
        except pymysql.err.MySQLError as exc:
            auth_failed, reason = _classify(exc, password)
            if auth_failed:
                raise AdminLoginFailed(
                    f"MySQL at {where} refused the admin login as {username!r}: check the admin secret",
                    auth_failed=True,
                ) from None
            raise AdminLoginFailed(
                f"cannot open an admin session to MySQL at {where}: {reason}", auth_failed=False
            ) from None
        return MySQLAdminSession(conn, login_user=username, user_host=self.user_host)


class MySQLAdminSession:
    def __init__(
        self,
        conn: pymysql.connections.Connection[pymysql.cursors.Cursor],
        *,
        login_user: str,
        user_host: str = "%",
    ) -> None:
        self._conn = conn
        self._login_user = login_user
        self._host = validate_mysql_host(user_host)
        self._is_mariadb: bool | None = None

    def __enter__(self) -> MySQLAdminSession:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # ------------------------------------------------------------ helpers

    def _execute(self, query: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        with self._conn.cursor() as cur:
            cur.execute(query, params)
            return list(cur.fetchall())

    def _mariadb(self) -> bool:
        if self._is_mariadb is None:
            self._is_mariadb = "mariadb" in str(self._execute("SELECT VERSION()")[0][0]).lower()
        return self._is_mariadb

    def _identified(self, password: str) -> tuple[str, str]:
        """The authentication clause (with one ``%s``) and its parameter: a hash, never the password."""
        if self._mariadb():
            return "IDENTIFIED BY PASSWORD %s", native_password_hash(password)
        return "IDENTIFIED WITH caching_sha2_password AS %s", caching_sha2_password_hash(password)

    def _hosts_of(self, username: str) -> list[str]:
        roles = " AND is_role = 'N'" if self._mariadb() else ""  # MariaDB keeps its roles in mysql.user too
        rows = self._execute(f"SELECT Host FROM mysql.user WHERE User = %s{roles} ORDER BY Host", (username,))
        return [str(host) for (host,) in rows]

    def _exists(self, username: str) -> bool:
        return self._host in self._hosts_of(username)

    def _roles_of(self, user: str, host: str) -> list[tuple[str, str, bool]]:
        """The roles granted to ``user@host``: (role, role host, with ADMIN OPTION)."""
        if self._mariadb():
            rows = self._execute(
                "SELECT Role, '', Admin_option FROM mysql.roles_mapping WHERE User = %s AND Host = %s", (user, host)
            )
        else:
            rows = self._execute(
                "SELECT FROM_USER, FROM_HOST, WITH_ADMIN_OPTION FROM mysql.role_edges "
                "WHERE TO_USER = %s AND TO_HOST = %s",
                (user, host),
            )
        return [(str(role), str(role_host), str(admin) == "Y") for role, role_host, admin in rows]

    def _grants_of(self, user: str, host: str) -> tuple[list[str], str]:
        """SHOW GRANTS lines of an account or role, and the grantee as they print it."""
        if self._mariadb() and host == "":  # a MariaDB role has no host part
            rows = self._execute("SHOW GRANTS FOR %s", (user,))
            return [str(line) for (line,) in rows], quote_mysql_identifier(user)
        rows = self._execute("SHOW GRANTS FOR %s@%s", (user, host))
        return [str(line) for (line,) in rows], quote_mysql_identifier(user) + "@" + quote_mysql_identifier(host)

    def _privileges(self, user: str, host: str) -> list[str]:
        """Global privileges of ``user@host``, then those of the roles it holds (transitively)."""
        lines, grantee = self._grants_of(user, host)
        found = global_privileges(lines, grantee)
        seen: set[tuple[str, str]] = {(user, host)}
        pending = [(role, role_host) for role, role_host, _ in self._roles_of(user, host)]
        while pending:
            role, role_host = pending.pop(0)
            if (role, role_host) in seen:
                continue
            seen.add((role, role_host))
            lines, grantee = self._grants_of(role, role_host)
            found += [f"{p} (via role {role})" for p in global_privileges(lines, grantee)]
            pending += [(r, h) for r, h, _ in self._roles_of(role, role_host)]
        return found

    def _marker_host(self) -> str:
        return "" if self._mariadb() else "%"

    def _is_marked(self, username: str, dbname: str) -> bool:
        role, role_host = marker_role(dbname), self._marker_host()
        return any(r == role and h == role_host and not admin for r, h, admin in self._roles_of(username, self._host))

    def _mark(self, username: str, dbname: str) -> None:
        if self._is_marked(username, dbname):
            return
        role = marker_role(dbname)
        if self._mariadb():
            self._execute("CREATE ROLE IF NOT EXISTS %s", (role,))
            self._execute("GRANT %s TO %s@%s", (role, username, self._host))
        else:
            self._execute("CREATE ROLE IF NOT EXISTS %s@'%%'", (role,))
            self._execute("GRANT %s@'%%' TO %s@%s", (role, username, self._host))
        log.info("user_marked", engine="mysql", username=username, dbname=dbname)

    def _source_host(self, username: str) -> str | None:
        """The host part of an existing ``grants_from`` user: ours if it exists there, else its only one."""
        hosts = self._hosts_of(username)
        if self._host in hosts:
            return self._host
        return hosts[0] if len(hosts) == 1 else None

    def _set_password(self, username: str, password: str) -> None:
        host = self._host
        if username == self._login_user:
            # The admin's own account, whatever its host part. Not ALTER USER CURRENT_USER(): on MariaDB
            # 10.11 that is accepted and silently leaves the password unchanged.
            account_user, _, account_host = str(self._execute("SELECT CURRENT_USER()")[0][0]).rpartition("@")
            if account_user == username:
                host = account_host
        clause, secret = self._identified(password)
        self._execute(f"ALTER USER %s@%s {clause}", (username, host, secret))
        log.info("password_set", engine="mysql", username=username)

    def _ensure_grants(self, username: str, dbname: str, grants_from: str | None) -> None:
        source_host = self._source_host(grants_from) if grants_from and grants_from != username else None
        if grants_from is None or source_host is None:
            db = escape_pyformat(quote_mysql_identifier(dbname))
            self._execute(f"GRANT ALL PRIVILEGES ON {db}.* TO %s@%s", (username, self._host))
            return
        copied = 0
        for (line,) in self._execute("SHOW GRANTS FOR %s@%s", (grants_from, source_host)):
            template = grant_template(str(line), grants_from, source_host)
            if template is not None:
                self._execute(template, (username, self._host))
                copied += 1
        log.info("grants_copied", engine="mysql", username=username, source=grants_from, statements=copied)

    # ------------------------------------------------------------ the AdminSession protocol

    def user_exists(self, username: str) -> bool:
        validate_mysql_user(username)
        with translate_errors("checking whether a user exists", (pymysql.err.MySQLError,), describe=_message):
            return self._exists(username)

    def inspect_user(self, username: str, *, dbname: str) -> UserInfo:
        validate_mysql_user(username)
        validate_mysql_database(dbname)
        with translate_errors(f"inspecting user {username!r}", (pymysql.err.MySQLError,), describe=_message):
            hosts = tuple(self._hosts_of(username))
            if self._host not in hosts:
                return UserInfo(exists=False, hosts=hosts)
            return UserInfo(
                exists=True,
                privileges=tuple(self._privileges(username, self._host)),
                marked=self._is_marked(username, dbname),
                hosts=hosts,
            )

    def mark_user(self, username: str, *, dbname: str) -> None:
        validate_mysql_user(username)
        validate_mysql_database(dbname)
        action = f"marking user {username!r} as a slot user"
        with translate_errors(action, (pymysql.err.MySQLError,), describe=_message):
            if not self._exists(username):
                raise DatabaseError(f"user {username!r}@{self._host!r} does not exist: it cannot be marked")
            self._mark(username, dbname)

    def admin_problems(self, *, dbname: str) -> list[str]:
        validate_mysql_database(dbname)
        with translate_errors("reading the admin's own rights", (pymysql.err.MySQLError,), describe=_message):
            account = str(self._execute("SELECT CURRENT_USER()")[0][0])
            user, _, host = account.rpartition("@")
            grantee = quote_mysql_identifier(user) + "@" + quote_mysql_identifier(host)
            lines = [str(line) for (line,) in self._execute("SHOW GRANTS FOR CURRENT_USER()")]
        privileges = set(global_privileges(lines, grantee))
        me = f"'{user}'@'{host}'"
        has_all = "ALL PRIVILEGES ON *.*" in privileges
        problems: list[str] = []
        if not (has_all or "CREATE USER ON *.*" in privileges):
            problems.append(
                f"admin {me} lacks the global CREATE USER privilege: GRANT CREATE USER ON *.* TO {me}, "
                "or use an admin that has it"
            )
        if "GRANT OPTION ON *.*" not in privileges:
            problems.append(
                f"admin {me} lacks GRANT OPTION on *.*: re-grant its privileges WITH GRANT OPTION, "
                "or use an admin that has it"
            )
        if problems:
            return problems  # without global rights, the mysql schema below is not readable either
        role = marker_role(dbname)
        with translate_errors("reading the admin's own rights", (pymysql.err.MySQLError,), describe=_message):
            role_exists = bool(
                self._execute("SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (role, self._marker_host()))
            )
            holds_admin = any(r == role and admin for r, _, admin in self._roles_of(user, host))
        # MySQL 8 lets ROLE_ADMIN (or SUPER) grant any role; MariaDB only the holders of the role's ADMIN OPTION.
        may_grant_any_role = not self._mariadb() and bool(
            {"ROLE_ADMIN ON *.*", "SUPER ON *.*", "ALL PRIVILEGES ON *.*"} & privileges
        )
        if role_exists and not holds_admin and not may_grant_any_role:
            problems.append(
                f"admin {me} may not grant the slot-user marker role {role!r} of database {dbname!r} "
                f"(only holders of its ADMIN OPTION may): as its creator (or root) run "
                f"GRANT `{role}` TO {me} WITH ADMIN OPTION"
            )
        return problems

    def create_user(self, username: str, password: str, *, dbname: str, grants_from: str | None) -> None:
        """Create ``username@user_host`` (or, if it exists, set its password), then ensure its grants.

        Grants: those of ``grants_from`` if that user exists, else ALL PRIVILEGES on ``dbname``. Calling it
        again after a crash between CREATE and GRANT heals the half-made user.
        """
        validate_mysql_user(username)
        validate_mysql_database(dbname)
        if grants_from is not None:
            validate_mysql_user(grants_from)
        action = f"creating user {username!r}"
        with translate_errors(action, (pymysql.err.MySQLError,), password, describe=_message):
            if self._exists(username):
                self._set_password(username, password)
            else:
                clause, secret = self._identified(password)
                self._execute(f"CREATE USER %s@%s {clause}", (username, self._host, secret))
                log.info("user_created", engine="mysql", username=username)
            self._mark(username, dbname)  # first: a crash before it leaves an unmarked user for a short time only
            self._ensure_grants(username, dbname, grants_from)

    def set_password(self, username: str, password: str) -> None:
        validate_mysql_user(username)
        action = f"setting the password of user {username!r}"
        with translate_errors(action, (pymysql.err.MySQLError,), password, describe=_message):
            self._set_password(username, password)

    def show_grants(self, username: str) -> list[str]:
        """SHOW GRANTS, without the authentication clause (it carries the password hash)."""
        validate_mysql_user(username)
        action = f"reading the grants of user {username!r}"
        with translate_errors(action, (pymysql.err.MySQLError,), describe=_message):
            rows = self._execute("SHOW GRANTS FOR %s@%s", (username, self._host))
        return [strip_auth_clause(str(line)) for (line,) in rows]

    # ------------------------------------------------------------ for rotator.adopt

    @property
    def user_host(self) -> str:
        return self._host

    def hosts_of(self, username: str) -> list[str]:
        validate_mysql_user(username)
        with translate_errors("listing a user's hosts", (pymysql.err.MySQLError,), describe=_message):
            return self._hosts_of(username)

    def identified(self, password: str) -> tuple[str, str]:
        """The authentication clause (one ``%s``) and its hash parameter, as CREATE/ALTER USER take them."""
        with translate_errors("reading the server version", (pymysql.err.MySQLError,), describe=_message):
            return self._identified(password)

    def is_mariadb(self) -> bool:
        with translate_errors("reading the server version", (pymysql.err.MySQLError,), describe=_message):
            return self._mariadb()

    def marker_role_exists(self, dbname: str) -> bool:
        with translate_errors("reading the marker role", (pymysql.err.MySQLError,), describe=_message):
            rows = self._execute(
                "SELECT 1 FROM mysql.user WHERE User = %s AND Host = %s", (marker_role(dbname), self._marker_host())
            )
        return bool(rows)

    def mogrify(self, query: str, params: tuple[Any, ...]) -> str:
        with self._conn.cursor() as cur:
            return cur.mogrify(query, params)

    # ------------------------------------------------------------ grants kept equal

    def _atoms_of(self, user: str, hosts: Sequence[str]) -> list[tuple[str, list[str]]]:
        """(SHOW GRANTS line, its rights) of ``user`` at each host, in order."""
        out = []
        for host in hosts:
            for line in self._grants_of(user, host)[0]:
                out.append((line, grant_atoms(line, user, host)))
        return out

    def missing_grants(self, source: str, target: str) -> tuple[str, ...]:
        validate_mysql_user(source)
        validate_mysql_user(target)
        action = f"comparing the grants of users {source!r} and {target!r}"
        with translate_errors(action, (pymysql.err.MySQLError,), describe=_message):
            have = {a for _, atoms in self._atoms_of(target, [self._host]) for a in atoms}
            found = [a for _, atoms in self._atoms_of(source, [self._host]) for a in atoms]
            return tuple(missing_atoms(found, have))

    def missing_grants_both(self, a: str, b: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        validate_mysql_user(a)
        validate_mysql_user(b)
        action = f"comparing the grants of users {b!r} and {a!r}"
        with translate_errors(action, (pymysql.err.MySQLError,), describe=_message):
            of_a = [atom for _, atoms in self._atoms_of(a, [self._host]) for atom in atoms]
            of_b = [atom for _, atoms in self._atoms_of(b, [self._host]) for atom in atoms]
            return tuple(missing_atoms(of_b, set(of_a))), tuple(missing_atoms(of_a, set(of_b)))

    def grant_statements(
        self, source: str, target: str, *, source_hosts: Sequence[str] | None = None
    ) -> list[Statement]:
        """The source's SHOW GRANTS lines (of ``source_hosts``, default ``--mysql-user-host``) that hold a right
        ``target@user_host`` lacks, re-addressed to it."""
        validate_mysql_user(source)
        validate_mysql_user(target)
        hosts = list(source_hosts) if source_hosts is not None else [self._host]
        action = f"comparing the grants of users {source!r} and {target!r}"
        with translate_errors(action, (pymysql.err.MySQLError,), describe=_message):
            have = set()
            if self._exists(target):
                have = {a for _, atoms in self._atoms_of(target, [self._host]) for a in atoms}
            out: list[Statement] = []
            for host in hosts:
                for line, atoms in self._atoms_of(source, [host]):
                    if not missing_atoms(atoms, have):
                        continue
                    template = grant_template(line, source, host)
                    if template is None:
                        continue
                    params = (target, self._host)
                    with self._conn.cursor() as cur:
                        text = cur.mogrify(template, params)
                    out.append(Statement(text, template, params, right="; ".join(atoms)))
                    have.update(atoms)
            return out

    def execute(self, statements: Sequence[Statement]) -> None:
        for statement in statements:
            with translate_errors(statement.text, (pymysql.err.MySQLError,), describe=_message):
                self._execute(statement.query, statement.params)
            log.info("statement", engine="mysql", sql=statement.text)

    def sessions_of(self, username: str) -> UserSessions:
        """From the process list (the admin sees other users' sessions with the PROCESS privilege). It has no
        connect time: a sleeping session was last active TIME seconds ago, any other is active now."""
        validate_mysql_user(username)
        with translate_errors(
            f"reading the sessions of user {username!r}", (pymysql.err.MySQLError,), describe=_message
        ):
            # One round trip per look: the statement's time (NOW(6) is its start), then the sessions, if any.
            rows = self._execute(
                "SELECT UNIX_TIMESTAMP(NOW(6)), p.ID, p.HOST, p.COMMAND, p.TIME FROM (SELECT 1) AS one "
                "LEFT JOIN information_schema.PROCESSLIST AS p ON p.USER = %s AND p.ID <> CONNECTION_ID() "
                "ORDER BY p.ID",
                (username,),
            )
        now = float(rows[0][0])
        return UserSessions(
            now,
            tuple(
                SessionInfo(
                    int(pid), str(host or "hidden"), "", None, now - float(idle or 0) if command == "Sleep" else now
                )
                for _, pid, host, command, idle in rows
                if pid is not None
            ),
        )

    def try_lock(self, name: str) -> bool:
        with translate_errors("taking the lock", (pymysql.err.MySQLError,), describe=_message):
            rows = self._execute("SELECT GET_LOCK(%s, 0)", (mysql_lock_name(name),))
        return bool(rows and rows[0][0] == 1)

    def unlock(self, name: str) -> None:
        with translate_errors("releasing the lock", (pymysql.err.MySQLError,), describe=_message):
            self._execute("SELECT RELEASE_LOCK(%s)", (mysql_lock_name(name),))

    def close(self) -> None:
        if self._conn.open:
            self._conn.close()
