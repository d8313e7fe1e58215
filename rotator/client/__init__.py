"""Database credentials for API services: slot-aware, cached, and a login that survives a rotation.

::

    from rotator.client import CredentialLoader, psycopg_kwargs

    loader = CredentialLoader.from_secret("prod/app/db")          # name or ARN; SSM ARNs work too
    conn = loader.connect(lambda c: psycopg.connect(**psycopg_kwargs(c)))

Integrations (imported on use, so this package needs only boto3 and structlog): :mod:`rotator.client.sqla`
(SQLAlchemy), :mod:`rotator.client.pgpool` (psycopg_pool), :mod:`rotator.client.vault` (Vault/OpenBao, needs
hvac: ``pip install 'rotator[vault]'``), :mod:`rotator.client.seed002` (drop-in for seed 002's
``get_database_credentials``). See docs/client.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rotator.client.arn import parse_arn, sanitize_secret_arn_for_logging
    from rotator.client.cache import CacheStats
    from rotator.client.credentials import DbCredentials, KeyNames, parse_database_url, parse_secret
    from rotator.client.environment import from_environment
    from rotator.client.errors import (
        ConfigurationError,
        CredentialError,
        CredentialFormatError,
        CredentialsUnavailable,
        is_auth_failure,
    )
    from rotator.client.loader import CredentialLoader
    from rotator.client.seed002 import get_database_credentials
    from rotator.client.sources import DatabaseUrlSource, SecretsManagerSource, SsmParameterSource, source_for
    from rotator.client.urls import (
        aiomysql_kwargs,
        asyncpg_kwargs,
        postgres_uri,
        psycopg_conninfo,
        psycopg_kwargs,
        pymysql_kwargs,
        sqlalchemy_url,
    )
    from rotator.client.vault import VaultDatabaseSource, VaultKvSource, VaultSession

# Each name's module, imported on first use: `import rotator.client` (and the rotator command, whose settings
# read rotator.client.cache) loads nothing else.
_MODULES = {
    "parse_arn": "rotator.client.arn",
    "sanitize_secret_arn_for_logging": "rotator.client.arn",
    "CacheStats": "rotator.client.cache",
    "DbCredentials": "rotator.client.credentials",
    "KeyNames": "rotator.client.credentials",
    "parse_database_url": "rotator.client.credentials",
    "parse_secret": "rotator.client.credentials",
    "from_environment": "rotator.client.environment",
    "ConfigurationError": "rotator.client.errors",
    "CredentialError": "rotator.client.errors",
    "CredentialFormatError": "rotator.client.errors",
    "CredentialsUnavailable": "rotator.client.errors",
    "is_auth_failure": "rotator.client.errors",
    "CredentialLoader": "rotator.client.loader",
    "get_database_credentials": "rotator.client.seed002",
    "DatabaseUrlSource": "rotator.client.sources",
    "SecretsManagerSource": "rotator.client.sources",
    "SsmParameterSource": "rotator.client.sources",
    "source_for": "rotator.client.sources",
    "aiomysql_kwargs": "rotator.client.urls",
    "asyncpg_kwargs": "rotator.client.urls",
    "postgres_uri": "rotator.client.urls",
    "psycopg_conninfo": "rotator.client.urls",
    "psycopg_kwargs": "rotator.client.urls",
    "pymysql_kwargs": "rotator.client.urls",
    "sqlalchemy_url": "rotator.client.urls",
    "VaultDatabaseSource": "rotator.client.vault",
    "VaultKvSource": "rotator.client.vault",
    "VaultSession": "rotator.client.vault",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


__all__ = [
    "CacheStats",
    "ConfigurationError",
    "CredentialError",
    "CredentialFormatError",
    "CredentialLoader",
    "CredentialsUnavailable",
    "DatabaseUrlSource",
    "DbCredentials",
    "KeyNames",
    "SecretsManagerSource",
    "SsmParameterSource",
    "VaultDatabaseSource",
    "VaultKvSource",
    "VaultSession",
    "aiomysql_kwargs",
    "asyncpg_kwargs",
    "from_environment",
    "get_database_credentials",
    "is_auth_failure",
    "parse_arn",
    "parse_database_url",
    "parse_secret",
    "postgres_uri",
    "psycopg_conninfo",
    "psycopg_kwargs",
    "pymysql_kwargs",
    "sanitize_secret_arn_for_logging",
    "source_for",
    "sqlalchemy_url",
]
