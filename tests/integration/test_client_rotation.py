"""A service rides through two blue/green rotations with zero failed connections.

Threads open connections in a loop (directly, through a pooled SQLAlchemy engine, and on PostgreSQL through a
psycopg_pool pool) against a real database, while `rotator rotate --deploy none` (the real command, as a
subprocess) rotates the slot secret in (moto) Secrets Manager twice.
The cache TTL is 300 s while the rotator waits only 1 s and does not drain (--drain-timeout 0), so recovery has
to come from the refresh-on-authentication-failure path. (With its defaults the rotator would wait for the
clients instead: tests/integration/test_drain.py and test_pgbouncer.py.)
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import psycopg
import psycopg.sql
import pymysql
import pytest

from rotator.client import CredentialLoader, psycopg_kwargs, pymysql_kwargs, sqla
from rotator.client.pgpool import pool_options
from rotator.db import get_engine
from rotator.db.base import Endpoint, TlsConfig
from tests.harness import AwsEnv, DbEnv, strong_password

pytestmark = pytest.mark.integration

GRACE = 1.0  # --grace-seconds: between publishing the flip and the old slot's new password
TTL = 300.0


# ---------------------------------------------------------------- the database and the secret


@dataclass
class SlotDb:
    db: DbEnv
    aws: AwsEnv
    users: dict[str, str]
    passwords: dict[str, str]
    active: str = "A"
    arn: str = ""
    admin_arn: str = ""

    def secret(self) -> str:
        def slot(name: str) -> dict[str, Any]:
            return {
                "username": self.users[name],
                "password": self.passwords[name],
                "host": self.db.host,
                "port": self.db.port,
                "dbname": self.db.dbname,
            }

        engine = "postgres" if self.db.engine == "postgres" else "mysql"
        return json.dumps({"active_slot": self.active, "A": slot("A"), "B": slot("B"), "engine": engine})

    def put(self) -> None:
        self.aws.client("secretsmanager").put_secret_value(SecretId=self.arn, SecretString=self.secret())

    def rotate(self) -> None:
        """The real `rotator rotate --deploy none`, as a subprocess: it publishes the flip, waits the grace
        period, proves the new slot, then gives the old slot a fresh password (and rotates the admin)."""
        env = {
            **os.environ,
            "ROTATOR_SLOT_SECRET": self.arn,
            "ROTATOR_ADMIN_SECRET": self.admin_arn,
            "ROTATOR_AWS_ENDPOINT_URL": self.aws.endpoint_url,
            "ROTATOR_REGION": self.aws.region,
            "ROTATOR_DEPLOY": "none",
            "ROTATOR_GRACE_SECONDS": str(GRACE),
            "ROTATOR_DRAIN_TIMEOUT": "0",
            "ROTATOR_DB_TLS": "disable",
            "ROTATOR_LOG_JSON": "1",
        }
        proc = subprocess.run(
            [sys.executable, "-m", "rotator.cli", "rotate"], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 0, proc.stderr[-3000:]
        # VersionStage explicitly: moto answers a stage-less GetSecretValue with a stale version after
        # UpdateSecretVersionStage has moved AWSCURRENT (real AWS returns AWSCURRENT).
        sm = self.aws.client("secretsmanager")
        current = json.loads(sm.get_secret_value(SecretId=self.arn, VersionStage="AWSCURRENT")["SecretString"])
        self.active = current["active_slot"]
        self.passwords = {slot: current[slot]["password"] for slot in "AB"}


def create_slot_db(db: DbEnv, aws: AwsEnv) -> SlotDb:
    users = {slot: db.track(f"{db.prefix}_slot_{slot.lower()}") for slot in "AB"}
    passwords = {slot: strong_password() for slot in "AB"}
    # Slot users as the rotator makes them (marked as its own), through the engine's admin session.
    engine = get_engine(db.engine)
    session = engine.admin_session(
        Endpoint(db.host, db.port, db.dbname, TlsConfig("disable")), db.admin_user, db.admin_password
    )
    try:
        for slot, user in users.items():
            session.create_user(user, passwords[slot], dbname=db.dbname, grants_from=None)
    finally:
        session.close()
    slots = SlotDb(db=db, aws=aws, users=users, passwords=passwords)
    slots.arn = aws.create_secret("slots", slots.secret())
    admin = {"username": db.admin_user, "password": db.admin_password, "host": db.host, "port": db.port}
    slots.admin_arn = aws.create_secret("admin", json.dumps(admin))
    return slots


# ---------------------------------------------------------------- the service


@dataclass
class Service:
    """Worker threads that each log in and ask the database who they are, over and over."""

    name: str
    loader: CredentialLoader
    whoami: Callable[[], str]
    threads: int = 3
    seen: list[tuple[float, str]] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def run(self, stop: threading.Event) -> list[threading.Thread]:
        def loop() -> None:
            while not stop.is_set():
                try:
                    user = self.whoami()
                except Exception as exc:
                    with self._lock:
                        self.failures.append(f"{type(exc).__name__}: {exc}")
                else:
                    with self._lock:
                        self.seen.append((time.monotonic(), user))
                time.sleep(0.005)

        workers = [threading.Thread(target=loop, name=f"{self.name}-{i}") for i in range(self.threads)]
        for worker in workers:
            worker.start()
        return workers

    def users_since(self, since: float) -> set[str]:
        with self._lock:
            return {user for at, user in self.seen if at >= since}


def make_loader(slots: SlotDb) -> CredentialLoader:
    return CredentialLoader.from_secret(
        slots.arn, endpoint_url=slots.aws.endpoint_url, region=slots.aws.region, ttl=TTL
    )


def direct_service(slots: SlotDb) -> Service:
    loader = make_loader(slots)
    if slots.db.engine == "postgres":

        def whoami() -> str:
            conn = loader.connect(lambda c: psycopg.connect(**psycopg_kwargs(c, connect_timeout=5, sslmode="disable")))
            with conn:
                row = conn.execute("SELECT session_user").fetchone()  # current_user is the owner role
            assert row is not None
            return str(row[0])
    else:

        def whoami() -> str:
            conn = loader.connect(lambda c: pymysql.connect(**pymysql_kwargs(c, connect_timeout=5)))
            try:
                with conn.cursor() as cur:
                    cur.execute("SELECT CURRENT_USER()")
                    row = cur.fetchone()
            finally:
                conn.close()
            assert row is not None
            return str(row[0]).split("@", 1)[0]

    return Service("direct", loader, whoami)


@contextmanager
def sqlalchemy_service(slots: SlotDb) -> Iterator[Service]:
    loader = make_loader(slots)
    url = "postgresql+psycopg://?sslmode=disable" if slots.db.engine == "postgres" else "mysql+pymysql://"
    sql = "SELECT session_user" if slots.db.engine == "postgres" else "SELECT CURRENT_USER()"
    # A small pool with recycling, so that new connections keep being made while the pool is in use.
    engine = sqla.create_engine(loader, url, pool_size=2, max_overflow=2, pool_recycle=1.0, pool_timeout=30)

    def whoami() -> str:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql(sql).scalar()).split("@", 1)[0]

    try:
        yield Service("sqlalchemy", loader, whoami)
    finally:
        engine.dispose()


@contextmanager
def psycopg_pool_service(slots: SlotDb) -> Iterator[Service]:
    from psycopg_pool import ConnectionPool

    loader = make_loader(slots)
    pool: ConnectionPool[Any] = ConnectionPool(
        min_size=2,
        max_size=3,
        max_lifetime=1.0,
        open=True,
        **pool_options(loader, sslmode="disable", connect_timeout=5),
    )

    def whoami() -> str:
        with pool.connection() as conn:
            row = conn.execute("SELECT session_user").fetchone()  # current_user is the owner role
        assert row is not None
        return str(row[0])

    try:
        yield Service("psycopg_pool", loader, whoami)
    finally:
        pool.close()


# ---------------------------------------------------------------- the test


def test_service_rides_through_two_rotations(db: DbEnv, aws: AwsEnv) -> None:
    slots = create_slot_db(db, aws)
    with sqlalchemy_service(slots) as pooled, _maybe_pg_pool(slots) as pg_pool:
        services = [direct_service(slots), pooled] + ([pg_pool] if pg_pool else [])
        stop = threading.Event()
        workers = [w for service in services for w in service.run(stop)]
        try:
            time.sleep(0.5)
            for _ in range(2):
                slots.rotate()
                last_rotation_ended = time.monotonic()
                time.sleep(2.5)  # the services keep working, and move to the new slot
        finally:
            stop.set()
            for worker in workers:
                worker.join(timeout=30)

    assert slots.active == "A"
    final_user = slots.users["A"]
    for service in services:
        assert service.failures == [], f"{service.name}: {service.failures[:3]}"
        assert len(service.seen) > 20, service.name
        # It was on B between the rotations, and ends on A with A's new password.
        assert slots.users["B"] in {user for _, user in service.seen}, service.name
        assert service.users_since(last_rotation_ended + 1.5) == {final_user}, service.name
        creds = service.loader.get()
        assert (creds.slot, creds.username, creds.password) == ("A", final_user, slots.passwords["A"])
        # Recovery came from the refresh on a failed login, not from the TTL: at most the cold fetch and
        # one fetch per rotation, and the TTL never ran out.
        stats = service.loader.stats()
        assert 2 <= stats.fetches <= 3, (service.name, stats)
        assert stats.failures == 0
        assert stats.expires_in is not None and stats.expires_in > TTL - 60


@contextmanager
def _maybe_pg_pool(slots: SlotDb) -> Iterator[Service | None]:
    if slots.db.engine != "postgres":
        yield None
        return
    with psycopg_pool_service(slots) as service:
        yield service
