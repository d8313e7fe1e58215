"""Drop-in for seed 002's ``get_database_credentials(environment, secret_name, region) -> str``.

In local/development/test it returns ``DATABASE_URL`` as it is; elsewhere it builds the URL from the Secrets
Manager secret (``{username, password, host, port, database}``, or a slot or RDS secret), percent-escaped, with a
TTL cache instead of ``@lru_cache`` forever (``cache_clear()`` is kept).

Seed 002's own usage, ``create_async_engine(get_database_credentials(...))``, survives rotations unchanged: the
URL names a SQLAlchemy plugin (``?plugin=rotator_client&rotator_secret=...``, see
:mod:`rotator.client.sqla_plugin`) that hooks the engine to this loader, so each new connection logs in with the
current credentials and retries once with refreshed ones when its login fails. The engine keeps none of the
string's login. Anything else that reads the string (a driver, another process) gets a login that is right
until the next rotation, and must not pass the ``rotator_*`` parameters on: use ``plain=True`` for it.

Unlike seed 002, staging and production fall back to ``DATABASE_URL`` only when that is enabled explicitly
(``ROTATOR_CLIENT_ALLOW_ENV_FALLBACK=1``), with a warning.
"""

from __future__ import annotations

import os
import threading
from typing import Any

from rotator.client.environment import environment_name, from_environment, is_local
from rotator.client.errors import ConfigurationError
from rotator.client.loader import CredentialLoader
from rotator.client.urls import sqlalchemy_url

PLUGIN_NAME = "rotator_client"
# The loader's arguments as the URL's query parameters (names only: the secret's name, never a value).
LOADER_PARAMS = {"environment": "rotator_environment", "secret_name": "rotator_secret", "region": "rotator_region"}


def register_sqlalchemy_plugin() -> bool:
    """Make ``?plugin=rotator_client`` known to SQLAlchemy in this process (done by every call of
    :data:`get_database_credentials`); for a process that gets such a URL from elsewhere. False without
    SQLAlchemy."""
    try:
        from sqlalchemy.dialects import plugins
    except ImportError:
        return False
    if PLUGIN_NAME not in plugins.impls:
        plugins.register(PLUGIN_NAME, "rotator.client.sqla_plugin", "RotatingUrlPlugin")
    return True


class _GetDatabaseCredentials:
    def __init__(self) -> None:
        self._loaders: dict[tuple[str, str | None, str | None], CredentialLoader] = {}
        self._lock = threading.Lock()

    def loader(
        self,
        environment: str | None = None,
        secret_name: str | None = None,
        region: str | None = None,
        **options: Any,
    ) -> CredentialLoader:
        """The process-wide loader behind these arguments (one per secret, so one API call per TTL). ``options``
        (ttl, keys, ...) apply when the loader is made, by the first call."""
        key = (environment_name(environment), secret_name, region)
        loader = self._loaders.get(key)
        if loader is None:
            with self._lock:
                loader = self._loaders.get(key)
                if loader is None:
                    loader = from_environment(environment=environment, secret_id=secret_name, region=region, **options)
                    self._loaders[key] = loader
        return loader

    def __call__(
        self,
        environment: str | None = None,
        secret_name: str | None = None,
        region: str | None = None,
        *,
        driver: str = "postgresql+asyncpg",
        plain: bool = False,
        **options: Any,
    ) -> str:
        """The database URL for ``environment`` (default ``$ENVIRONMENT``, else production). Unless ``plain``, it
        names the plugin that keeps a SQLAlchemy engine made from it on the loader's current credentials."""
        if is_local(environment_name(environment)):
            url = os.environ.get("DATABASE_URL")
            if not url:
                raise ConfigurationError(
                    "DATABASE_URL is not set: for local development put it in .env, "
                    "e.g. postgresql+asyncpg://user:password@localhost:5432/dbname"
                )
            return url
        creds = self.loader(environment, secret_name, region, **options).get()
        if creds.url is not None:  # the explicit DATABASE_URL fallback: as it is, like seed 002
            return creds.url
        if plain or not register_sqlalchemy_plugin():
            return sqlalchemy_url(creds, driver)
        args = {"environment": environment, "secret_name": secret_name, "region": region}
        query = {"plugin": PLUGIN_NAME, **{LOADER_PARAMS[k]: v for k, v in args.items() if v is not None}}
        return sqlalchemy_url(creds, driver, **query)

    def cache_clear(self) -> None:
        """Forget every cached value (``functools.lru_cache`` API); the next call fetches again."""
        with self._lock:
            loaders = list(self._loaders.values())
        for loader in loaders:
            loader.invalidate()


get_database_credentials = _GetDatabaseCredentials()
