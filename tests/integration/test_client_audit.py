"""rotator.client's audit events (seed 001's credential_access_log) and EMF metrics on real sources: Secrets
Manager and SSM on the moto server, KV v2 on a real OpenBao. Every event is scanned for the values."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
import structlog.testing

from rotator.client import CredentialLoader
from rotator.client.vault import VaultSession
from rotator.metrics import ClientMetrics
from tests.harness import AwsEnv, new_name, strong_password
from tests.openbao import OpenBao

pytestmark = pytest.mark.integration

FIELDS = {
    "event",
    "logger",
    "audit_schema",
    "access_type",
    "success",
    "error_class",
    "error_code",
    "source",
    "secret_arn",
    "version",
    "slot",
    "fallback",
    "duration_ms",
    "host",
    "pid",
    "log_level",
}


@pytest.fixture
def logs() -> Iterator[list[dict[str, Any]]]:
    with structlog.testing.capture_logs() as captured:
        yield captured


def audits(logs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    found = [e for e in logs if e.get("logger") == "rotator.client.audit"]
    for event in found:
        assert set(event) == FIELDS and event["event"] == "credential_access" and event["access_type"] == "retrieve"
    return found


def slot_secret(password_a: str, password_b: str) -> str:
    slot = {"host": "db.internal", "port": 5432, "dbname": "app"}
    return json.dumps(
        {
            "active_slot": "B",
            "A": {"username": "app_a", "password": password_a, **slot, "rotated_at": "2026-12-01T00:00:00Z"},
            "B": {"username": "app_b", "password": password_b, **slot, "rotated_at": "2026-11-01T00:00:00Z"},
        }
    )


def test_secrets_manager_fetches_are_audited_with_a_sanitized_arn(aws: AwsEnv, logs: list[dict[str, Any]]) -> None:
    pa, pb = strong_password(), strong_password()
    arn = aws.create_secret("client-audit", slot_secret(pa, pb))
    lines: list[str] = []
    loader = CredentialLoader.from_secret(
        arn,
        endpoint_url=aws.endpoint_url,
        region=aws.region,
        metrics=ClientMetrics("client-audit", sink=lines.append),
    )
    creds = loader.get()
    assert (creds.slot, creds.username) == ("B", "app_b")
    loader.get()  # a cache hit: no fetch, no event
    missing = CredentialLoader.from_secret(
        arn.replace("client-audit", "no-such-secret"), endpoint_url=aws.endpoint_url, region=aws.region
    )
    with pytest.raises(Exception, match="ResourceNotFoundException"):
        missing.get()
    ok, failed = audits(logs)
    assert ok["success"] is True and ok["source"] == "secretsmanager" and ok["slot"] == "B" and ok["version"]
    assert ok["secret_arn"].startswith("arn:aws:secretsmanager:") and "123456789012" not in ok["secret_arn"]
    assert ok["secret_arn"] == arn.replace(":123456789012:", ":************:")  # seed 001's sanitizer
    assert failed["success"] is False and failed["error_class"] == "ResourceNotFoundException"  # botocore's class
    assert failed["error_code"] == "ResourceNotFoundException" and "123456789012" not in failed["secret_arn"]
    (line,) = lines
    doc = json.loads(line)
    assert (doc["CredentialFetches"], doc["CacheMisses"], doc["Secret"]) == (1.0, 1.0, "client-audit")
    text = repr(logs) + "".join(lines)
    assert pa not in text and pb not in text


def test_ssm_fetches_are_audited(aws: AwsEnv, logs: list[dict[str, Any]]) -> None:
    pa, pb = strong_password(), strong_password()
    name = f"/{new_name('rcm')}/prod/org-1/endpoints/e-1/acct-1"
    aws.client("ssm").put_parameter(Name=name, Value=slot_secret(pa, pb), Type="SecureString")
    try:
        loader = CredentialLoader.from_ssm(name, endpoint_url=aws.endpoint_url, region=aws.region)
        assert loader.get().slot == "B"
    finally:
        aws.client("ssm").delete_parameter(Name=name)
    (event,) = audits(logs)
    assert (event["success"], event["source"], event["version"]) == (True, "ssm", "1")
    assert pa not in repr(logs) and pb not in repr(logs)


def test_vault_fetches_are_audited(openbao: OpenBao, logs: list[dict[str, Any]]) -> None:
    pa, pb = strong_password(), strong_password()
    path = f"{new_name('app')}/db"
    openbao.client().secrets.kv.v2.create_or_update_secret(path=path, secret=json.loads(slot_secret(pa, pb)))
    session = VaultSession(openbao.addr, token=openbao.token)
    assert CredentialLoader.from_vault_kv(path, session=session).get().slot == "B"
    with pytest.raises(Exception, match="InvalidPath"):
        CredentialLoader.from_vault_kv(f"{path}-missing", session=session).get()
    ok, failed = audits(logs)
    assert (ok["success"], ok["source"], ok["secret_arn"]) == (True, "vault", f"vault:secret/data/{path}")
    assert (failed["success"], failed["source"], failed["error_class"]) == (False, "vault", "InvalidPath")
    text = repr(logs)
    assert pa not in text and pb not in text and openbao.token not in text
