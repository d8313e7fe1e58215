"""Pick the source from the environment, with seed 002's rules.

- ``ENVIRONMENT`` in local, development, dev, test, testing: ``DATABASE_URL``. (When it is unset but a secret
  is configured, the secret is used: LocalStack or moto in development.)
- Any other environment (staging, production, or unset, which counts as production): the secret store. The
  ``DATABASE_URL`` fallback is used there only when enabled explicitly (``allow_env_fallback=True`` or
  ``ROTATOR_CLIENT_ALLOW_ENV_FALLBACK=1``), only while the store gives no value, and each use logs a warning.

Every argument has an environment-variable twin (argument first):

==========================  ==============================================================================
``secret_id``               ``ROTATOR_CLIENT_SECRET_ID``, else seed 002's ``DB_SECRETS_MANAGER_KEY_NAME``
                            (a Secrets Manager name or ARN, or an SSM parameter ARN)
``parameter``               ``ROTATOR_CLIENT_PARAMETER`` (an SSM parameter name or ARN)
``vault_path``              ``ROTATOR_CLIENT_VAULT_PATH`` (a KV v2 path; Vault/OpenBao from ``VAULT_ADDR``,
                            ``VAULT_TOKEN`` or ``VAULT_ROLE_ID``/``VAULT_SECRET_ID``: :class:`VaultSession`)
``vault_mount``             ``ROTATOR_CLIENT_VAULT_MOUNT`` (the KV v2 mount, ``secret`` by default)
``region``                  ``ROTATOR_CLIENT_REGION``, ``AWS_REGION``, then boto3's own default
``endpoint_url``            ``ROTATOR_CLIENT_ENDPOINT_URL`` (boto3 also honours ``AWS_ENDPOINT_URL``)
``ttl``                     ``ROTATOR_CLIENT_TTL`` (seconds)
``keys``                    ``ROTATOR_CLIENT_KEYS`` (``username=user,dbname=db|database``)
``allow_env_fallback``      ``ROTATOR_CLIENT_ALLOW_ENV_FALLBACK`` (1/true/yes)
``metrics``                 ``ROTATOR_CLIENT_METRICS`` (``emf``: CloudWatch EMF lines on stdout, rotator.metrics)
==========================  ==============================================================================
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from rotator.client._log import log
from rotator.client.credentials import KeyNames
from rotator.client.errors import ConfigurationError
from rotator.client.loader import CredentialLoader
from rotator.client.sources import DatabaseUrlSource, source_for

LOCAL_ENVIRONMENTS = frozenset({"local", "development", "dev", "test", "testing"})
_TRUE = frozenset({"1", "true", "yes", "on"})


def environment_name(environment: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    environ = os.environ if environ is None else environ
    return (environment or environ.get("ENVIRONMENT") or "production").strip().lower()


def is_local(environment: str) -> bool:
    return environment in LOCAL_ENVIRONMENTS


def from_environment(
    *,
    environment: str | None = None,
    secret_id: str | None = None,
    parameter: str | None = None,
    vault_path: str | None = None,
    vault_mount: str | None = None,
    region: str | None = None,
    endpoint_url: str | None = None,
    allow_env_fallback: bool | None = None,
    database_url_var: str = "DATABASE_URL",
    environ: Mapping[str, str] | None = None,
    **options: Any,
) -> CredentialLoader:
    """A loader configured from arguments, else environment variables (see the module doc)."""
    environ = os.environ if environ is None else environ
    env = environment_name(environment, environ)
    secret_id = secret_id or environ.get("ROTATOR_CLIENT_SECRET_ID") or environ.get("DB_SECRETS_MANAGER_KEY_NAME")
    parameter = parameter or environ.get("ROTATOR_CLIENT_PARAMETER")
    vault_path = vault_path or environ.get("ROTATOR_CLIENT_VAULT_PATH")
    configured = [
        n for n, v in (("a secret", secret_id), ("an SSM parameter", parameter), ("a Vault path", vault_path)) if v
    ]
    if len(configured) > 1:
        raise ConfigurationError(f"both {' and '.join(configured)} are configured: keep one")
    if allow_env_fallback is None:
        allow_env_fallback = environ.get("ROTATOR_CLIENT_ALLOW_ENV_FALLBACK", "").strip().lower() in _TRUE
    if "ttl" not in options and environ.get("ROTATOR_CLIENT_TTL"):
        try:
            options["ttl"] = float(environ["ROTATOR_CLIENT_TTL"])
        except ValueError:
            raise ConfigurationError("ROTATOR_CLIENT_TTL must be a number of seconds") from None
    if "keys" not in options and environ.get("ROTATOR_CLIENT_KEYS"):
        try:
            options["keys"] = KeyNames.parse(environ["ROTATOR_CLIENT_KEYS"])
        except ValueError as exc:
            raise ConfigurationError(f"ROTATOR_CLIENT_KEYS: {exc}") from None
    if "metrics" not in options and environ.get("ROTATOR_CLIENT_METRICS"):
        if environ["ROTATOR_CLIENT_METRICS"].strip().lower() != "emf":
            raise ConfigurationError("ROTATOR_CLIENT_METRICS must be emf (CloudWatch EMF lines on stdout) or unset")
        options["metrics"] = "emf"
    has_url = bool(environ.get(database_url_var))

    if is_local(env) and (has_url or not (secret_id or parameter or vault_path)):
        return CredentialLoader(DatabaseUrlSource(database_url_var, environ=environ), **options)

    ref = secret_id or parameter or vault_path
    if not ref:
        if allow_env_fallback and has_url:
            return CredentialLoader(DatabaseUrlSource(database_url_var, environ=environ, warn=True), **options)
        raise ConfigurationError(
            f"ENVIRONMENT={env} needs a secret: set ROTATOR_CLIENT_SECRET_ID (or ROTATOR_CLIENT_PARAMETER, "
            "or ROTATOR_CLIENT_VAULT_PATH); "
            f"{database_url_var} is used outside local/development/test only with ROTATOR_CLIENT_ALLOW_ENV_FALLBACK=1"
        )
    if has_url and not allow_env_fallback and not is_local(env):
        log.warning("db_credentials_env_ignored", var=database_url_var, environment=env)
    fallback = DatabaseUrlSource(database_url_var, environ=environ, warn=True) if allow_env_fallback else None
    if vault_path:
        from rotator.client.vault import VaultKvSource, VaultSession

        mount = vault_mount or environ.get("ROTATOR_CLIENT_VAULT_MOUNT") or "secret"
        vault = VaultKvSource(VaultSession(environ=environ), vault_path, mount=mount)
        return CredentialLoader(vault, fallback=fallback, **options)
    source = source_for(
        ref,
        kind="ssm" if parameter else None,
        region=region or environ.get("ROTATOR_CLIENT_REGION") or environ.get("AWS_REGION") or None,
        endpoint_url=endpoint_url or environ.get("ROTATOR_CLIENT_ENDPOINT_URL") or None,
    )
    return CredentialLoader(source, fallback=fallback, **options)
