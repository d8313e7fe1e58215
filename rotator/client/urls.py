"""Connection arguments, DSNs and URLs from :class:`DbCredentials`, escaped for each consumer.

- driver keyword arguments (no escaping needed): :func:`psycopg_kwargs`, :func:`pymysql_kwargs`,
  :func:`asyncpg_kwargs`, :func:`aiomysql_kwargs`;
- libpq keyword/value DSN (``host='h' password='it''s'``): :func:`psycopg_conninfo`;
- libpq URI and SQLAlchemy URL (percent-encoded user, password and database): :func:`postgres_uri`,
  :func:`sqlalchemy_url`.

A host that starts with ``/`` is a Unix socket directory: URLs carry it as ``?host=`` (libpq and SQLAlchemy's
PostgreSQL dialects read it from there).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote, urlencode

from rotator.client.credentials import DbCredentials
from rotator.client.errors import ConfigurationError

DEFAULT_DRIVERS = {"postgres": "postgresql+psycopg", "mysql": "mysql+pymysql"}


def psycopg_kwargs(creds: DbCredentials, **options: Any) -> dict[str, Any]:
    """Keyword arguments for ``psycopg.connect`` / ``psycopg2.connect``; ``options`` are added as they are."""
    out: dict[str, Any] = {"user": creds.username, "password": creds.password}
    if creds.host:
        out["host"] = creds.host
    if creds.port:
        out["port"] = creds.port
    if creds.dbname:
        out["dbname"] = creds.dbname
    out.update(options)
    return out


def asyncpg_kwargs(creds: DbCredentials, **options: Any) -> dict[str, Any]:
    """Keyword arguments for ``asyncpg.connect`` / ``asyncpg.create_pool`` (``database=``)."""
    out = psycopg_kwargs(creds)
    if "dbname" in out:
        out["database"] = out.pop("dbname")
    out.update(options)
    return out


def mysql_password(password: str, driver: str = "pymysql") -> str | bytes:
    """The password as the MySQL driver must be given it so that the server gets its UTF-8 bytes.

    PyMySQL and aiomysql encode a ``str`` password as latin-1 (so ``é`` would be sent as one byte, and a
    character outside latin-1 would fail). PyMySQL takes ``bytes`` as they are; aiomysql calls
    ``.encode("latin1")`` on whatever it is given, so it gets the str whose latin-1 encoding is the UTF-8 bytes.
    """
    raw = password.encode("utf-8")
    if driver == "aiomysql":
        return raw.decode("latin-1")
    return raw


def pymysql_kwargs(creds: DbCredentials, **options: Any) -> dict[str, Any]:
    """Keyword arguments for ``pymysql.connect``; the password as UTF-8 bytes (see :func:`mysql_password`)."""
    return _mysql_kwargs(creds, "pymysql", "database", options)


def aiomysql_kwargs(creds: DbCredentials, **options: Any) -> dict[str, Any]:
    """Keyword arguments for ``aiomysql.connect`` / ``aiomysql.create_pool`` (``db=``; UTF-8 password)."""
    return _mysql_kwargs(creds, "aiomysql", "db", options)


def _mysql_kwargs(creds: DbCredentials, driver: str, db_key: str, options: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"user": creds.username, "password": mysql_password(creds.password, driver)}
    if creds.host:
        out["host"] = creds.host
    if creds.port:
        out["port"] = creds.port
    if creds.dbname:
        out[db_key] = creds.dbname
    out.update(options)
    return out


def _libpq_value(value: object) -> str:
    text = str(value)
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def psycopg_conninfo(creds: DbCredentials, **options: Any) -> str:
    """A libpq keyword/value connection string; every value single-quoted and backslash-escaped."""
    return " ".join(f"{key}={_libpq_value(value)}" for key, value in psycopg_kwargs(creds, **options).items())


def _netloc(creds: DbCredentials, query: dict[str, Any]) -> str:
    userinfo = quote(creds.username, safe="") + ":" + quote(creds.password, safe="")
    host = creds.host or ""
    if host.startswith("/"):
        query.setdefault("host", host)
        host = ""
    elif ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6 literal
    port = f":{creds.port}" if creds.port and host else ""
    return f"{userinfo}@{host}{port}"


def _url(scheme: str, creds: DbCredentials, query: dict[str, Any]) -> str:
    query = dict(query)
    netloc = _netloc(creds, query)
    path = "/" + quote(creds.dbname, safe="") if creds.dbname else ""
    tail = "?" + urlencode(query) if query else ""
    return f"{scheme}://{netloc}{path}{tail}"


def postgres_uri(creds: DbCredentials, *, scheme: str = "postgresql", **query: Any) -> str:
    """A libpq URI (``psycopg.connect(uri)``); ``query`` becomes connection parameters (``sslmode=...``)."""
    return _url(scheme, creds, query)


def default_drivername(engine: str | None) -> str:
    if engine not in DEFAULT_DRIVERS:
        raise ConfigurationError(
            "the secret names no known engine: pass a drivername such as postgresql+psycopg or mysql+pymysql"
        )
    return DEFAULT_DRIVERS[engine]


def sqlalchemy_url(creds: DbCredentials, drivername: str | None = None, **query: Any) -> str:
    """``dialect+driver://user:password@host:port/dbname``, percent-encoded so that ``make_url`` reads it back.

    ``drivername`` defaults from the secret's engine: postgresql+psycopg or mysql+pymysql. Note that this string
    holds the password: prefer :func:`rotator.client.sqla.create_engine`, which keeps it out of the engine URL.
    """
    return _url(drivername or default_drivername(creds.engine), creds, query)
