"""Both engines against the real servers: users, passwords, grants, locks, login checks, TLS, no leaks."""

from __future__ import annotations

import io
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import psycopg
import pytest
import structlog

from rotator import log as rotator_log
from rotator.db.base import Endpoint, TlsConfig, TlsMode
from rotator.db.mysql import MySQLAdminSession, MySQLEngine
from rotator.db.postgres import PostgresAdminSession, PostgresEngine
from rotator.errors import DatabaseError
from rotator.passwords import PasswordPolicy
from tests.harness import DbEnv, PgServer, free_port

Engine = MySQLEngine | PostgresEngine
Session = MySQLAdminSession | PostgresAdminSession


def new_password() -> str:
    return PasswordPolicy().generate()


def engine_for(db: DbEnv) -> Engine:
    return PostgresEngine() if db.engine == "postgres" else MySQLEngine()


def endpoint(db: DbEnv, *, port: int | None = None, tls: TlsConfig | None = None, timeout: float = 5.0) -> Endpoint:
    return Endpoint(
        host=db.host,
        port=db.port if port is None else port,
        dbname=db.dbname,
        tls=tls or TlsConfig(mode="disable"),
        connect_timeout=timeout,
    )


def admin(db: DbEnv) -> Session:
    return engine_for(db).admin_session(endpoint(db), db.admin_user, db.admin_password)


def user_name(db: DbEnv, kind: str) -> str:
    if kind == "plain":
        return db.user("slot_a")
    if kind == "dash":
        return db.track(f"slot-a-{db.prefix}")
    if kind == "quote":
        return db.track(f"o'brien_{db.prefix}")
    if kind == "punct":
        return db.track(f'p`%"_{db.prefix}')
    assert kind == "long63"
    name = db.user("x")
    return db.track(name + "y" * (63 - len(name)))


@pytest.mark.parametrize("kind", ["plain", "dash", "quote", "punct", "long63"])
def test_create_set_password_and_check_login(db: DbEnv, kind: str) -> None:
    engine, ep = engine_for(db), endpoint(db)
    name = user_name(db, kind)
    if kind == "long63":
        assert len(name.encode()) == 63
    first, second = new_password(), new_password()
    with admin(db) as session:
        assert not session.user_exists(name)
        session.create_user(name, first, dbname=db.dbname, grants_from=None)
        assert session.user_exists(name)
        assert db.user_exists(name)
        assert engine.check_login(ep, name, first).ok
        assert db.login_works(name, first)

        session.set_password(name, second)
    assert engine.check_login(ep, name, second).ok
    assert db.login_works(name, second)
    old = engine.check_login(ep, name, first)
    assert (old.ok, old.auth_failed, old.reason) == (False, True, "authentication refused")
    assert not db.login_works(name, first)
    wrong = engine.check_login(ep, name, second + "x")
    assert (wrong.ok, wrong.auth_failed) == (False, True)


def test_nonexistent_user_is_auth_failed(db: DbEnv) -> None:
    result = engine_for(db).check_login(endpoint(db), f"{db.prefix}_nobody", new_password())
    assert (result.ok, result.auth_failed, result.reason) == (False, True, "authentication refused")


def test_no_access_to_the_database_is_neither_auth_failed_nor_an_outage(db: DbEnv) -> None:
    name, password = db.user("bare"), new_password()
    if isinstance(db.server, PgServer):
        with db.server.connect() as conn:
            conn.execute(
                psycopg.sql.SQL("CREATE ROLE {} LOGIN PASSWORD {}").format(
                    psycopg.sql.Identifier(name), psycopg.sql.Literal(password)
                )
            )
            conn.execute(
                psycopg.sql.SQL("REVOKE CONNECT ON DATABASE {} FROM PUBLIC").format(psycopg.sql.Identifier(db.dbname))
            )
    else:
        conn = db.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute("CREATE USER %s@'%%' IDENTIFIED BY %s", (name, password))  # no grant at all
        finally:
            conn.close()
    result = engine_for(db).check_login(endpoint(db), name, password)
    assert (result.ok, result.auth_failed) == (False, False)
    assert result.reason.startswith("no access to database: "), result.reason


