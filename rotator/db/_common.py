"""Helpers shared by the engines: identifier checks, quoting, lock names, secret-free error messages.

Identifier rules (checked before any SQL is built; the drivers still do all the quoting):

- every name: non-empty, no control characters (NUL included), no leading or trailing white space
  (MySQL compares names with trailing spaces as equal, and such names are never intended);
- PostgreSQL role and database names: at most 63 bytes in UTF-8 (NAMEDATALEN - 1; the server would
  silently truncate a longer name, so it is refused here);
- MySQL/MariaDB user names: at most 80 characters (MariaDB's limit; MySQL 8 allows 32 and refuses
  longer names itself); host part at most 255 characters; database names at most 64 characters.
"""

from __future__ import annotations

import contextlib
import hashlib
import unicodedata
from collections.abc import Callable, Iterator

from rotator.errors import AdminLoginFailed as AdminLoginFailed  # re-exported: its home is rotator.errors
from rotator.errors import BadInput, DatabaseError

REDACTED = "[REDACTED]"
PG_MAX_IDENTIFIER_BYTES = 63
MYSQL_MAX_USER_CHARS = 80
MYSQL_MAX_HOST_CHARS = 255
MYSQL_MAX_DATABASE_CHARS = 64
MYSQL_MAX_LOCK_NAME_CHARS = 64
_MAX_REASON_CHARS = 200


def validate_name(name: str, *, what: str, max_chars: int | None = None, max_bytes: int | None = None) -> str:
    """Return ``name`` unchanged if it is an acceptable identifier, else raise :class:`BadInput`."""
    if not isinstance(name, str) or not name:
        raise BadInput(f"{what} is empty: give a non-empty name")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise BadInput(f"{what} {name!r} contains a control character: use printable characters only")
    if name != name.strip():
        raise BadInput(f"{what} {name!r} has leading or trailing white space: remove it")
    if max_chars is not None and len(name) > max_chars:
        raise BadInput(f"{what} {name!r} is {len(name)} characters long: the limit is {max_chars}")
    if max_bytes is not None and len(name.encode()) > max_bytes:
        raise BadInput(f"{what} {name!r} is {len(name.encode())} bytes long in UTF-8: the limit is {max_bytes}")
    return name


def validate_pg_identifier(name: str, what: str = "role name") -> str:
    return validate_name(name, what=what, max_bytes=PG_MAX_IDENTIFIER_BYTES)


def validate_mysql_user(name: str) -> str:
    return validate_name(name, what="user name", max_chars=MYSQL_MAX_USER_CHARS)


def validate_mysql_host(host: str) -> str:
    return validate_name(host, what="user host", max_chars=MYSQL_MAX_HOST_CHARS)


def validate_mysql_database(name: str) -> str:
    return validate_name(name, what="database name", max_chars=MYSQL_MAX_DATABASE_CHARS)


def quote_mysql_identifier(name: str) -> str:
    """Backtick-quote a MySQL identifier (a database name), doubling embedded backticks."""
    return "`" + name.replace("`", "``") + "`"


def escape_pyformat(sql: str) -> str:
    """Make literal text safe inside a pymysql statement that also takes ``%s`` parameters."""
    return sql.replace("%", "%%")


def mysql_lock_name(name: str) -> str:
    """GET_LOCK names are limited to 64 characters on MySQL: longer names become a stable hash."""
    validate_name(name, what="lock name")
    if len(name) <= MYSQL_MAX_LOCK_NAME_CHARS:
        return name
    return "rotator:" + hashlib.sha256(name.encode()).hexdigest()[: MYSQL_MAX_LOCK_NAME_CHARS - len("rotator:")]


def pg_lock_key(name: str) -> int:
    """A stable signed 64-bit advisory lock key: the first 8 bytes of SHA-256 of the name."""
    validate_name(name, what="lock name")
    return int.from_bytes(hashlib.sha256(name.encode()).digest()[:8], "big", signed=True)


def scrub(text: str, *secrets: str | None) -> str:
    """Replace each given secret value in ``text`` (longest first)."""
    for secret in sorted((s for s in secrets if s), key=len, reverse=True):
        text = text.replace(secret, REDACTED)
    return text


def short_reason(text: str, *secrets: str | None) -> str:
    """One line, bounded length, no secret: safe to put in a LoginResult or an error message."""
    lines = [line.strip() for line in str(text).splitlines() if line.strip()]
    line = lines[0] if lines else "unknown error"
    line = scrub(line, *secrets)
    if len(line) > _MAX_REASON_CHARS:
        line = line[: _MAX_REASON_CHARS - 3] + "..."
    return line


@contextlib.contextmanager
def translate_errors(
    action: str,
    driver_errors: tuple[type[BaseException], ...],
    *secrets: str | None,
    describe: Callable[[BaseException], str] = str,
) -> Iterator[None]:
    """Turn a driver error into a one-line :class:`DatabaseError` that carries no secret.

    The driver exception is not chained (``from None``): its arguments may quote the statement.
    """
    try:
        yield
    except driver_errors as exc:
        raise DatabaseError(f"{action} failed: {short_reason(describe(exc), *secrets)}") from None
