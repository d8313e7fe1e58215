"""Seed 002's own usage, unchanged, rides through three real rotations.

``create_async_engine(get_database_credentials(...))``: asyncpg through SQLAlchemy's async engine, against real
PostgreSQL, while `rotator rotate --deploy none` (the real command, as a subprocess) rotates the slot secret in
(moto) Secrets Manager three times. The cache TTL is 300 s: the URL string holds the first login, so only the
plugin it names (rotator.client.sqla_plugin) can keep the engine's new connections working after a rotation.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from rotator.client import get_database_credentials
from tests.harness import AwsEnv, DbEnv
from tests.integration.test_client_rotation import TTL, create_slot_db

pytestmark = pytest.mark.integration

WORKERS = 4


async def serve(engine: AsyncEngine, stop: threading.Event, seen: list[tuple[float, str]], failures: list[str]) -> None:
    async def worker() -> None:
        while not stop.is_set():
            try:
                async with engine.connect() as conn:
                    user = (await conn.exec_driver_sql("SELECT session_user")).scalar()  # current_user: owner role
            except Exception as exc:
                failures.append(f"{type(exc).__name__}: {exc}")
            else:
                seen.append((time.monotonic(), str(user)))
            await asyncio.sleep(0.005)

    try:
        await asyncio.gather(*(worker() for _ in range(WORKERS)))
    finally:
        await engine.dispose()


def test_seed002_usage_survives_three_rotations(pg: DbEnv, aws: AwsEnv, capfd: pytest.CaptureFixture[str]) -> None:
    slots = create_slot_db(pg, aws)
    first_password = slots.passwords["A"]
    # Exactly seed 002's code, plus the test's endpoint and TTL.
    url = get_database_credentials(
        environment="production", secret_name=slots.arn, region=aws.region, endpoint_url=aws.endpoint_url, ttl=TTL
    )
    # A small pool that recycles, so that new connections (new logins) keep being made all along.
    engine = create_async_engine(
        url, pool_size=2, max_overflow=2, pool_recycle=1.0, pool_timeout=30, connect_args={"ssl": False}
    )

    seen: list[tuple[float, str]] = []
    failures: list[str] = []
    stop = threading.Event()
    service = threading.Thread(target=lambda: asyncio.run(serve(engine, stop, seen, failures)))
    service.start()
    users_between: list[set[str]] = []
    try:
        time.sleep(0.5)
        for _ in range(3):
            slots.rotate()
            ended = time.monotonic()
            time.sleep(2.5)  # the service keeps working, and moves to the new slot
            users_between.append({user for at, user in seen if at >= ended + 1.5})
    finally:
        stop.set()
        service.join(timeout=30)

    assert failures == [], (len(failures), len(seen), failures[:3])
    assert engine.url.password is None and engine.url.username is None  # the engine holds no stale login
    assert len(seen) > 100
    assert slots.active == "B"  # A -> B -> A -> B
    assert users_between == [{slots.users["B"]}, {slots.users["A"]}, {slots.users["B"]}]
    # The old slot really got a new password each time: the string's login stopped working at the first.
    assert not pg.login_works(slots.users["A"], first_password)
    loader = get_database_credentials.loader("production", slots.arn, aws.region)
    stats = loader.stats()
    assert stats.fetches <= 4 and stats.expires_in is not None and stats.expires_in > TTL - 60, stats  # no TTL expiry
    out, err = capfd.readouterr()
    for password in {first_password, *slots.passwords.values()}:
        assert password not in out + err


def test_seed002_url_names_the_plugin_and_loader_only(aws: AwsEnv) -> None:
    from sqlalchemy.engine import make_url

    name = f"{aws.prefix}/database-credentials"
    secret = {"username": "pazpaz", "password": "pw-é:@/", "host": "db.internal", "port": 5432, "database": "pz"}
    aws.create_secret("database-credentials", json.dumps(secret))
    url = make_url(get_database_credentials("production", name, aws.region, endpoint_url=aws.endpoint_url))
    assert dict(url.query) == {
        "plugin": "rotator_client",
        "rotator_environment": "production",
        "rotator_secret": name,
        "rotator_region": aws.region,
    }
    assert (url.username, url.password, url.host, url.database) == ("pazpaz", "pw-é:@/", "db.internal", "pz")
    # For whatever is not a SQLAlchemy engine: the same login, no plugin parameters.
    plain = make_url(get_database_credentials("production", name, aws.region, plain=True))
    assert dict(plain.query) == {} and plain.password == "pw-é:@/"
    engine = create_async_engine(url)
    assert (engine.url.username, engine.url.password, dict(engine.url.query)) == (None, None, {})
    asyncio.run(engine.dispose())
