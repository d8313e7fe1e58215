"""psycopg_pool: each new pooled connection logs in with the loader's current credentials.

``ConnectionPool(**pool_options(loader), min_size=..., ...)`` sets three pool arguments:

- ``kwargs``: a callable (psycopg_pool >= 3.3) returning the current credentials as connection arguments;
- ``connection_class``: a ``psycopg.Connection`` subclass whose ``connect`` retries once with refreshed
  credentials when the login fails on them (the pool would otherwise retry with the same stale ones);
  the caller's host/port/sslmode (the options, or the pool's ``conninfo``) win over the secret's;
- ``reset``: a connection made with another user/host/port/database than the loader's current credentials
  (after a blue/green flip) is closed when it comes back to the pool, and the pool opens a replacement. Its
  session was still valid (a password change does not end sessions), so no caller waits or fails for it;
  psycopg_pool logs a warning for each connection replaced this way.

psycopg is imported when these functions are called, never by ``import rotator.client``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rotator.client.credentials import DbCredentials
from rotator.client.loader import CredentialLoader
from rotator.client.urls import psycopg_kwargs

_LOGIN_KEYS = frozenset({"user", "password"})
_UNSET = object()


def pool_kwargs(loader: CredentialLoader, **options: Any) -> Callable[[], dict[str, Any]]:
    """For ``ConnectionPool(kwargs=...)``: connection arguments with the current credentials, plus ``options``."""
    return lambda: psycopg_kwargs(loader.get(), **options)


def connection_class(loader: CredentialLoader, base: type[Any] | None = None, **options: Any) -> type[Any]:
    """A subclass of ``base`` (``psycopg.Connection``) that logs in through ``loader.connect``. User and password
    come from the loader; ``options``, the pool's ``conninfo`` and its ``kwargs`` (host, port, sslmode...) win
    over the secret's."""
    import psycopg.conninfo

    if base is None:
        base = psycopg.Connection

    class RotatingConnection(base):  # type: ignore[misc,valid-type]
        rotator_identity: tuple[str, str | None, int | None, str | None] | None = None

        @classmethod
        def connect(cls, conninfo: str = "", **kwargs: Any) -> Any:
            # The caller's choices: the conninfo, the options, and pool kwargs that are not the secret's own.
            current = psycopg_kwargs(loader.get())
            given = {k: v for k, v in kwargs.items() if current.get(k, _UNSET) != v}
            chosen = {
                k: v
                for k, v in {**psycopg.conninfo.conninfo_to_dict(conninfo), **given, **options}.items()
                if k not in _LOGIN_KEYS
            }

            def factory(creds: DbCredentials) -> Any:
                return super(RotatingConnection, cls).connect(conninfo, **{**kwargs, **psycopg_kwargs(creds, **chosen)})

            conn, creds = loader.connect_with_credentials(factory)
            conn.rotator_identity = creds.identity
            return conn

    return RotatingConnection


def reset(loader: CredentialLoader, then: Callable[[Any], None] | None = None) -> Callable[[Any], None]:
    """For ``ConnectionPool(reset=...)``: close a returned connection of a rotated-away login (the pool replaces
    it); otherwise run ``then``, your own reset function if you have one."""

    def _reset(conn: Any) -> None:
        made_with = getattr(conn, "rotator_identity", None)
        if made_with is not None and made_with != loader.get().identity:
            conn.close()
            return
        if then is not None:
            then(conn)

    return _reset


def pool_options(loader: CredentialLoader, **options: Any) -> dict[str, Any]:
    """``kwargs``, ``connection_class`` and ``reset`` for ``psycopg_pool.ConnectionPool``. ``options`` are extra
    connection arguments (``sslmode``, ``connect_timeout``...)."""
    return {
        "kwargs": pool_kwargs(loader, **options),
        "connection_class": connection_class(loader, **options),
        "reset": reset(loader),
    }