def test_create_user_twice_sets_the_password_and_keeps_grants(db: DbEnv) -> None:
    name, first, second = db.user("slot_a"), new_password(), new_password()
    with admin(db) as session:
        session.create_user(name, first, dbname=db.dbname, grants_from=None)
        grants = session.show_grants(name)
        session.create_user(name, second, dbname=db.dbname, grants_from=None)
        assert session.show_grants(name) == grants
    assert db.login_works(name, second)
    assert not db.login_works(name, first)


def test_postgres_password_is_sent_as_scram_verifier(pg: DbEnv) -> None:
    assert isinstance(pg.server, PgServer)
    name, password = pg.user("slot_a"), new_password()
    with admin(pg) as session:
        assert isinstance(session, PostgresAdminSession)
        session.create_user(name, password, dbname=pg.dbname, grants_from=None)
        session.set_password(name, password)
        backend_pid = session._conn.info.backend_pid
        with pg.server.connect() as su:
            row = su.execute("SELECT query FROM pg_stat_activity WHERE pid = %s", (backend_pid,)).fetchone()
            stored = su.execute("SELECT rolpassword FROM pg_authid WHERE rolname = %s", (name,)).fetchone()
    assert row is not None and stored is not None
    # The admin connection's last statement, as the server saw it: the verifier, never the password.
    assert "SCRAM-SHA-256$" in row[0]
    assert password not in row[0]
    assert stored[0].startswith("SCRAM-SHA-256$")
    assert password not in stored[0]
    assert pg.login_works(name, password)


def test_admin_changes_its_own_password(db: DbEnv) -> None:
    engine, ep, new = engine_for(db), endpoint(db), new_password()
    with admin(db) as session:
        session.set_password(db.admin_user, new)
    assert engine.check_login(ep, db.admin_user, new).ok
    refused = engine.check_login(ep, db.admin_user, db.admin_password)
    assert refused.auth_failed
    with engine.admin_session(ep, db.admin_user, new) as session:
        assert session.user_exists(db.admin_user)
    with pytest.raises(DatabaseError) as caught:
        engine.admin_session(ep, db.admin_user, db.admin_password)
    assert getattr(caught.value, "auth_failed", None) is True
    assert db.admin_password not in str(caught.value)
    assert "refused" in str(caught.value)


def test_mysql_grants_copied_from_the_other_slot(mysql: DbEnv) -> None:
    a, b = mysql.user("slot_a"), mysql.user("slot_b")
    with admin(mysql) as session:
        session.create_user(a, new_password(), dbname=mysql.dbname, grants_from=None)
        # Give A grants beyond the default: a global one (on the USAGE line) and a table-level one.
        conn = mysql.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(f"CREATE TABLE `{mysql.dbname}`.t (id INT)")
                cur.execute("GRANT PROCESS ON *.* TO %s@'%%'", (a,))
                cur.execute(f"GRANT SELECT (id) ON `{mysql.dbname}`.t TO %s@'%%'", (a,))
        finally:
            conn.close()
        b_password = new_password()
        session.create_user(b, b_password, dbname=mysql.dbname, grants_from=a)
        grants_a, grants_b = session.show_grants(a), session.show_grants(b)
    assert any(mysql.dbname in g and "ALL PRIVILEGES" in g for g in grants_a)
    assert any("PROCESS" in g for g in grants_a)
    assert not any("IDENTIFIED" in g for g in grants_a + grants_b)  # show_grants never returns a hash
    assert sorted(g.replace(f"`{a}`@", "`USER`@") for g in grants_a) == sorted(
        g.replace(f"`{b}`@", "`USER`@") for g in grants_b
    )
    assert mysql.login_works(b, b_password)


def test_mysql_grants_copied_for_names_that_need_quoting(mysql: DbEnv) -> None:
    a, b = mysql.track(f"o'brien`%_{mysql.prefix}"), mysql.track(f"slot-b%_{mysql.prefix}")
    with admin(mysql) as session:
        session.create_user(a, new_password(), dbname=mysql.dbname, grants_from=None)
        session.create_user(b, new_password(), dbname=mysql.dbname, grants_from=a)
        grants_b = session.show_grants(b)
    quoted_b = "`" + b.replace("`", "``") + "`"
    assert f"GRANT ALL PRIVILEGES ON `{mysql.dbname}`.* TO {quoted_b}@`%`" in grants_b


