"""Which failures are authentication failures (refresh and retry), and which are not."""

from __future__ import annotations

import psycopg
import psycopg.errors
import pymysql.err
import pytest
import sqlalchemy.exc

from rotator.client import is_auth_failure


class MySqlConnectorError(Exception):
    """Shaped like mysql.connector.errors.ProgrammingError."""

    def __init__(self, errno: int, sqlstate: str) -> None:
        super().__init__(f"{errno} ({sqlstate}): Access denied")
        self.errno = errno
        self.sqlstate = sqlstate


def pg_connect_error(text: str) -> psycopg.OperationalError:
    # What psycopg 3 raises from connect(): no sqlstate, only libpq's message.
    return psycopg.OperationalError(f'connection failed: connection to server at "127.0.0.1", port 5432 failed: {text}')


AUTH = {
    "pymysql-1045": pymysql.err.OperationalError(1045, "Access denied for user 'a'@'h' (using password: YES)"),
    "mysql-connector-28000": MySqlConnectorError(1045, "28000"),
    "psycopg-28P01": psycopg.errors.lookup("28P01")("password authentication failed"),
    "psycopg-28000": psycopg.errors.lookup("28000")("role does not exist"),
    "pgbouncer-08P01-state": psycopg.errors.lookup("08P01")("server login failed: wrong password type"),
    "psycopg-connect-password": pg_connect_error('FATAL:  password authentication failed for user "app_a"'),
    "psycopg-connect-role": pg_connect_error('FATAL:  role "app_a" does not exist'),
    "psycopg-connect-hba": pg_connect_error('FATAL:  no pg_hba.conf entry for host "1.2.3.4", user "u"'),
    "pgbouncer-connect": pg_connect_error("ERROR:  server login has been failing, try again later"),
    "pgbouncer-sasl": pg_connect_error("ERROR:  SASL authentication failed"),
    "pg8000-fields": Exception({"S": "FATAL", "C": "28P01", "M": "password authentication failed"}),
}

NOT_AUTH = {
    "pymysql-unknown-db": pymysql.err.OperationalError(1049, "Unknown database 'x'"),
    "pymysql-cannot-connect": pymysql.err.OperationalError(2003, "Can't connect to MySQL server"),
    "pymysql-access-to-db": pymysql.err.OperationalError(1044, "Access denied for user 'a' to database 'x'"),
    "psycopg-undefined-table": psycopg.errors.lookup("42P01")('relation "x" does not exist'),
    "psycopg-connect-refused": pg_connect_error("Connection refused"),
    "psycopg-connect-no-database": pg_connect_error('FATAL:  database "x" does not exist'),
    "os-error": OSError(1045, "not a database error"),
    "timeout": TimeoutError("timed out"),
}


@pytest.mark.parametrize("name", sorted(AUTH))
def test_auth_failures(name: str) -> None:
    assert is_auth_failure(AUTH[name])


@pytest.mark.parametrize("name", sorted(NOT_AUTH))
def test_other_failures(name: str) -> None:
    assert not is_auth_failure(NOT_AUTH[name])


def test_sqlalchemy_wrappers_and_chains_are_unwrapped() -> None:
    orig = AUTH["pymysql-1045"]
    wrapped = sqlalchemy.exc.OperationalError("connect", {}, orig)
    assert is_auth_failure(wrapped)
    try:
        try:
            raise AUTH["psycopg-connect-password"]
        except psycopg.OperationalError as inner:
            raise RuntimeError("pool gave up") from inner
    except RuntimeError as outer:
        assert is_auth_failure(outer)
    assert not is_auth_failure(sqlalchemy.exc.OperationalError("connect", {}, NOT_AUTH["pymysql-cannot-connect"]))


def test_a_known_sqlstate_wins_over_message_text() -> None:
    # A query error that merely mentions the words is not a login failure.
    err = psycopg.errors.lookup("P0001")("password authentication failed (raised by a trigger)")
    assert not is_auth_failure(err)
