"""Loader clients behind a real PgBouncer ride through three rotations with 0 failed queries, with the defaults.

PgBouncer (Debian's package, started here: scram-sha-256, auth_query, transaction pooling) logs in to PostgreSQL with
the SCRAM keys of its clients' last login. Were the old slot's password changed while clients still held its
cached credentials, PgBouncer's new server logins for that user would fail ("server login has been failing",
SQLSTATE 08P01) for every client of that pool. So the rotator waits, by default, for the loaders' cache age (the
grace, derived from the clients' TTL) and then for the old slot to drain, before its password changes.

The slot secret names the PgBouncer (as the apps reach the database); the admin secret names PostgreSQL itself
(ALTER ROLE, session-level locks, pg_stat_activity). So the rotator's own slot logins go through PgBouncer too.
The clients' TTL is short so that the test is short: the rotator reads the same ROTATOR_CLIENT_TTL the loaders
would, and derives its default grace from it (nothing else is set: no --grace-seconds, no --drain-timeout).
Four kinds of client: direct psycopg through CredentialLoader.connect, a SQLAlchemy pool, a psycopg_pool pool and
asyncpg through CredentialLoader.connect_async.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import asyncpg
import psycopg
import pytest

from rotator.client import CredentialLoader, asyncpg_kwargs, psycopg_kwargs, sqla
from rotator.client.cache import longest_cache_age
from rotator.client.pgpool import pool_options
from rotator.config import LOADER_GRACE_MARGIN
from tests.harness import AwsEnv, DbEnv
from tests.integration.pgbouncer import Bouncer, pgbouncer
from tests.integration.test_client_rotation import Service, SlotDb, create_slot_db

pytestmark = pytest.mark.integration

TTL = 3.0  # the loaders' cache TTL, and ROTATOR_CLIENT_TTL for the rotator
# Transaction pooling: no server-side prepared statements (PgBouncer 1.18 cannot carry them between servers).
NO_PREPARE: dict[str, Any] = {"sslmode": "disable", "connect_timeout": 5, "prepare_threshold": None}
ROTATIONS = 3


def loader(slots: SlotDb) -> CredentialLoader:
    return CredentialLoader.from_secret(
        slots.arn, endpoint_url=slots.aws.endpoint_url, region=slots.aws.region, ttl=TTL
    )


def _whoami(conn: Any) -> str:
    row = conn.execute("SELECT session_user").fetchone()  # current_user is the owner role
    assert row is not None
    return str(row[0])


def direct(slots: SlotDb) -> Service:
    ld = loader(slots)

    def whoami() -> str:
        with ld.connect(lambda c: psycopg.connect(**psycopg_kwargs(c, **NO_PREPARE))) as conn:
            return _whoami(conn)

    return Service("direct", ld, whoami)


@contextmanager
def sqlalchemy(slots: SlotDb) -> Iterator[Service]:
    ld = loader(slots)
    engine = sqla.create_engine(
        ld,
        "postgresql+psycopg://?sslmode=disable",
        pool_size=2,
        max_overflow=2,
        pool_recycle=1.0,
        pool_timeout=30,
        connect_args={"prepare_threshold": None},
    )

    def whoami() -> str:
        with engine.connect() as conn:
            return str(conn.exec_driver_sql("SELECT session_user").scalar())

    try:
        yield Service("sqlalchemy", ld, whoami)
    finally:
        engine.dispose()


@contextmanager
def psycopg_pool(slots: SlotDb) -> Iterator[Service]:
    from psycopg_pool import ConnectionPool

    ld = loader(slots)
    pool: ConnectionPool[Any] = ConnectionPool(
        min_size=2, max_size=3, max_lifetime=1.0, open=True, **pool_options(ld, **NO_PREPARE)
    )

    def whoami() -> str:
        with pool.connection() as conn:
            return _whoami(conn)

    try:
        yield Service("psycopg_pool", ld, whoami)
    finally:
        pool.close()


@contextmanager
def asyncpg_service(slots: SlotDb) -> Iterator[Service]:
    """asyncpg on its own event loop thread; each call logs in through connect_async and asks who it is."""
    ld = loader(slots)
    aio = asyncio.new_event_loop()
    runner = threading.Thread(target=aio.run_forever, daemon=True)
    runner.start()

    async def ask() -> str:
        conn = await ld.connect_async(
            lambda c: asyncpg.connect(**asyncpg_kwargs(c, ssl=False, timeout=5, statement_cache_size=0))
        )
        try:
            return str(await conn.fetchval("SELECT session_user"))
        finally:
            await conn.close()

    def whoami() -> str:
        return asyncio.run_coroutine_threadsafe(ask(), aio).result(timeout=30)

    try:
        yield Service("asyncpg", ld, whoami, threads=2)
    finally:
        aio.call_soon_threadsafe(aio.stop)
        runner.join(timeout=10)
        aio.close()


def rotate(slots: SlotDb, db: DbEnv) -> dict[str, Any]:
    """The real `rotator rotate`, loader mode, with the defaults: only the clients' TTL is shared."""
    env = {
        **os.environ,
        "ROTATOR_SLOT_SECRET": slots.arn,
        "ROTATOR_ADMIN_SECRET": slots.admin_arn,
        "ROTATOR_AWS_ENDPOINT_URL": slots.aws.endpoint_url,
        "ROTATOR_REGION": slots.aws.region,
        "ROTATOR_DB_TLS": "disable",
        "ROTATOR_CLIENT_TTL": str(TTL),
        "ROTATOR_LOG_JSON": "1",
    }
    for name in (
        "ROTATOR_GRACE_SECONDS",
        "ROTATOR_DRAIN_TIMEOUT",
        "ROTATOR_DRAIN_QUIET",
        "ROTATOR_TEMPLATE",
        "ROTATOR_CONFIG_PATH",
    ):
        env.pop(name, None)
    proc = subprocess.run(
        [sys.executable, "-m", "rotator.cli", "rotate"], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report: dict[str, Any] = json.loads(proc.stdout.strip().splitlines()[-1])
    grace = [json.loads(line) for line in proc.stderr.splitlines() if '"deploy_grace_wait"' in line]
    report["grace_seconds"] = grace[0]["seconds"] if grace else None
    sm = slots.aws.client("secretsmanager")
    current = json.loads(sm.get_secret_value(SecretId=slots.arn, VersionStage="AWSCURRENT")["SecretString"])
    slots.active = current["active_slot"]
    slots.passwords = {slot: current[slot]["password"] for slot in "AB"}
    report["stderr"] = proc.stderr
    return report


def through(bouncer: Bouncer, slots: SlotDb) -> None:
    """The slot secret names the PgBouncer; the admin secret keeps PostgreSQL's own address."""
    secret = json.loads(slots.secret())
    for slot in "AB":
        secret[slot]["host"], secret[slot]["port"] = bouncer.host, bouncer.port
    slots.aws.client("secretsmanager").put_secret_value(SecretId=slots.arn, SecretString=json.dumps(secret))


def test_loader_clients_behind_pgbouncer_lose_no_query_over_three_rotations(pg: DbEnv, aws: AwsEnv) -> None:
    slots = create_slot_db(pg, aws)
    # Transaction pooling, and server connections that last a second: new server logins all the time, each with
    # the SCRAM keys of the client's login. With the old defaults (no grace, no drain, the loaders' 300 s TTL) this
    # set-up lost 1,534 of 7,891 queries over three rotations ("server login has been failing").
    with pgbouncer(pg, pool_mode="transaction", server_lifetime="1", server_idle_timeout="1") as bouncer:
        through(bouncer, slots)
        makers: list[Callable[[SlotDb], Any]] = [sqlalchemy, psycopg_pool, asyncpg_service]
        with makers[0](slots) as a, makers[1](slots) as b, makers[2](slots) as c:
            services = [direct(slots), a, b, c]
            stop = threading.Event()
            workers = [w for service in services for w in service.run(stop)]
            reports = []
            try:
                time.sleep(1.0)
                for _ in range(ROTATIONS):
                    reports.append(rotate(slots, pg))
                    time.sleep(1.0)
            finally:
                stop.set()
                for worker in workers:
                    worker.join(timeout=30)
        log = bouncer.log_tail()

    for service in services:
        assert service.failures == [], (service.name, len(service.failures), service.failures[:3], log)
        assert len(service.seen) > 50, service.name
        users = {user for _, user in service.seen}
        assert users == set(slots.users.values()), (service.name, users)
    assert slots.active == "B"  # A -> B -> A -> B
    expected_grace = longest_cache_age(TTL) + LOADER_GRACE_MARGIN
    for report in reports:
        assert report["grace_seconds"] == pytest.approx(expected_grace)
        drain = next(s for s in report["steps"] if s["step"] == "drain_slot")
        assert drain["outcome"] == "ok"
    out = "".join(r["stderr"] for r in reports)
    for password in slots.passwords.values():
        assert password not in out


def test_a_wrong_password_through_pgbouncer_is_an_authentication_failure(pg: DbEnv, aws: AwsEnv) -> None:
    """PgBouncer refuses a wrong password with its own words (SQLSTATE 08P01 on the wire, text only at connect time):
    the loader must refresh and retry on it, and the rotator must read it as "this password does not log in", not
    as "the database is unreachable"."""
    from rotator.client import is_auth_failure
    from rotator.db import get_engine
    from rotator.db.base import Endpoint, TlsConfig

    slots = create_slot_db(pg, aws)
    with pgbouncer(pg) as bouncer:
        kwargs = {"host": bouncer.host, "port": bouncer.port, "dbname": pg.dbname, "sslmode": "disable"}
        with pytest.raises(psycopg.OperationalError) as refused:
            psycopg.connect(user=slots.users["A"], password="not-the-password", connect_timeout=5, **kwargs)
        assert is_auth_failure(refused.value), str(refused.value)
        with pytest.raises(asyncpg.PostgresError) as refused_async:
            asyncio.run(
                asyncpg.connect(
                    host=bouncer.host, port=bouncer.port, database=pg.dbname, user=slots.users["A"],
                    password="not-the-password", ssl=False, timeout=5,
                )
            )  # fmt: skip
        assert is_auth_failure(refused_async.value), repr(refused_async.value)
        endpoint = Endpoint(bouncer.host, bouncer.port, pg.dbname, TlsConfig("disable"))
        engine = get_engine("postgres")
        wrong = engine.check_login(endpoint, slots.users["A"], "not-the-password")
        assert (wrong.ok, wrong.auth_failed) == (False, True), wrong.reason
        assert engine.check_login(endpoint, slots.users["A"], slots.passwords["A"]).ok