def test_postgres_owner_role_shared_by_both_slots(pg: DbEnv) -> None:
    a, b = pg.user("slot_a"), pg.user("slot_b")
    owner = f"{pg.dbname}_owner"
    pa, pb = new_password(), new_password()
    with admin(pg) as session:
        session.create_user(a, pa, dbname=pg.dbname, grants_from=None)
        session.create_user(b, pb, dbname=pg.dbname, grants_from=a)
        grants = session.show_grants(b)
    assert f"MEMBER OF {owner}" in grants
    assert f"SET role={owner}" in grants
    assert f"CREATE ON DATABASE {pg.dbname}" in grants
    assert "CREATE ON SCHEMA public" in grants

    def connect(user: str, password: str) -> psycopg.Connection[Any]:
        return psycopg.connect(
            host=pg.host,
            port=pg.port,
            dbname=pg.dbname,
            user=user,
            password=password,
            autocommit=True,
            sslmode="disable",
        )

    with connect(a, pa) as conn_a:
        conn_a.execute("CREATE TABLE shared_t (id int PRIMARY KEY, v text)")
        conn_a.execute("INSERT INTO shared_t VALUES (1, 'from a')")
        table_owner = conn_a.execute("SELECT tableowner FROM pg_tables WHERE tablename = 'shared_t'").fetchone()
    assert table_owner == (owner,)
    with connect(b, pb) as conn_b:
        conn_b.execute("INSERT INTO shared_t VALUES (2, 'from b')")
        conn_b.execute("UPDATE shared_t SET v = 'b was here' WHERE id = 1")
        rows = conn_b.execute("SELECT id, v FROM shared_t ORDER BY id").fetchall()
        conn_b.execute("ALTER TABLE shared_t ADD COLUMN w int")  # B may even change A's table: same owner
    assert rows == [(1, "b was here"), (2, "from b")]


def test_postgres_owner_role_override(pg: DbEnv) -> None:
    owner, name = pg.user("custom_owner"), pg.user("slot_a")
    engine = PostgresEngine(owner_role=owner)
    with engine.admin_session(endpoint(pg), pg.admin_user, pg.admin_password) as session:
        session.create_user(name, new_password(), dbname=pg.dbname, grants_from=None)
        assert f"MEMBER OF {owner}" in session.show_grants(name)
        assert session.show_grants(owner)[0] == "NOLOGIN"


def test_show_grants_of_a_missing_user_fails_clearly(db: DbEnv) -> None:
    with admin(db) as session, pytest.raises(DatabaseError):
        session.show_grants(f"{db.prefix}_nobody")


@pytest.mark.parametrize("lock", ["rotator:short", "rotator:" + "long-database-name-" * 5])
def test_two_sessions_cannot_hold_the_same_lock(db: DbEnv, lock: str) -> None:
    first, second = admin(db), admin(db)
    try:
        assert first.try_lock(lock)
        assert not second.try_lock(lock)
        first.unlock(lock)
        assert second.try_lock(lock)
        assert not first.try_lock(lock)
        second.close()  # closing the session releases its lock, once the server has ended that session
        deadline = time.monotonic() + 5
        while not first.try_lock(lock):
            assert time.monotonic() < deadline, "the closed session's lock was never released"
            time.sleep(0.01)
        assert first.try_lock(lock + ":other")
    finally:
        first.close()
        second.close()


def test_unreachable_port_is_not_auth_failed(db: DbEnv) -> None:
    engine, ep = engine_for(db), endpoint(db, port=free_port())
    result = engine.check_login(ep, db.admin_user, db.admin_password)
    assert (result.ok, result.auth_failed) == (False, False)
    assert result.reason.startswith("unreachable: ")
    assert "refused" in result.reason.lower()
    with pytest.raises(DatabaseError) as caught:
        engine.admin_session(ep, db.admin_user, db.admin_password)
    assert getattr(caught.value, "auth_failed", None) is False
    assert db.admin_password not in str(caught.value)


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A port that accepts TCP connections and never says a word."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield int(listener.getsockname()[1])


