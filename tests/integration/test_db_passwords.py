"""Passwords on the wire: never in clear in MariaDB's processlist, and non-ASCII passwords log in on both engines."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import psycopg
import pymysql
import pytest

from rotator.db.base import Endpoint, TlsConfig
from rotator.db.mysql import MySQLAdminSession, MySQLEngine, marker_role
from rotator.db.postgres import PostgresEngine
from rotator.passwords import PasswordPolicy
from tests.harness import DbEnv, MySqlServer


def endpoint(db: DbEnv) -> Endpoint:
    return Endpoint(host=db.host, port=db.port, dbname=db.dbname, tls=TlsConfig(mode="disable"))


@pytest.fixture
def drop_marker_role(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    for fixture in ("mysql", "db"):
        if fixture in request.fixturenames:
            env = request.getfixturevalue(fixture)
            if isinstance(env.server, MySqlServer):
                conn = env.server.connect()
                try:
                    with conn.cursor() as cur:
                        cur.execute("DROP ROLE IF EXISTS %s", (marker_role(env.dbname),))
                finally:
                    conn.close()


def plain_mysql_login(db: DbEnv, user: str, password: str) -> bool:
    try:
        pymysql.connect(host=db.host, port=db.port, user=user, password=password.encode(), connect_timeout=5).close()
        return True
    except pymysql.err.OperationalError:
        return False


def plain_pg_login(db: DbEnv, user: str, password: str) -> bool:
    try:
        psycopg.connect(
            host=db.host, port=db.port, dbname=db.dbname, user=user, password=password, sslmode="disable"
        ).close()
        return True
    except psycopg.OperationalError:
        return False


def _statement_while_blocked(mysql: DbEnv, session: MySQLAdminSession, change: Callable[[], None]) -> str:
    """Run ``change`` while root holds a lock that blocks account changes; return the statement as the
    processlist shows it to a user with PROCESS (here root, from a third connection)."""
    assert isinstance(mysql.server, MySqlServer)
    locker, watcher = mysql.server.connect(), mysql.server.connect()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            change()
        except BaseException as exc:  # reported by the test thread
            errors.append(exc)

    thread = threading.Thread(target=run)
    try:
        with locker.cursor() as cur:
            # Reads of mysql.global_priv go on; ALTER/CREATE USER, which write it, wait (MariaDB 10.11:
            # "Waiting for table metadata lock").
            cur.execute("LOCK TABLES mysql.global_priv READ")
        thread.start()
        seen = ""
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with watcher.cursor() as cur:
                cur.execute(
                    "SELECT STATE, INFO FROM information_schema.PROCESSLIST WHERE ID = %s",
                    (session._conn.thread_id(),),
                )
                row = cur.fetchone()
            if row and row[1] and "lock" in str(row[0]).lower() and str(row[1]).startswith(("CREATE", "ALTER")):
                seen = str(row[1])
                break
            time.sleep(0.02)
        assert seen, "the account change never waited on the lock: this test proves nothing"
    finally:
        with locker.cursor() as cur:
            cur.execute("UNLOCK TABLES")
        thread.join(30)
        locker.close()
        watcher.close()
    assert not errors, errors
    return seen


def test_mysql_processlist_never_shows_the_password(mysql: DbEnv, drop_marker_role: None) -> None:
    engine, ep = MySQLEngine(), endpoint(mysql)
    name, first, second = mysql.user("slot_a"), PasswordPolicy().generate(), PasswordPolicy().generate()
    with engine.admin_session(ep, mysql.admin_user, mysql.admin_password) as session:
        created = _statement_while_blocked(
            mysql, session, lambda: session.create_user(name, first, dbname=mysql.dbname, grants_from=None)
        )
        altered = _statement_while_blocked(mysql, session, lambda: session.set_password(name, second))
    assert created.startswith("CREATE USER") and "IDENTIFIED BY PASSWORD '*" in created
    assert altered.startswith("ALTER USER") and "IDENTIFIED BY PASSWORD '*" in altered
    for statement in (created, altered):
        assert first not in statement and second not in statement
    assert engine.check_login(ep, name, second).ok
    assert plain_mysql_login(mysql, name, second)
    wrong = engine.check_login(ep, name, first)
    assert (wrong.ok, wrong.auth_failed) == (False, True)
    assert not plain_mysql_login(mysql, name, second + "x")


@pytest.mark.parametrize(
    "password", ["pässwörd", "é", "key-\U0001f511-\U0001f600"], ids=["umlauts", "e-acute", "emoji"]
)
def test_non_ascii_passwords_log_in(db: DbEnv, drop_marker_role: None, password: str) -> None:
    engine = PostgresEngine() if db.engine == "postgres" else MySQLEngine()
    ep, name, admin_name = endpoint(db), db.user("slot_a"), db.user("admin2")
    plain_login = plain_pg_login if db.engine == "postgres" else plain_mysql_login
    with engine.admin_session(ep, db.admin_user, db.admin_password) as session:
        session.create_user(name, password, dbname=db.dbname, grants_from=None)
        created_ok = engine.check_login(ep, name, password)
        session.set_password(name, password + "2")
    assert created_ok.ok, created_ok.reason
    assert engine.check_login(ep, name, password + "2").ok
    assert plain_login(db, name, password + "2")
    wrong = engine.check_login(ep, name, password)
    assert (wrong.ok, wrong.auth_failed) == (False, True)
    assert not plain_login(db, name, password)

    # The admin logs in with such a password too (admin_session sends the same bytes).
    with engine.admin_session(ep, db.admin_user, db.admin_password) as session:
        session.create_user(admin_name, password, dbname=db.dbname, grants_from=None)
    engine.admin_session(ep, admin_name, password).close()
