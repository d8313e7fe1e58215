"""Secrets Manager goes away: reads keep serving the cached value, with backoff; when it is back, they refresh.

The test runs its own moto server (the session's stays up), so the loader's endpoint override is what makes the
outage visible to it. moto keeps its state in-process, so the secret survives the restart.
"""

from __future__ import annotations

import json
import threading
import time
from typing import Any

import boto3
import pytest
from botocore.config import Config

from rotator.client import CredentialLoader, CredentialsUnavailable
from tests.harness import free_port, new_name

pytestmark = pytest.mark.integration


def secret(password: str) -> str:
    return json.dumps({"username": "app", "password": password, "host": "db", "port": 5432, "dbname": "app"})


def start_moto(port: int) -> Any:
    from moto.server import ThreadedMotoServer

    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    return server


def test_reads_survive_an_outage_and_refresh_after_it() -> None:
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = start_moto(port)
    admin = boto3.client("secretsmanager", endpoint_url=endpoint, region_name="us-east-1")
    name = new_name("rt-outage")
    arn = admin.create_secret(Name=name, SecretString=secret("pw-before-outage"))["ARN"]

    session = boto3.Session(region_name="us-east-1")
    attempts: list[float] = []
    lock = threading.Lock()

    def count(**_: Any) -> None:
        with lock:
            attempts.append(time.monotonic())

    session.events.register("before-call.secrets-manager.GetSecretValue", count)
    loader = CredentialLoader.from_secret(
        arn,
        endpoint_url=endpoint,
        session=session,
        config=Config(retries={"max_attempts": 1}, connect_timeout=1),
        ttl=0.3,
        jitter=0.0,
        backoff_base=0.2,
        backoff_cap=0.8,
    )
    try:
        assert loader.get().password == "pw-before-outage"
        server.stop()
        server = None
        time.sleep(0.4)  # past the TTL

        before = len(attempts)
        deadline = time.monotonic() + 2.0
        reads = 0
        while time.monotonic() < deadline:
            assert loader.get().password == "pw-before-outage"  # stale, never an exception
            reads += 1
        during = len(attempts) - before
        # Backoff 0.2, 0.4, 0.8, 0.8... s: a handful of attempts in 2 s, not one per read.
        assert 2 <= during <= 7, during
        assert reads > 1000
        stats = loader.stats()
        assert stats.stale and stats.consecutive_failures == during
        assert stats.last_error == "EndpointConnectionError"
        # Explicit refresh reports the outage to its caller; the value stays cached.
        with pytest.raises(CredentialsUnavailable, match="EndpointConnectionError"):
            loader.refresh()
        assert loader.get().password == "pw-before-outage"

        server = start_moto(port)
        try:
            admin.put_secret_value(SecretId=arn, SecretString=secret("pw-after-outage"))
        except admin.exceptions.ResourceNotFoundException:  # in case a moto version keeps no state
            arn = admin.create_secret(Name=name, SecretString=secret("pw-after-outage"))["ARN"]
        deadline = time.monotonic() + 5.0
        while loader.get().password != "pw-after-outage":
            assert time.monotonic() < deadline, "the loader did not refresh after the store came back"
            time.sleep(0.02)
        stats = loader.stats()
        assert not stats.stale and stats.consecutive_failures == 0
    finally:
        if server is None:
            server = start_moto(port)
        admin.delete_secret(SecretId=arn, ForceDeleteWithoutRecovery=True)
        server.stop()
