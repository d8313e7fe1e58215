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
