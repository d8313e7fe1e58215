"""Seed 002's environment rules, the env-var twins of every setting, and the drop-in in local mode."""

from __future__ import annotations

import pytest
import structlog.testing

from rotator.client import (
    ConfigurationError,
    CredentialsUnavailable,
    KeyNames,
    from_environment,
    get_database_credentials,
)
from rotator.client.sources import DatabaseUrlSource, SecretsManagerSource, SsmParameterSource

URL = "postgresql+asyncpg://dev:dev-password@localhost:5432/app"
SSM_ARN = "arn:aws:ssm:eu-west-1:123456789012:parameter/app/db"


@pytest.mark.parametrize("env", ["local", "development", "dev", "test", "TESTING"])
def test_local_environments_use_database_url(env: str) -> None:
    loader = from_environment(environ={"ENVIRONMENT": env, "DATABASE_URL": URL, "ROTATOR_CLIENT_SECRET_ID": "x"})
    assert isinstance(loader.source, DatabaseUrlSource)
    assert loader.get().username == "dev"


def test_local_without_database_url_may_use_a_secret_or_fails() -> None:
    loader = from_environment(environ={"ENVIRONMENT": "local", "ROTATOR_CLIENT_SECRET_ID": "app/db"})
    assert isinstance(loader.source, SecretsManagerSource)
    with pytest.raises(CredentialsUnavailable, match="DATABASE_URL is not set"):
        from_environment(environ={"ENVIRONMENT": "local"}).get()


@pytest.mark.parametrize("env", ["staging", "production", None])
def test_production_uses_the_secret_and_ignores_database_url(env: str | None) -> None:
    environ = {"DATABASE_URL": URL, "ROTATOR_CLIENT_SECRET_ID": "app/db"}
    if env:
        environ["ENVIRONMENT"] = env
    with structlog.testing.capture_logs() as logs:
        loader = from_environment(environ=environ)
    assert isinstance(loader.source, SecretsManagerSource)
    assert loader.fallback is None
    assert [e["event"] for e in logs] == ["db_credentials_env_ignored"]
    assert logs[0]["log_level"] == "warning"


def test_production_without_a_secret_is_an_error_unless_the_fallback_is_enabled() -> None:
    with pytest.raises(ConfigurationError, match="ROTATOR_CLIENT_ALLOW_ENV_FALLBACK"):
        from_environment(environ={"ENVIRONMENT": "production", "DATABASE_URL": URL})
    loader = from_environment(
        environ={"ENVIRONMENT": "production", "DATABASE_URL": URL, "ROTATOR_CLIENT_ALLOW_ENV_FALLBACK": "1"}
    )
    with structlog.testing.capture_logs() as logs:
        assert loader.get().username == "dev"
    assert any(e["event"] == "db_credentials_env_fallback" and e["log_level"] == "warning" for e in logs)
    assert "dev-password" not in repr(logs)


def test_production_fallback_is_wired_behind_the_secret() -> None:
    loader = from_environment(
        environ={"ROTATOR_CLIENT_SECRET_ID": "app/db", "DATABASE_URL": URL},
        allow_env_fallback=True,
    )
    assert isinstance(loader.source, SecretsManagerSource)
    assert isinstance(loader.fallback, DatabaseUrlSource) and loader.fallback.warn


def test_sources_and_settings_from_variables() -> None:
    seed = from_environment(environ={"DB_SECRETS_MANAGER_KEY_NAME": "pazpaz/database-credentials"})
    assert isinstance(seed.source, SecretsManagerSource) and seed.source.ref == "pazpaz/database-credentials"
    by_arn = from_environment(environ={"ROTATOR_CLIENT_SECRET_ID": SSM_ARN, "AWS_REGION": "us-east-1"})
    assert isinstance(by_arn.source, SsmParameterSource) and by_arn.source.region == "eu-west-1"
    loader = from_environment(
        environ={
            "ROTATOR_CLIENT_PARAMETER": "/app/db",
            "ROTATOR_CLIENT_REGION": "ap-south-1",
            "ROTATOR_CLIENT_ENDPOINT_URL": "http://localhost:4566",
            "ROTATOR_CLIENT_TTL": "42.5",
            "ROTATOR_CLIENT_KEYS": "username=user",
        }
    )
    assert isinstance(loader.source, SsmParameterSource)
    assert (loader.source.region, loader.source.endpoint_url) == ("ap-south-1", "http://localhost:4566")
    assert loader.ttl == 42.5
    assert loader.keys == KeyNames.of(username="user")
    assert from_environment(environ={"ROTATOR_CLIENT_TTL": "1"}, secret_id="x", ttl=7).ttl == 7  # argument first


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"ROTATOR_CLIENT_SECRET_ID": "a", "ROTATOR_CLIENT_PARAMETER": "/b"}, "keep one"),
        ({"ROTATOR_CLIENT_SECRET_ID": "a", "ROTATOR_CLIENT_TTL": "5m"}, "seconds"),
        ({"ROTATOR_CLIENT_SECRET_ID": "a", "ROTATOR_CLIENT_KEYS": "user"}, "ROTATOR_CLIENT_KEYS"),
        ({"ROTATOR_CLIENT_SECRET_ID": "arn:aws:s3:::bucket"}, "unsupported ARN"),
    ],
)
def test_bad_configuration(environ: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        from_environment(environ=environ)


def test_drop_in_returns_database_url_verbatim_locally(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DATABASE_URL", URL)
    assert get_database_credentials("local", "ignored", "us-east-1") == URL
    monkeypatch.setenv("ENVIRONMENT", "development")
    assert get_database_credentials() == URL
    monkeypatch.delenv("DATABASE_URL")
    with pytest.raises(ConfigurationError, match="DATABASE_URL is not set"):
        get_database_credentials("local")
