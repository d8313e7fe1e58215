"""Non-ASCII passwords log in through every driver path the loader offers, on real PostgreSQL and MariaDB.

PyMySQL and aiomysql encode a ``str`` password as latin-1; the loader hands them the password's UTF-8 bytes, the
bytes the rotator's MariaDB hash is computed over (rotator/db/mysql_auth.py) and that every other client sends.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from typing import Any

import aiomysql
import asyncpg
import psycopg
import pymysql
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from rotator.client import (
    CredentialLoader,
    DbCredentials,
    aiomysql_kwargs,
    asyncpg_kwargs,
    get_database_credentials,
    psycopg_kwargs,
    pymysql_kwargs,
    sqla,
)
from rotator.db import get_engine
from rotator.db.base import Endpoint, TlsConfig
from tests.harness import AwsEnv, DbEnv

pytestmark = pytest.mark.integration

PASSWORDS = {"umlauts": "pässwörd", "e-acute": "é", "emoji": "key-\U0001f511-🙂"}
PG_SQL = "SELECT session_user"  # current_user is the owner role
MY_SQL = "SELECT CURRENT_USER()"


def create_user(db: DbEnv, password: str) -> str:
    user = db.user("utf8")
    session = get_engine(db.engine).admin_session(
        Endpoint(db.host, db.port, db.dbname, TlsConfig("disable")), db.admin_user, db.admin_password
    )
    try:
        session.create_user(user, password, dbname=db.dbname, grants_from=None)
    finally:
        session.close()
    return user


def _name(value: object) -> str:
    return str(value).split("@", 1)[0]


def sync_paths(db: DbEnv, creds: DbCredentials) -> dict[str, Callable[[], str]]:
    if db.engine == "postgres":

        def direct() -> str:
            with psycopg.connect(**psycopg_kwargs(creds, sslmode="disable", connect_timeout=5)) as conn:
                row = conn.execute(PG_SQL).fetchone()
            assert row is not None
            return _name(row[0])

        return {"psycopg": direct}

    def direct_mysql() -> str:
        conn = pymysql.connect(**pymysql_kwargs(creds, connect_timeout=5))
        try:
            with conn.cursor() as cur:
                cur.execute(MY_SQL)
                row = cur.fetchone()
        finally:
            conn.close()
        assert row is not None
        return _name(row[0])

    return {"pymysql": direct_mysql}


async def async_direct(db: DbEnv, creds: DbCredentials) -> str:
    if db.engine == "postgres":
        conn = await asyncpg.connect(**asyncpg_kwargs(creds, ssl=False, timeout=5))
        try:
            return _name(await conn.fetchval(PG_SQL))
        finally:
            await conn.close()
    my = await aiomysql.connect(**aiomysql_kwargs(creds, connect_timeout=5))
    try:
        async with my.cursor() as cur:
            await cur.execute(MY_SQL)
            row = await cur.fetchone()
    finally:
        my.close()
    return _name(row[0])


async def async_engine_whoami(engine: Any, sql: str) -> str:
    try:
        async with engine.connect() as conn:
            return _name((await conn.exec_driver_sql(sql)).scalar())
    finally:
        await engine.dispose()


@pytest.mark.parametrize("password", list(PASSWORDS.values()), ids=list(PASSWORDS))
def test_non_ascii_password_logs_in_through_every_driver_path(
    db: DbEnv, aws: AwsEnv, password: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    user = create_user(db, password)
    creds = DbCredentials(user, password, db.host, db.port, db.dbname)
    secret = {"username": user, "password": password, "host": db.host, "port": db.port, "database": db.dbname}
    arn = aws.create_secret("utf8", json.dumps(secret))
    loader = CredentialLoader.from_secret(arn, endpoint_url=aws.endpoint_url, region=aws.region)
    pg = db.engine == "postgres"
    sql = PG_SQL if pg else MY_SQL

    seen = {name: path() for name, path in sync_paths(db, creds).items()}
    seen["async driver"] = asyncio.run(async_direct(db, creds))

    engine = sqla.create_engine(loader, "postgresql+psycopg://?sslmode=disable" if pg else "mysql+pymysql://")
    try:
        with engine.connect() as conn:
            seen["sqlalchemy sync"] = _name(conn.exec_driver_sql(sql).scalar())
    finally:
        engine.dispose()

    async_engine = create_async_engine("postgresql+asyncpg://" if pg else "mysql+aiomysql://")
    if pg:
        async_engine = create_async_engine("postgresql+asyncpg://", connect_args={"ssl": False})
    sqla.install(async_engine, loader)
    seen["sqlalchemy async"] = asyncio.run(async_engine_whoami(async_engine, sql))

    # The seed 002 drop-in's URL, as seed 002 uses it.
    monkeypatch.setenv("ENVIRONMENT", "production")
    url = get_database_credentials(
        "production",
        arn,
        aws.region,
        driver="postgresql+asyncpg" if pg else "mysql+aiomysql",
        endpoint_url=aws.endpoint_url,
    )
    seed_engine = create_async_engine(url, connect_args={"ssl": False} if pg else {})
    assert seed_engine.url.password is None  # the plugin took the login out: the loader gives it
    seen["seed002 url"] = asyncio.run(async_engine_whoami(seed_engine, sql))

    assert seen == dict.fromkeys(seen, user)
