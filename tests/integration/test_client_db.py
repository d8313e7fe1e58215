"""The client against real PostgreSQL and MariaDB: the drivers' real login errors, SQLAlchemy, wrong passwords."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import psycopg
import pymysql
import pytest
import sqlalchemy.exc

from rotator.client import CredentialLoader, DbCredentials, is_auth_failure, psycopg_kwargs, pymysql_kwargs, sqla
from tests.harness import AwsEnv, DbEnv
from tests.integration.test_client_rotation import SlotDb, create_slot_db

pytestmark = pytest.mark.integration


def open_connection(db: DbEnv, creds: DbCredentials) -> Any:
    if db.engine == "postgres":
        return psycopg.connect(**psycopg_kwargs(creds, connect_timeout=5, sslmode="disable"))
    return pymysql.connect(**pymysql_kwargs(creds, connect_timeout=5))


def login_error(db: DbEnv, **changes: Any) -> Exception:
    creds = replace(DbCredentials(db.admin_user, db.admin_password, db.host, db.port, db.dbname), **changes)
    with pytest.raises(Exception) as info:
        open_connection(db, creds).close()
    return info.value


def test_real_login_failures_are_auth_failures(db: DbEnv) -> None:
    assert is_auth_failure(login_error(db, password=db.admin_password + "x"))
    assert is_auth_failure(login_error(db, username=db.prefix + "_nobody"))
    assert not is_auth_failure(login_error(db, dbname=db.prefix + "_no_such_db"))
    assert not is_auth_failure(login_error(db, port=1))


def test_real_login_failure_through_sqlalchemy(db: DbEnv) -> None:
    url = "postgresql+psycopg://" if db.engine == "postgres" else "mysql+pymysql://"
    engine = sqlalchemy.create_engine(
        sqlalchemy.engine.URL.create(
            url.rstrip(":/"),
            username=db.admin_user,
            password="wrong-password",
            host=db.host,
            port=db.port,
            database=db.dbname,
        )
    )
    with pytest.raises(sqlalchemy.exc.OperationalError) as info:
        engine.connect()
    assert is_auth_failure(info.value)
    engine.dispose()


def whoami(engine: Any, db: DbEnv) -> str:
    sql = "SELECT session_user" if db.engine == "postgres" else "SELECT CURRENT_USER()"  # current_user: the owner role
    with engine.connect() as conn:
        return str(conn.exec_driver_sql(sql).scalar()).split("@", 1)[0]


def flip_without_rotating(slots: SlotDb) -> None:
    slots.active = "B" if slots.active == "A" else "A"
    slots.put()


@pytest.mark.parametrize("recycle", [True, False])
def test_sqlalchemy_engine(db: DbEnv, aws: AwsEnv, recycle: bool) -> None:
    slots = create_slot_db(db, aws)
    loader = CredentialLoader.from_secret(slots.arn, endpoint_url=aws.endpoint_url, ttl=300)
    engine = sqla.create_engine(loader, recycle_on_rotation=recycle, pool_size=1, max_overflow=0)
    try:
        # The engine URL names the driver only: no password in it, or in its repr, or in its logs.
        assert engine.url.drivername == ("postgresql+psycopg" if db.engine == "postgres" else "mysql+pymysql")
        assert engine.url.password is None and engine.url.username is None
        assert slots.passwords["A"] not in repr(engine)
        assert whoami(engine, db) == slots.users["A"]
        flip_without_rotating(slots)
        loader.refresh()
        # The pooled session of A is still valid; with recycling it is replaced by one of B at checkout.
        assert whoami(engine, db) == slots.users["B" if recycle else "A"]
    finally:
        engine.dispose()


def test_a_wrong_password_is_not_retried_in_a_loop(db: DbEnv, aws: AwsEnv) -> None:
    slots = create_slot_db(db, aws)
    slots.passwords["A"] = "not-the-password"
    slots.put()
    loader = CredentialLoader.from_secret(slots.arn, endpoint_url=aws.endpoint_url, ttl=300)
    for _ in range(5):
        with pytest.raises((psycopg.OperationalError, pymysql.err.OperationalError)) as info:
            loader.connect(lambda c: open_connection(db, c))
        assert is_auth_failure(info.value)
    # The cold fetch and one refresh; the next refreshes wait for min_refresh_interval.
    assert loader.stats().fetches == 2
