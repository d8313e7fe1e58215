"""The loader against a real moto HTTP server: Secrets Manager and SSM, names and ARNs, audit log,
single flight, and the seed 002 drop-in in production mode."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
import structlog.testing
from sqlalchemy.engine import make_url

from rotator.client import CredentialLoader, CredentialsUnavailable, get_database_credentials
from tests.harness import AwsEnv, new_name

pytestmark = pytest.mark.integration

PASSWORD_A = "pw-A-0123456789-secret"
PASSWORD_B = "pw-B-9876543210-secret"


def slots(active: str) -> str:
    return json.dumps(
        {
            "active_slot": active,
            "A": {"username": "app_a", "password": PASSWORD_A, "host": "db", "port": "5432", "dbname": "app"},
            "B": {"username": "app_b", "password": PASSWORD_B, "host": "db", "port": "5432", "dbname": "app"},
            "engine": "postgres",
        }
    )


class CallCounter:
    """Counts API calls as botocore makes them (before-call fires once per call, retries included once)."""

    def __init__(self, operation: str) -> None:
        self.session = boto3.Session(region_name="us-east-1")
        self.calls = 0
        self._lock = threading.Lock()
        self.session.events.register(operation, self._count)

    def _count(self, **_: Any) -> None:
        with self._lock:
            self.calls += 1


@pytest.fixture
def ssm_names(aws: AwsEnv) -> Iterator[list[str]]:
    names: list[str] = []
    yield names
    ssm = aws.client("ssm")
    for name in names:
        ssm.delete_parameter(Name=name)


def test_secrets_manager_by_name_and_by_arn(aws: AwsEnv) -> None:
    arn = aws.create_secret("slots", slots("A"))
    name = f"{aws.prefix}/slots"
    for ref in (name, arn):
        loader = CredentialLoader.from_secret(ref, endpoint_url=aws.endpoint_url, region=aws.region, ttl=300)
        creds = loader.get()
        assert (creds.username, creds.password, creds.slot, creds.engine) == ("app_a", PASSWORD_A, "A", "postgres")
        assert creds.version  # Secrets Manager's VersionId
    aws.client("secretsmanager").put_secret_value(SecretId=arn, SecretString=slots("B"))
    assert loader.get().slot == "A"  # within the TTL
    assert loader.refresh().slot == "B"
    assert loader.get().username == "app_b"


def test_ssm_securestring_by_name_and_by_arn(aws: AwsEnv, ssm_names: list[str]) -> None:
    name = f"/{aws.prefix}/db"
    ssm = aws.client("ssm")
    ssm.put_parameter(Name=name, Value=slots("B"), Type="SecureString")
    ssm_names.append(name)
    arn = ssm.get_parameter(Name=name)["Parameter"]["ARN"]
    by_name = CredentialLoader.from_ssm(name, endpoint_url=aws.endpoint_url, region=aws.region)
    by_arn = CredentialLoader.from_secret(arn, endpoint_url=aws.endpoint_url)  # dispatched on the ARN
    assert by_arn.source.kind == "ssm"
    for loader in (by_name, by_arn):
        creds = loader.get()
        assert (creds.username, creds.password, creds.slot, creds.version) == ("app_b", PASSWORD_B, "B", "1")


def test_ssm_plain_string_is_read_with_a_warning(aws: AwsEnv, ssm_names: list[str]) -> None:
    name = f"/{aws.prefix}/plain"
    aws.client("ssm").put_parameter(Name=name, Value=slots("A"), Type="String")
    ssm_names.append(name)
    with structlog.testing.capture_logs() as logs:
        CredentialLoader.from_ssm(name, endpoint_url=aws.endpoint_url, region=aws.region).get()
    assert any(e["event"] == "db_credentials_parameter_not_encrypted" for e in logs)


def test_every_fetch_is_audited_with_the_account_masked(aws: AwsEnv) -> None:
    arn = aws.create_secret("audit", slots("A"))
    loader = CredentialLoader.from_secret(arn, endpoint_url=aws.endpoint_url, ttl=300)
    with structlog.testing.capture_logs() as logs:
        loader.get()
        loader.get()
        loader.refresh()
    fetched = [e for e in logs if e["event"] == "db_credentials_fetched"]
    assert len(fetched) == 2
    account = arn.split(":")[4]
    for event in fetched:
        assert event["source"] == "secretsmanager"
        assert event["arn"] == arn.replace(f":{account}:", ":************:")
        assert event["slot"] == "A" and event["version"]
    text = repr(logs)
    assert account not in text and PASSWORD_A not in text and PASSWORD_B not in text


def test_missing_secret_fails_with_the_account_masked(aws: AwsEnv) -> None:
    arn = aws.create_secret("gone", slots("A")).replace("gone", "never-created")
    loader = CredentialLoader.from_secret(arn, endpoint_url=aws.endpoint_url)
    with pytest.raises(CredentialsUnavailable, match="ResourceNotFoundException") as info:
        loader.get()
    assert arn.split(":")[4] not in str(info.value)


def test_sixteen_threads_on_a_cold_cache_make_one_api_call(aws: AwsEnv) -> None:
    arn = aws.create_secret("cold", slots("A"))
    counter = CallCounter("before-call.secrets-manager.GetSecretValue")
    loader = CredentialLoader.from_secret(arn, endpoint_url=aws.endpoint_url, session=counter.session)
    barrier = threading.Barrier(16)
    users: list[str] = []

    def read() -> None:
        barrier.wait()
        users.append(loader.get().username)

    threads = [threading.Thread(target=read) for _ in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert users == ["app_a"] * 16
    assert counter.calls == 1
    for _ in range(10_000):
        loader.get()
    assert counter.calls == 1


def test_seed_002_drop_in_in_production(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"{aws.prefix}/database-credentials"
    password = "p@ss:w/rd%?#"
    plain = {"username": "pazpaz", "password": password, "host": "prod-db.internal", "port": 5432, "database": "pz"}
    aws.create_secret("database-credentials", json.dumps(plain))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    url = make_url(get_database_credentials("production", name, aws.region))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        "postgresql+asyncpg",
        "pazpaz",
        password,
        "prod-db.internal",
        5432,
        "pz",
    )
    # The staleness seed 002 had: a rotated secret is picked up (here at once, through cache_clear()).
    aws.client("secretsmanager").put_secret_value(SecretId=name, SecretString=json.dumps({**plain, "password": "new"}))
    get_database_credentials.cache_clear()
    assert make_url(get_database_credentials("production", name, aws.region)).password == "new"


def test_production_env_fallback_only_when_enabled(aws: AwsEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    missing = f"{aws.prefix}/{new_name('missing')}"
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://fallback:pw-fallback@localhost/app?ssl=require")
    with pytest.raises(CredentialsUnavailable):
        get_database_credentials("production", missing, aws.region)
    monkeypatch.setenv("ROTATOR_CLIENT_ALLOW_ENV_FALLBACK", "1")
    other = missing + "-2"  # another loader: the fallback setting is read when a loader is made
    with structlog.testing.capture_logs() as logs:
        url = get_database_credentials("staging", other, aws.region)
    assert url == "postgresql+asyncpg://fallback:pw-fallback@localhost/app?ssl=require"
    events = [e["event"] for e in logs]
    assert "db_credentials_fetch_failed" in events and "db_credentials_env_fallback" in events
    assert "pw-fallback" not in repr(logs)
