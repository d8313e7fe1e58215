"""Grants stay equal: a right given to the live slot only is given to the standby before the flip, so the app
on the new slot can do what it did on the old one. The live slot's rights are never touched. Real PostgreSQL
and MariaDB, Secrets Manager on the moto server."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from psycopg import sql

from rotator.db import get_engine
from rotator.db.base import Endpoint, TlsConfig
from tests.harness import AwsEnv, DbEnv, PgServer
from tests.integration.rotation_env import RotationEnv, make_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> RotationEnv:
    return make_env(db, aws, tmp_path)


def _creds(env: RotationEnv, slot: str) -> tuple[str, str]:
    cur = env.secret()
    assert cur is not None
    return cur[slot]["username"], cur[slot]["password"]


def _as_slot(env: RotationEnv, slot: str, statement: str, *, database: str | None = None) -> list[Any]:
    """Run one statement logged in as a slot user, as the app would."""
    user, password = _creds(env, slot)
    db = env.db
    if isinstance(db.server, PgServer):
        with psycopg.connect(
            host=db.host, port=db.port, user=user, password=password, dbname=db.dbname, sslmode="disable"
        ) as conn:
            cur = conn.execute(statement)  # type: ignore[arg-type]
            return cur.fetchall() if cur.description else []
    conn = pymysql.connect(
        host=db.host, port=db.port, user=user, password=password.encode(), database=database or db.dbname
    )
    try:
        with conn.cursor() as cur:
            cur.execute(statement)
            return list(cur.fetchall())
    finally:
        conn.close()


def _missing(env: RotationEnv, source: str, target: str) -> tuple[str, ...]:
    db = env.db
    session = get_engine(db.engine).admin_session(
        Endpoint(db.host, db.port, db.dbname, TlsConfig("disable")), db.admin_user, db.admin_password
    )
    try:
        return session.missing_grants(source, target)
    finally:
        session.close()


@contextlib.contextmanager
def _reports_elsewhere(env: RotationEnv) -> Iterator[str]:
    """A ``reports`` table that the app on slot A reads and slot B cannot (the drift); returns how to read it.

    PostgreSQL: in a schema only slot A's search_path names. MariaDB: in a second database, SELECT on it granted
    to slot A@% only.
    """
    db = env.db
    if isinstance(db.server, PgServer):
        # Slot users act as the owner role (ALTER ROLE .. SET role): what the app on A relies on and B lacks is
        # a setting. A direct grant to A (inert under SET role, but a right all the same) is copied too.
        _as_slot(env, "A", "CREATE SCHEMA reporting")
        _as_slot(env, "A", "CREATE TABLE reporting.reports (n int)")
        _as_slot(env, "A", "INSERT INTO reporting.reports VALUES (42)")
        user_a = sql.Identifier(env.user_a)
        db.execute(sql.SQL('ALTER ROLE {} SET search_path = reporting, "$user", public').format(user_a).as_string())
        db.execute("CREATE TABLE public.audit_log (n int)")
        db.execute(
            sql.SQL("ALTER TABLE public.audit_log OWNER TO {}").format(sql.Identifier(db.admin_user)).as_string()
        )
        db.execute(sql.SQL("GRANT SELECT ON public.audit_log TO {}").format(user_a).as_string())
        yield "SELECT n FROM reports"
        return
    other = f"{db.prefix}_rep"
    db.execute(f"CREATE DATABASE `{other}`")
    try:
        db.execute(f"CREATE TABLE `{other}`.reports (n int)")
        db.execute(f"INSERT INTO `{other}`.reports VALUES (42)")
        db.execute(f"GRANT SELECT ON `{other}`.* TO %s@'%%'", (env.user_a,))
        yield f"SELECT n FROM `{other}`.reports"
    finally:
        db.execute(f"DROP DATABASE IF EXISTS `{other}`")


def test_a_right_given_to_slot_a_only_follows_the_app_to_slot_b(env: RotationEnv) -> None:
    with _reports_elsewhere(env) as read_reports:
        assert _as_slot(env, "A", read_reports) == [(42,)]
        with pytest.raises((psycopg.Error, pymysql.err.MySQLError)):
            _as_slot(env, "B", read_reports)  # the drift: B cannot do what the app does on A
        lacks = _missing(env, env.user_a, env.user_b)
        assert lacks and not _missing(env, env.user_b, env.user_a)
        result = env.rotate()
        assert result.exit_code == 0, result.stderr[-2000:]
        report = result.report
        assert report["observed"]["grants_missing"] == {"B": list(lacks)}
        sync = [s for s in report["steps"] if s["step"] == "sync_grants"]
        assert [(s["slot"], s["missing"], s["outcome"]) for s in sync] == [("B", list(lacks), "ok")]
        kinds = [s["step"] for s in report["steps"]]
        assert kinds.index("sync_grants") < kinds.index("render_config")  # healed before the flip
        assert env.secret()["active_slot"] == "B"  # type: ignore[index]
        assert _as_slot(env, "B", read_reports) == [(42,)]  # the app on B does what it did on A
        if env.db.engine == "postgres":
            assert any("audit_log" in g for g in lacks)
            assert _as_slot(env, "B", "SHOW search_path") == [('reporting, "$user", public',)]
        assert not _missing(env, env.user_a, env.user_b)
        # A second run finds nothing to heal.
        again = env.rotate()
        assert again.exit_code == 0 and "sync_grants" not in [s["step"] for s in again.report["steps"]]
        env.assert_consistent()


def test_the_live_slot_is_never_given_the_standbys_extra_rights(env: RotationEnv) -> None:
    """Slot B (standby) holds a right slot A (live) lacks: A is not touched before the flip; once B is live, the
    next run gives A (now the standby) what B holds."""
    db = env.db
    if isinstance(db.server, PgServer):
        db.execute(
            sql.SQL("ALTER ROLE {} SET statement_timeout = '9s'").format(sql.Identifier(env.user_b)).as_string(),
            in_db=False,
        )
    else:
        db.execute(f"GRANT SELECT ON `{db.dbname}_nowhere`.* TO %s@'%%'", (env.user_b,))
    before = _missing(env, env.user_b, env.user_a)
    assert before
    first = env.rotate()
    assert first.exit_code == 0, first.stderr[-2000:]
    assert "sync_grants" not in [s["step"] for s in first.report["steps"]]
    assert _missing(env, env.user_b, env.user_a) == before  # the live slot A was not touched
    second = env.rotate()  # B is live now, A the standby: A gets B's rights
    assert second.exit_code == 0, second.stderr[-2000:]
    assert [s["slot"] for s in second.report["steps"] if s["step"] == "sync_grants"] == ["A"]
    assert not _missing(env, env.user_b, env.user_a)
    env.assert_consistent()


def test_postgres_slot_user_created_but_never_granted_the_owner_role_is_healed(
    pg: DbEnv, aws: AwsEnv, tmp_path: Path
) -> None:
    """The crash gap inside create_user: the role and its marker exist (one transaction), but the run died before
    GRANT <owner> and ALTER ROLE .. SET role. The standby is healed before the app moves onto it."""
    env = make_env(pg, aws, tmp_path)
    owner = f"{pg.dbname}_owner"
    user_b = sql.Identifier(env.user_b)
    pg.execute(sql.SQL("REVOKE {} FROM {}").format(sql.Identifier(owner), user_b).as_string(), in_db=False)
    pg.execute(sql.SQL("ALTER ROLE {} RESET role").format(user_b).as_string(), in_db=False)
    _as_slot(env, "A", "CREATE TABLE made_by_a (n int)")  # owned by the owner role
    assert set(_missing(env, env.user_a, env.user_b)) == {f"MEMBER OF {owner}", f"SET role={owner}"}
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert _as_slot(env, "B", "SELECT current_user") == [(owner,)]
    _as_slot(env, "B", "INSERT INTO made_by_a VALUES (1)")
    _as_slot(env, "B", "ALTER TABLE made_by_a ADD COLUMN m int")
    env.assert_consistent()
