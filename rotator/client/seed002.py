"""Drop-in for seed 002's ``get_database_credentials(environment, secret_name, region) -> str``.

Same behaviour, minus the staleness: in local/development/test it returns ``DATABASE_URL`` as it is; elsewhere it
builds the URL from the Secrets Manager secret (``{username, password, host, port, database}``, or a slot or
RDS secret), percent-escaped. Instead of ``@lru_cache`` forever, the value is cached with a TTL and refreshed
(see :mod:`rotator.client.cache`), so a rotated secret is picked up without a restart; ``cache_clear()`` is
kept for callers of the lru_cache API. To also survive a login failure between two refreshes, give the engine
the loader: ``rotator.client.sqla.install(engine, get_database_credentials.loader(...))``.

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
        **options: Any,
    ) -> str:
        """The database URL for ``environment`` (default ``$ENVIRONMENT``, else production)."""
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
        return sqlalchemy_url(creds, driver)

    def cache_clear(self) -> None:
        """Forget every cached value (``functools.lru_cache`` API); the next call fetches again."""
        with self._lock:
            loaders = list(self._loaders.values())
        for loader in loaders:
            loader.invalidate()


get_database_credentials = _GetDatabaseCredentials()
