"""SQLAlchemy: every new pooled connection logs in with the loader's current credentials.

:func:`install` adds two event hooks to an engine:

- ``do_connect``: the credentials come from the loader at each new DB-API connection, through the dialect's
  own ``create_connect_args``, so each driver gets its own argument names and the engine URL never holds a
  password. User and password always come from the loader; host, port and database only where the engine URL
  and ``connect_args`` name none, so an engine pointed at a PgBouncer sidecar stays on it. PyMySQL and aiomysql
  get the password's UTF-8 bytes. A login that fails on its credentials is retried once with refreshed ones
  (:meth:`CredentialLoader.connect`).
- ``checkout`` (``recycle_on_rotation``): a pooled session made with another user/host/port/database than the
  loader's current credentials is replaced at checkout. After a blue/green flip this moves the pool off the old
  slot as soon as the loader knows of the flip. A password change of the same user leaves sessions alone.

SQLAlchemy is imported when these functions are called, never by ``import rotator.client``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from rotator.client.credentials import DbCredentials
from rotator.client.loader import CredentialLoader
from rotator.client.urls import default_drivername, mysql_password

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Engine

IDENTITY_KEY = "rotator.client.identity"
_PASSWORD_KEYS = frozenset({"password", "passwd"})
_LOGIN_KEYS = _PASSWORD_KEYS | {"user", "username"}
_UNSET = object()
_LATIN1_DRIVERS = frozenset({"pymysql", "aiomysql"})  # they encode a str password as latin-1


def install(engine: Any, loader: CredentialLoader, *, recycle_on_rotation: bool = True) -> None:
    """Hook ``engine`` (an ``Engine``, or an ``AsyncEngine`` through its ``sync_engine``) to ``loader``."""
    from sqlalchemy import event, exc

    sync_engine: Engine = getattr(engine, "sync_engine", engine)
    dialect = sync_engine.dialect
    base_url = sync_engine.url
    _, base_params = dialect.create_connect_args(base_url)

    def credential_params(creds: DbCredentials) -> dict[str, Any]:
        url = base_url.set(username=creds.username, password=creds.password)
        # The caller's host/port/database win over the secret's (a sidecar, a proxy, a tunnel).
        if creds.host and not base_url.host:
            url = url.set(host=creds.host)
        if creds.port and not base_url.port:
            url = url.set(port=creds.port)
        if creds.dbname and not base_url.database:
            url = url.set(database=creds.dbname)
        _, params = dialect.create_connect_args(url)
        # Only what the credentials changed: connect_args and URL options of the engine stay as they are.
        changed = {k: v for k, v in params.items() if k not in base_params or base_params[k] != v}
        if dialect.name in ("mysql", "mariadb") and dialect.driver in _LATIN1_DRIVERS:
            for key in _PASSWORD_KEYS & changed.keys():
                changed[key] = mysql_password(creds.password, dialect.driver)
        return changed

    @event.listens_for(sync_engine, "do_connect")
    def _do_connect(dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> Any:
        # What connect_args set (not the URL): the caller's choice, kept over the secret's except the login.
        chosen = {k: v for k, v in cparams.items() if k not in _LOGIN_KEYS and base_params.get(k, _UNSET) != v}

        def factory(creds: DbCredentials) -> Any:
            return dialect.connect(*cargs, **{**cparams, **credential_params(creds), **chosen})

        conn, creds = loader.connect_with_credentials(factory)
        conn_rec.info[IDENTITY_KEY] = creds.identity
        return conn

    if recycle_on_rotation:

        @event.listens_for(sync_engine, "checkout")
        def _checkout(dbapi_conn: Any, conn_rec: Any, proxy: Any) -> None:
            made_with = conn_rec.info.get(IDENTITY_KEY)
            if made_with is not None and made_with != loader.get().identity:
                # The pool discards this session and connects again (through do_connect above).
                raise exc.DisconnectionError("database credentials rotated: replacing a session of the old login")


def create_engine(
    loader: CredentialLoader,
    url: str | URL | None = None,
    *,
    recycle_on_rotation: bool = True,
    **kwargs: Any,
) -> Engine:
    """``sqlalchemy.create_engine`` with :func:`install` applied. ``url`` names the driver and options only
    (``"postgresql+psycopg://?sslmode=require"``); by default it follows the secret's engine."""
    import sqlalchemy

    if url is None:
        url = default_drivername(loader.get().engine) + "://"
    engine = sqlalchemy.create_engine(url, **kwargs)
    install(engine, loader, recycle_on_rotation=recycle_on_rotation)
    return engine
