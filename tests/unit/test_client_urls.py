"""Builders escape what needs escaping: each output read back by its consumer's own parser gives the input."""

from __future__ import annotations

import psycopg.conninfo
import pytest
from sqlalchemy.engine import make_url

from rotator.client import DbCredentials, postgres_uri, psycopg_conninfo, psycopg_kwargs, pymysql_kwargs, sqlalchemy_url
from rotator.client.errors import ConfigurationError
from rotator.client.urls import aiomysql_kwargs, asyncpg_kwargs, mysql_password

NASTY = "p@ss:w/o?r#d%20 'q\" \\b\\' é&x=y"
CREDS = DbCredentials("us@er:x", NASTY, "db.example.com", 6432, "d/b?x#y", engine="postgres")


def test_psycopg_conninfo_round_trip() -> None:
    parsed = psycopg.conninfo.conninfo_to_dict(psycopg_conninfo(CREDS, sslmode="require"))
    assert parsed == {
        "user": "us@er:x",
        "password": NASTY,
        "host": "db.example.com",
        "port": "6432",
        "dbname": "d/b?x#y",
        "sslmode": "require",
    }


def test_postgres_uri_round_trip() -> None:
    uri = postgres_uri(CREDS, sslmode="require")
    assert uri.startswith("postgresql://")
    parsed = psycopg.conninfo.conninfo_to_dict(uri)
    assert (parsed["user"], parsed["password"], parsed["host"], parsed["port"], parsed["dbname"]) == (
        "us@er:x",
        NASTY,
        "db.example.com",
        "6432",
        "d/b?x#y",
    )
    assert parsed["sslmode"] == "require"


def test_postgres_uri_ipv6_and_unix_socket() -> None:
    v6 = psycopg.conninfo.conninfo_to_dict(postgres_uri(DbCredentials("u", "p", "::1", 5432, "d")))
    assert v6["host"] == "::1"
    sock = psycopg.conninfo.conninfo_to_dict(postgres_uri(DbCredentials("u", "p", "/var/run/postgresql", 5432, "d")))
    assert sock["host"] == "/var/run/postgresql"


@pytest.mark.parametrize("driver", ["postgresql+psycopg", "postgresql+asyncpg", "mysql+pymysql"])
def test_sqlalchemy_url_round_trip(driver: str) -> None:
    url = make_url(sqlalchemy_url(CREDS, driver))
    assert (url.drivername, url.username, url.password, url.host, url.port, url.database) == (
        driver,
        "us@er:x",
        NASTY,
        "db.example.com",
        6432,
        "d/b?x#y",
    )


def test_sqlalchemy_url_default_driver_follows_the_engine() -> None:
    assert sqlalchemy_url(DbCredentials("u", "p", "h", 5432, "d", engine="postgres")).startswith(
        "postgresql+psycopg://"
    )
    assert sqlalchemy_url(DbCredentials("u", "p", "h", 3306, "d", engine="mysql")).startswith("mysql+pymysql://")
    with pytest.raises(ConfigurationError, match="drivername"):
        sqlalchemy_url(DbCredentials("u", "p", "h", 1, "d"))


def test_driver_kwargs() -> None:
    assert psycopg_kwargs(CREDS, connect_timeout=3) == {
        "user": "us@er:x",
        "password": NASTY,
        "host": "db.example.com",
        "port": 6432,
        "dbname": "d/b?x#y",
        "connect_timeout": 3,
    }
    assert pymysql_kwargs(DbCredentials("u", "p", "h", 3306, None)) == {
        "user": "u",
        "password": b"p",
        "host": "h",
        "port": 3306,
    }
    assert pymysql_kwargs(DbCredentials("u", "p", "h", 3306, "d"))["database"] == "d"


def test_async_driver_kwargs() -> None:
    creds = DbCredentials("u", "pässwörd", "h", 5432, "d")
    assert asyncpg_kwargs(creds, ssl=False) == {
        "user": "u",
        "password": "pässwörd",
        "host": "h",
        "port": 5432,
        "database": "d",
        "ssl": False,
    }
    assert aiomysql_kwargs(creds)["db"] == "d"


@pytest.mark.parametrize("password", ["pässwörd", "é", "p\U0001f511w"])
def test_mysql_passwords_are_sent_as_utf8(password: str) -> None:
    # PyMySQL sends bytes as they are; aiomysql latin-1-encodes what it is given (so: a str of the UTF-8 bytes).
    creds = DbCredentials("u", password, "h", 3306, None)
    assert pymysql_kwargs(creds)["password"] == password.encode("utf-8")
    assert aiomysql_kwargs(creds)["password"].encode("latin-1") == password.encode("utf-8")
    assert mysql_password(password, "pymysql") == password.encode("utf-8")
