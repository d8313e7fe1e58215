"""The engine protocol: what the rotation needs from a database server."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

TlsMode = Literal["disable", "require", "verify-ca", "verify-full"]
TLS_MODES: tuple[TlsMode, ...] = ("disable", "require", "verify-ca", "verify-full")


@dataclass(frozen=True)
class TlsConfig:
    """``disable``: plaintext. ``require``: encrypted, server not verified. ``verify-ca``/``verify-full``:
    encrypted and verified against ``ca_bundle`` (and the host name for verify-full).
    Never falls back to plaintext when TLS is asked for."""

    mode: TlsMode = "require"
    ca_bundle: str | None = None


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int
    dbname: str
    tls: TlsConfig = TlsConfig()
    connect_timeout: float = 5.0


@dataclass(frozen=True)
class LoginResult:
    ok: bool
    reason: str  # "ok", "bad password or no such user", "unreachable: ...", ...
    auth_failed: bool = False  # True when the server refused the credentials (as opposed to an outage)


@dataclass(frozen=True)
class UserInfo:
    """What the admin sees of one user name, read before anything changes.

    ``exists``: the user exists (MySQL: with the engine's host part, ``--mysql-user-host``).
    ``privileges``: the dangerous rights it holds, human-readable, empty when none. PostgreSQL: role
    attributes (``SUPERUSER``, ``CREATEROLE``, ``CREATEDB``, ``REPLICATION``, ``BYPASSRLS``), also those of any
    role it is a member of, and membership in the server's predefined administrative roles. MySQL/MariaDB:
    every global privilege (``SELECT ON *.*``, ``GRANT OPTION ON *.*``, ...), also through its roles, and any
    privilege on the ``mysql`` schema.
    ``marked``: it carries the rotator's slot-user marker for this database (see the engine modules).
    ``owner_member``: PostgreSQL: a member of this database's owner role (how slot users made before the
    marker existed are recognised); MySQL: always False.
    ``hosts``: MySQL: every host part this user name exists with; PostgreSQL: ().
    """

    exists: bool
    privileges: tuple[str, ...] = ()
    marked: bool = False
    owner_member: bool = False
    hosts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Statement:
    """One administration statement: ``text`` is the exact SQL shown by a dry run and the report (identifiers
    quoted as the driver quotes them; a password appears only as a placeholder naming its verifier/hash), and
    ``query``/``params`` are what the driver runs (params may hold a hash: never shown)."""

    text: str
    query: Any = field(repr=False)
    params: tuple[Any, ...] = field(default=(), repr=False)
    right: str = ""  # the right it gives, by name (grant statements)


@dataclass(frozen=True)
class SessionInfo:
    """One open session of a user, as the admin sees it: where it comes from, never what it runs. Times are
    the server's clock (epoch seconds); None where the admin may not see them."""

    id: int
    client: str  # "address:port", "local" (a Unix socket), or "hidden"
    application: str  # PostgreSQL's application_name; "" on MySQL (it has none)
    started: float | None  # when it connected (PostgreSQL)
    last_active: float | None  # when it last ran a statement (now when it is running one)


@dataclass(frozen=True)
class UserSessions:
    now: float  # the server's clock when they were read (epoch seconds)
    sessions: tuple[SessionInfo, ...]


class AdminSession(Protocol):
    """One admin connection, held for the whole run (it also holds the advisory lock)."""

    def user_exists(self, username: str) -> bool: ...

    def inspect_user(self, username: str, *, dbname: str) -> UserInfo:
        """Read what the server says of ``username`` (reads only)."""
        ...

    def mark_user(self, username: str, *, dbname: str) -> None:
        """Give an existing user the rotator's slot-user marker of ``dbname`` (idempotent)."""
        ...

    def admin_problems(self, *, dbname: str) -> list[str]:
        """What the admin lacks to create and alter the slot users of ``dbname``: one line per problem,
        each naming the fix; empty when nothing is missing. Reads only."""
        ...

    def create_user(self, username: str, password: str, *, dbname: str, grants_from: str | None) -> None:
        """Create a login user with ``password`` and give it the slot-user marker of ``dbname``.

        MySQL: copies the grants of ``grants_from`` (an existing user) or grants ALL on ``dbname``.
        PostgreSQL: makes it a member of the shared NOLOGIN owner role of ``dbname`` (created if missing)
        and sets its default role to it, so no object is ever owned by a slot user.
        """
        ...

    def set_password(self, username: str, password: str) -> None: ...

    def show_grants(self, username: str) -> list[str]: ...

    def missing_grants(self, source: str, target: str) -> tuple[str, ...]:
        """The rights ``source`` holds and ``target`` lacks, normalised by name (reads only). MySQL: SHOW GRANTS of
        both accounts (``user@user_host``), split into (privilege, object); PostgreSQL: role memberships,
        ``ALTER ROLE .. SET`` settings (everywhere and in this database) and direct grants on this database's
        objects."""
        ...

    def missing_grants_both(self, a: str, b: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
        """``(missing_grants(b, a), missing_grants(a, b))``: what each of two users lacks of the other's rights,
        each user's rights read once (observe compares the two slots both ways)."""
        ...

    def grant_statements(self, source: str, target: str) -> list[Statement]:
        """The statements that give ``target`` what :meth:`missing_grants` lists (reads only; never revokes)."""
        ...

    def execute(self, statements: Sequence[Statement]) -> None:
        """Run statements built by this session, in order."""
        ...

    def sessions_of(self, username: str) -> UserSessions:
        """The open sessions logged in as ``username`` (other than this one). Reads only."""
        ...

    def try_lock(self, name: str) -> bool:
        """Take a session-level advisory lock without waiting; False if another session holds it."""
        ...

    def unlock(self, name: str) -> None: ...

    def close(self) -> None: ...


class Engine(Protocol):
    name: str

    def check_login(self, endpoint: Endpoint, username: str, password: str) -> LoginResult: ...

    def admin_session(self, endpoint: Endpoint, username: str, password: str) -> AdminSession:
        """Connect as admin; raises DatabaseError (auth_failed distinguishes a refused login)."""
        ...
