"""The client's errors, and the one question a retry depends on: did this login fail on its credentials?"""

from __future__ import annotations

from rotator.errors import BadInput, RotatorError, SecretFormatError, StoreError


class CredentialError(RotatorError):
    """Base of every error raised by :mod:`rotator.client`."""


class CredentialsUnavailable(CredentialError, StoreError):
    """No credentials could be fetched and none were cached. The cause is chained; the message names the source."""


class CredentialFormatError(SecretFormatError, CredentialError):
    """The secret does not have the expected shape. Messages name the key, never a value."""


class ConfigurationError(BadInput, CredentialError):
    """The loader is not configured for this environment (no secret, no DATABASE_URL, both of two options...)."""


MYSQL_ACCESS_DENIED = 1045
AUTH_SQLSTATES = frozenset({"28000", "28P01", "08P01"})

# libpq reports connection-time errors as text only (psycopg's ``sqlstate`` is None then), so PostgreSQL and
# PgBouncer failures are also recognised by their (English) messages. Each one maps to a SQLSTATE above.
_AUTH_MESSAGES = (
    "password authentication failed",  # 28P01, also PgBouncer (08P01)
    "sasl authentication failed",  # PgBouncer 08P01
    "server login failed",  # PgBouncer 08P01: wrong password towards the server
    "server login has been failing",  # PgBouncer 08P01
    "no such user",  # PgBouncer 08P01
    "no pg_hba.conf entry",  # 28000
    "pg_hba.conf rejects connection",  # 28000
    "does not exist",  # 28000 role "x" does not exist (checked together with "role")
)


def _sqlstate(exc: BaseException) -> str | None:
    for attr in ("sqlstate", "pgcode"):  # psycopg 3, asyncpg, mysql-connector / psycopg2
        value = getattr(exc, attr, None)
        if isinstance(value, str) and value:
            return value
    args = exc.args
    if args and isinstance(args[0], dict):  # pg8000: the server's error fields
        code = args[0].get("C")
        if isinstance(code, str):
            return code
    return None


def _mysql_errno(exc: BaseException) -> int | None:
    if isinstance(exc, OSError):  # OSError.errno is an operating-system error number
        return None
    errno = getattr(exc, "errno", None)  # mysql-connector
    if isinstance(errno, int):
        return errno
    args = exc.args
    # PyMySQL, mysqlclient, aiomysql, asyncmy: (code, message)
    if len(args) >= 2 and isinstance(args[0], int) and isinstance(args[1], str):
        return args[0]
    return None


def _message_is_auth_failure(exc: BaseException) -> bool:
    text = str(exc).lower()
    for needle in _AUTH_MESSAGES:
        if needle in text:
            return needle != "does not exist" or 'role "' in text
    return False


def _chain(exc: BaseException) -> list[BaseException]:
    """The error, the DB-API error SQLAlchemy wrapped (``.orig``), and their causes/contexts."""
    seen: list[BaseException] = []
    todo: list[BaseException | None] = [exc]
    while todo and len(seen) < 16:
        item = todo.pop(0)
        if item is None or any(item is s for s in seen):
            continue
        seen.append(item)
        orig = getattr(item, "orig", None)
        todo.extend([orig if isinstance(orig, BaseException) else None, item.__cause__, item.__context__])
    return seen


def is_auth_failure(exc: BaseException) -> bool:
    """True when a login failed on its credentials: MySQL 1045 / SQLSTATE 28000, PostgreSQL 28P01 / 28000,
    PgBouncer 08P01. Works on raw driver errors and on SQLAlchemy's wrappers."""
    for item in _chain(exc):
        state = _sqlstate(item)
        if state is not None:
            if state in AUTH_SQLSTATES:
                return True
            continue
        if _mysql_errno(item) == MYSQL_ACCESS_DENIED:
            return True
        if _message_is_auth_failure(item):
            return True
    return False
