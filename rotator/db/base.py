"""The engine protocol: what the rotation needs from a database server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

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


class AdminSession(Protocol):
    """One admin connection, held for the whole run (it also holds the advisory lock)."""

    def user_exists(self, username: str) -> bool: ...

    def create_user(self, username: str, password: str, *, dbname: str, grants_from: str | None) -> None:
        """Create a login user with ``password``.

        MySQL: copies the grants of ``grants_from`` (an existing user) or grants ALL on ``dbname``.
        PostgreSQL: makes it a member of the shared NOLOGIN owner role of ``dbname`` (created if missing)
        and sets its default role to it, so no object is ever owned by a slot user.
        """
        ...

    def set_password(self, username: str, password: str) -> None: ...

    def show_grants(self, username: str) -> list[str]: ...

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
