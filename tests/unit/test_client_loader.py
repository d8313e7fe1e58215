"""connect(): refresh once on an authentication failure and retry; the audit log never carries a value."""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field

import pymysql.err
import pytest
import structlog.testing

from rotator.client import CredentialLoader, DbCredentials
from rotator.client.sources import Fetched, SourceKind

ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:app/db-AbCdEf"


def slot_secret(active: str, pw_a: str = "password-of-A", pw_b: str = "password-of-B") -> str:
    return json.dumps(
        {
            "active_slot": active,
            "A": {"username": "app_a", "password": pw_a, "host": "h", "port": 3306, "dbname": "d"},
            "B": {"username": "app_b", "password": pw_b, "host": "h", "port": 3306, "dbname": "d"},
        }
    )


@dataclass
class FakeSource:
    text: str = field(default_factory=lambda: slot_secret("A"))
    calls: int = 0

    @property
    def kind(self) -> SourceKind:
        return "secretsmanager"

    @property
    def label(self) -> str:
        return "app/db"

    def fetch(self) -> Fetched:
        self.calls += 1
        return Fetched(self.text, "json", arn=ARN, version=f"v{self.calls}")


class FakeDb:
    """Accepts one (user, password); refuses others with MySQL's 1045."""

    def __init__(self, user: str, password: str) -> None:
        self.valid = (user, password)
        self.attempts: list[str] = []
        self.lock = threading.Lock()

    def connect(self, creds: DbCredentials) -> str:
        with self.lock:
            self.attempts.append(creds.username)
        if (creds.username, creds.password) != self.valid:
            raise pymysql.err.OperationalError(1045, f"Access denied for user '{creds.username}'")
        return f"connection as {creds.username}"


def test_auth_failure_refreshes_once_and_retries() -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=300)
    loader.get()
    db = FakeDb("app_b", "password-of-B")  # the rotation flipped to B and changed A's password
    source.text = slot_secret("B")
    assert loader.connect(db.connect) == "connection as app_b"
    assert db.attempts == ["app_a", "app_b"]
    assert source.calls == 2
    assert loader.get().slot == "B"


def test_no_retry_when_the_secret_did_not_change() -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=300, min_refresh_interval=0)
    db = FakeDb("app_a", "another password")
    with pytest.raises(pymysql.err.OperationalError) as info:
        loader.connect(db.connect)
    assert info.value.args[0] == 1045
    assert db.attempts == ["app_a"]  # refreshed, same credentials: no point in trying them again
    assert source.calls == 2


def test_other_errors_are_not_retried() -> None:
    source = FakeSource()
    loader = CredentialLoader(source)

    def refuse(creds: DbCredentials) -> str:
        raise pymysql.err.OperationalError(2003, "Can't connect to MySQL server")

    with pytest.raises(pymysql.err.OperationalError):
        loader.connect(refuse)
    assert source.calls == 1


def test_second_failure_goes_to_the_caller() -> None:
    source = FakeSource()
    loader = CredentialLoader(source)
    loader.get()
    source.text = slot_secret("B")
    db = FakeDb("nobody", "x")
    with pytest.raises(pymysql.err.OperationalError):
        loader.connect(db.connect)
    assert db.attempts == ["app_a", "app_b"]


def test_concurrent_auth_failures_share_one_refresh() -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=300)
    loader.get()
    source.text = slot_secret("B")
    db = FakeDb("app_b", "password-of-B")
    barrier = threading.Barrier(12)
    results: list[str] = []

    def worker() -> None:
        barrier.wait()
        results.append(loader.connect(db.connect))

    threads = [threading.Thread(target=worker) for _ in range(12)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == ["connection as app_b"] * 12
    assert source.calls == 2  # the cold fetch and one refresh


def test_connect_async_and_creator() -> None:
    source = FakeSource()
    loader = CredentialLoader(source)
    loader.get()
    source.text = slot_secret("B")
    db = FakeDb("app_b", "password-of-B")

    async def open_async(creds: DbCredentials) -> str:
        return db.connect(creds)

    assert asyncio.run(loader.connect_async(open_async)) == "connection as app_b"
    assert loader.creator(db.connect)() == "connection as app_b"


def test_audit_log_masks_the_account_and_never_logs_a_value() -> None:
    source = FakeSource()
    loader = CredentialLoader(source, ttl=300)
    db = FakeDb("app_b", "password-of-B")
    with structlog.testing.capture_logs() as logs:
        loader.get()
        source.text = slot_secret("B")
        loader.connect(db.connect)
    fetched = [e for e in logs if e["event"] == "db_credentials_fetched"]
    assert len(fetched) == 2
    assert fetched[0]["arn"] == "arn:aws:secretsmanager:us-east-1:************:secret:app/db-AbCdEf"
    assert [e["slot"] for e in fetched] == ["A", "B"]
    assert any(e["event"] == "db_credentials_auth_failed" and e["retry"] for e in logs)
    text = repr(logs)
    assert "123456789012" not in text
    assert "password-of" not in text