def test_silent_server_times_out_as_unreachable(db: DbEnv, silent_server: int) -> None:
    started = time.monotonic()
    result = engine_for(db).check_login(endpoint(db, port=silent_server, timeout=2), db.admin_user, "x" * 20)
    assert time.monotonic() - started < 15
    assert (result.ok, result.auth_failed) == (False, False)
    assert result.reason.startswith("unreachable: ")


def test_tls_required_against_a_plaintext_server_is_refused(db: DbEnv) -> None:
    engine = engine_for(db)
    modes: tuple[TlsMode, ...] = ("require", "verify-ca", "verify-full")
    for mode in modes:
        ep = endpoint(db, tls=TlsConfig(mode=mode))
        result = engine.check_login(ep, db.admin_user, db.admin_password)
        assert (result.ok, result.auth_failed) == (False, False), mode
        assert "TLS" in result.reason or "SSL" in result.reason, result.reason
        with pytest.raises(DatabaseError) as caught:
            engine.admin_session(ep, db.admin_user, db.admin_password)
        assert getattr(caught.value, "auth_failed", None) is False
        assert "TLS" in str(caught.value) or "SSL" in str(caught.value)


def test_mysql_tls_without_server_support_is_caught_by_our_own_check(
    mysql: DbEnv, monkeypatch: pytest.MonkeyPatch
) -> None:
    """pymysql refuses already; the Ssl_cipher check is the second line, so test it on its own too."""
    import pymysql

    original = getattr(pymysql.connections.Connection, "_request_authentication")  # noqa: B009

    def plaintext_anyway(self: Any) -> None:
        self.ssl = False  # pretend the driver silently fell back to plaintext
        original(self)

    monkeypatch.setattr(pymysql.connections.Connection, "_request_authentication", plaintext_anyway)
    result = MySQLEngine().check_login(
        endpoint(mysql, tls=TlsConfig(mode="require")), mysql.admin_user, mysql.admin_password
    )
    assert (result.ok, result.auth_failed, result.reason) == (False, False, "unreachable: server did not negotiate TLS")


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    buf = io.StringIO()
    root = logging.getLogger()
    handlers = list(root.handlers)
    rotator_log.configure(json=True, stream=buf, level="debug")
    try:
        yield buf
    finally:
        structlog.reset_defaults()
        for handler in root.handlers[:]:
            if handler not in handlers:
                root.removeHandler(handler)


def test_passwords_never_reach_the_logs_or_errors(db: DbEnv, captured_logs: io.StringIO) -> None:
    engine, ep = engine_for(db), endpoint(db)
    name, first, second = db.user("slot_a"), new_password(), new_password()
    errors: list[str] = []
    with admin(db) as session:
        session.create_user(name, first, dbname=db.dbname, grants_from=None)
        session.set_password(name, second)
        session.create_user(name, first, dbname=db.dbname, grants_from=None)
        try:
            session.set_password(f"{db.prefix}_nobody", second)
        except DatabaseError as exc:
            errors.append(str(exc))
    results = [engine.check_login(ep, name, p) for p in (first, second, second + "x")]
    results.append(engine.check_login(endpoint(db, port=free_port()), name, second))
    try:
        engine.admin_session(ep, db.admin_user, second)
    except DatabaseError as exc:
        errors.append(str(exc))
    output = captured_logs.getvalue()
    assert "password_set" in output and name in output  # the logging really went to the buffer
    assert len(errors) == 2
    for secret in (first, second, db.admin_password):
        assert secret not in output
        assert all(secret not in r.reason for r in results)
        assert all(secret not in e for e in errors)


def test_mysql_tls_disable_really_means_plaintext(mysql: DbEnv) -> None:
    """--db-tls disable: PyMySQL must not negotiate TLS even when the server offers it."""
    from rotator.db.mysql import MySQLEngine

    session = MySQLEngine().admin_session(
        Endpoint(mysql.host, mysql.port, mysql.dbname, TlsConfig("disable")), mysql.admin_user, mysql.admin_password
    )
    try:
        conn = session._conn  # type: ignore[attr-defined]
        with conn.cursor() as cur:
            cur.execute("SHOW STATUS LIKE 'Ssl_cipher'")
            row = cur.fetchone()
        assert row is not None and row[1] == ""
    finally:
        session.close()
