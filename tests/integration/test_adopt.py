"""`rotator adopt` on real PostgreSQL and MariaDB, with Secrets Manager on the moto server: an app's existing
user, owning a schema full of objects it created, becomes slot A; slot B gets the same rights; two rotations
later both slots can still SELECT, INSERT and ALTER every object, and the app's own secret (kept as the live
secret) follows the rotations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pymysql
import pytest
from click.testing import CliRunner
from psycopg import sql

from rotator.cli import main
from rotator.db.mysql import marker_role
from tests.harness import AwsEnv, DbEnv, PgServer, mysql_env, pg_env, strong_password
from tests.integration.rotation_env import ROOT, RotationEnv

pytestmark = pytest.mark.integration

PG_OBJECTS = [
    "CREATE SCHEMA appschema",
    "CREATE TYPE appschema.mood AS ENUM ('ok', 'sad')",
    "CREATE TABLE items (id serial PRIMARY KEY, name text)",
    "CREATE SEQUENCE counter",
    "CREATE TABLE appschema.feelings (m appschema.mood)",
    "CREATE VIEW items_view AS SELECT id, name FROM items",
    "CREATE FUNCTION add_one(n int) RETURNS int LANGUAGE sql AS 'SELECT n + 1'",
    "INSERT INTO items (name) VALUES ('first')",
]
MYSQL_OBJECTS = [  # MySQL has no schemas in a database and no types; a column's ENUM stands in for the type
    "CREATE TABLE items (id int AUTO_INCREMENT PRIMARY KEY, name text)",
    "CREATE TABLE feelings (m ENUM('ok', 'sad'))",
    "CREATE VIEW items_view AS SELECT id, name FROM items",
    "CREATE PROCEDURE add_one(IN n INT) SELECT n + 1",
    "INSERT INTO items (name) VALUES ('first')",
]
MARIADB_OBJECTS = ["CREATE SEQUENCE counter"]  # MariaDB 10.3+ (MySQL 8 has none)


def _pg_uses(tag: str) -> list[str]:
    """SELECT, INSERT (through the serial's sequence) and ALTER on every kind of object the original user made."""
    return [
        "SELECT count(*) FROM items",
        "SELECT count(*) FROM items_view",
        f"INSERT INTO items (name) VALUES ('{tag}')",
        "SELECT nextval('counter')",
        "SELECT add_one(1)",
        "INSERT INTO appschema.feelings (m) VALUES ('ok')",
        "SELECT count(*) FROM appschema.feelings",
        f"ALTER TABLE items ADD COLUMN c_{tag} int",
        "ALTER SEQUENCE counter RESTART WITH 10",
        "CREATE OR REPLACE VIEW items_view AS SELECT id, name FROM items",
        "CREATE OR REPLACE FUNCTION add_one(n int) RETURNS int LANGUAGE sql AS 'SELECT n + 1'",
        f"ALTER TYPE appschema.mood ADD VALUE IF NOT EXISTS 'v_{tag}'",
        f"ALTER TABLE appschema.feelings ADD COLUMN c_{tag} int",
        "ALTER SCHEMA appschema OWNER TO CURRENT_USER",
    ]


def _mysql_uses(tag: str, *, mariadb: bool) -> list[str]:
    sequence = ["SELECT NEXTVAL(counter)", "ALTER SEQUENCE counter RESTART WITH 10"] if mariadb else []
    return [
        *sequence,
        "CALL add_one(1)",
        f"ALTER PROCEDURE add_one COMMENT 'used by {tag}'",
        "SELECT count(*) FROM items",
        "SELECT count(*) FROM items_view",
        f"INSERT INTO items (name) VALUES ('{tag}')",
        "INSERT INTO feelings (m) VALUES ('ok')",
        f"ALTER TABLE items ADD COLUMN c_{tag} int",
        f"ALTER TABLE feelings ADD COLUMN c_{tag} int",
        "CREATE OR REPLACE VIEW items_view AS SELECT id, name FROM items",
    ]


@dataclass
class App:
    """The app's existing set-up: one user that owns everything, its secret, the admin secret."""

    db: DbEnv
    aws: AwsEnv
    tmp: Path
    user: str
    password: str
    existing_arn: str
    admin_arn: str
    slot_secret: str
    engine_flags: list[str]

    def run_as(self, user: str, password: str, statements: list[str]) -> None:
        db = self.db
        if isinstance(db.server, PgServer):
            with psycopg.connect(
                host=db.host,
                port=db.port,
                user=user,
                password=password,
                dbname=db.dbname,
                sslmode="disable",
                autocommit=True,
            ) as conn:
                for statement in statements:
                    conn.execute(statement)  # type: ignore[call-overload]
            return
        conn = pymysql.connect(host=db.host, port=db.port, user=user, password=password.encode(), database=db.dbname)
        try:
            with conn.cursor() as cur:
                for statement in statements:
                    cur.execute(statement)
            conn.commit()
        finally:
            conn.close()

    def args(self, *extra: str) -> list[str]:
        return [
            "adopt",
            "--existing-secret", self.existing_arn,
            "--admin-secret", self.admin_arn,
            "--slot-secret", self.slot_secret,
            "--db-tls", "disable",
            "--aws-endpoint-url", self.aws.endpoint_url,
            "--region", self.aws.region,
            *extra,
        ]  # fmt: skip

    def adopt(self, *extra: str) -> tuple[int, dict[str, Any], str]:
        result = CliRunner().invoke(main, self.args(*extra), catch_exceptions=False)
        return result.exit_code, _report(result.stdout), result.stdout + result.stderr

    def adopt_killed_after(self, k: int) -> int:
        proc = subprocess.run(
            [sys.executable, "-m", "tests.integration.crash_adopt", str(k), *self.args(*self.engine_flags)[1:]],
            env={**os.environ},
            capture_output=True,
            text=True,
            timeout=120,
            cwd=ROOT,
        )
        return proc.returncode

    def secret(self, secret_id: str) -> dict[str, Any] | None:
        sm = self.aws.client("secretsmanager")
        try:
            value = sm.get_secret_value(SecretId=secret_id, VersionStage="AWSCURRENT")["SecretString"]
        except sm.exceptions.ResourceNotFoundException:
            return None
        data: dict[str, Any] = json.loads(value)
        return data

    def rotation_env(self) -> RotationEnv:
        slots = self.secret(self.slot_secret)
        assert slots is not None
        env = RotationEnv(
            db=self.db, aws=self.aws, tmp=self.tmp, user_a=slots["A"]["username"], user_b=slots["B"]["username"]
        )
        env.slot_arn, env.admin_arn, env.config_path = self.slot_secret, self.admin_arn, self.tmp / "sqlconf.php"
        return env


def _report(stdout: str) -> dict[str, Any]:
    lines = [line for line in stdout.splitlines() if line.startswith('{"event": "adopt_report"')]
    assert lines, stdout
    report: dict[str, Any] = json.loads(lines[-1])
    return report


def _is_mariadb(db: DbEnv) -> bool:
    conn = db.server.connect()
    try:
        with conn.cursor() as cur:
            cur.execute("SELECT VERSION()")
            return "mariadb" in str(cur.fetchone()[0]).lower()  # type: ignore[index]
    finally:
        conn.close()


def _make_app(db: DbEnv, aws: AwsEnv, tmp: Path) -> App:
    tag = tmp.name.replace("-", "_")[-12:]
    user, password = db.user("legacy"), strong_password()
    db.create_plain_user(user, password)
    if isinstance(db.server, PgServer):
        ident = sql.Identifier
        db.execute(
            sql.SQL("GRANT CONNECT, CREATE ON DATABASE {} TO {}").format(ident(db.dbname), ident(user)).as_string()
        )
        db.execute(sql.SQL("GRANT USAGE, CREATE ON SCHEMA public TO {}").format(ident(user)).as_string())
        existing = {  # seed 002's format
            "username": user, "password": password, "host": db.host, "port": db.port, "database": db.dbname,
        }  # fmt: skip
        objects = PG_OBJECTS
    else:
        db.execute(f"GRANT ALL PRIVILEGES ON `{db.dbname}`.* TO %s@'%%'", (user,))
        existing = {  # the RDS format
            "engine": "mariadb", "host": db.host, "port": db.port, "username": user, "password": password,
            "dbname": db.dbname,
        }  # fmt: skip
        objects = MYSQL_OBJECTS + (MARIADB_OBJECTS if _is_mariadb(db) else [])
    admin = {"username": db.admin_user, "password": db.admin_password, "host": db.host, "port": db.port}
    extra = ["--engine", "postgres"] if db.engine == "postgres" else []
    app = App(
        db=db,
        aws=aws,
        tmp=tmp,
        user=user,
        password=password,
        existing_arn=aws.create_secret(f"{tag}/app", json.dumps(existing)),
        admin_arn=aws.create_secret(f"{tag}/admin", json.dumps(admin)),
        slot_secret=f"{aws.prefix}/{tag}/slots",
        engine_flags=extra,
    )
    aws.secret_ids.append(app.slot_secret)
    db.track(f"{user}_b")
    app.run_as(user, password, objects)
    return app


@pytest.fixture
def app(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> App:
    return _make_app(db, aws, tmp_path)


def _flags(app: App) -> list[str]:
    return list(app.engine_flags)


def snapshot(app: App) -> tuple[object, ...]:
    """Catalog ownerships and grants, password hashes, both secrets."""
    db = app.db
    if isinstance(db.server, PgServer):
        with db.server.connect(db.dbname) as conn:
            owners = conn.execute(
                """
                SELECT 'class', relname, relowner::regrole::text, coalesce(relacl::text, '') FROM pg_class
                 WHERE relnamespace IN (SELECT oid FROM pg_namespace WHERE nspname IN ('public', 'appschema'))
                UNION ALL SELECT 'schema', nspname, nspowner::regrole::text, coalesce(nspacl::text, '')
                  FROM pg_namespace
                UNION ALL SELECT 'db', datname, datdba::regrole::text, coalesce(datacl::text, '') FROM pg_database
                 WHERE datname = current_database()
                UNION ALL SELECT 'proc', proname, proowner::regrole::text, coalesce(proacl::text, '') FROM pg_proc
                 WHERE proname = 'add_one'
                UNION ALL SELECT 'type', typname, typowner::regrole::text, '' FROM pg_type WHERE typname = 'mood'
                UNION ALL SELECT 'role', rolname, coalesce(shobj_description(oid, 'pg_authid'), ''), '' FROM pg_roles
                 WHERE rolname LIKE %(p)s
                UNION ALL SELECT 'member', roleid::regrole::text, member::regrole::text, '' FROM pg_auth_members
                 WHERE member::regrole::text LIKE %(p)s
                UNION ALL SELECT 'setting', setrole::regrole::text, array_to_string(setconfig, ','), ''
                  FROM pg_db_role_setting WHERE setrole::regrole::text LIKE %(p)s
                ORDER BY 1, 2, 3
                """,
                {"p": db.prefix + "%"},
            ).fetchall()
    else:
        conn = db.server.connect()
        try:
            with conn.cursor() as cur:
                cur.execute(
                    "SELECT user, host FROM mysql.user WHERE user LIKE %s OR user = %s ORDER BY 1, 2",
                    (db.prefix + "%", marker_role(db.dbname)),
                )
                accounts = list(cur.fetchall())
                owners = []
                for user, host in accounts:
                    if host:
                        cur.execute("SHOW GRANTS FOR %s@%s", (user, host))
                    else:  # a MariaDB role
                        cur.execute("SHOW GRANTS FOR %s", (user,))
                    owners.append((user, host, sorted(r[0] for r in cur.fetchall())))
        finally:
            conn.close()
    return (owners, db.password_hashes(), app.secret(app.slot_secret), app.secret(app.existing_arn))


def assert_no_password_in(app: App, *outputs: str) -> None:
    slots = app.secret(app.slot_secret) or {}
    passwords = {app.password, app.db.admin_password} | {
        slots[s]["password"] for s in ("A", "B") if isinstance(slots.get(s), dict)
    }
    for out in outputs:
        for password in passwords:
            assert password not in out, "a password leaked"


def test_dry_run_lists_the_exact_statements_and_changes_nothing(app: App) -> None:
    before = snapshot(app)
    code, report, out = app.adopt("--dry-run", *_flags(app))
    assert code == 0, out
    assert snapshot(app) == before
    assert report["dry_run"] and report["slot_secret"] == "would be created"
    statements = report["statements"]
    b = f"{app.user}_b"
    if app.db.engine == "postgres":
        owner = f"{app.db.dbname}_owner"
        assert f'REASSIGN OWNED BY "{app.user}" TO "{owner}"' in statements
        assert f"ALTER ROLE \"{app.user}\" SET role = '{owner}'" in statements
        assert any(s.startswith(f'CREATE ROLE "{b}" LOGIN PASSWORD \'<SCRAM-SHA-256 verifier') for s in statements)
        assert f'GRANT "{owner}" TO "{b}"' in statements
    else:
        assert any(s.startswith(f"CREATE USER '{b}'@'%' IDENTIFIED") and "<hash of slot B" in s for s in statements)
        assert f"GRANT ALL PRIVILEGES ON `{app.db.dbname}`.* TO '{b}'@'%'" in statements
    assert "--dry-run" in out and "-- rotator adopt --dry-run" in out
    assert_no_password_in(app, out)
    # The real run executes exactly what the dry run listed, then a second run has nothing left to do.
    code, real, out2 = app.adopt(*_flags(app))
    assert code == 0, out2
    assert real["statements"] == statements and real["slot_secret"] == "created"
    again = snapshot(app)
    code, second, out3 = app.adopt(*_flags(app))
    assert code == 0 and second["statements"] == [] and second["slot_secret"] == "exists", out3
    assert snapshot(app) == again
    assert_no_password_in(app, out, out2, out3)


def _use_every_object(app: App, user: str, password: str, tag: str) -> None:
    uses = _pg_uses(tag) if app.db.engine == "postgres" else _mysql_uses(tag, mariadb=_is_mariadb(app.db))
    app.run_as(user, password, uses)


def test_adopt_then_two_rotations_every_object_usable_by_both_slots(app: App) -> None:
    code, report, out = app.adopt(*_flags(app))
    assert code == 0, out
    assert any("--live-secret" in n for n in report["notes"])
    slots = app.secret(app.slot_secret)
    assert slots is not None and slots["active_slot"] == "A"
    assert (slots["A"]["username"], slots["A"]["password"]) == (app.user, app.password)  # kept
    assert app.db.login_works(app.user, app.password)  # the original credentials are slot A's
    _use_every_object(app, app.user, app.password, "a0")
    _use_every_object(app, slots["B"]["username"], slots["B"]["password"], "b0")
    env = app.rotation_env()
    for round_, expected in ((1, "B"), (2, "A")):
        result = env.rotate(ROTATOR_LIVE_SECRET=app.existing_arn)
        assert result.exit_code == 0, result.stderr[-3000:]
        now = app.secret(app.slot_secret)
        assert now is not None and now["active_slot"] == expected, result.stdout[-4000:]
        live = app.secret(app.existing_arn)
        assert live is not None and live["username"] == now[expected]["username"]  # the app's secret follows
        assert live["password"] == now[expected]["password"] and live["database"] == app.db.dbname
        assert app.db.login_works(live["username"], live["password"])
        for slot in ("A", "B"):
            _use_every_object(app, now[slot]["username"], now[slot]["password"], f"{slot.lower()}{round_}")
    assert not app.db.login_works(app.user, app.password)  # slot A was rotated: the original password is gone
    env.assert_consistent()


def test_existing_user_from_flags_with_the_password_in_the_environment(app: App, monkeypatch: Any) -> None:
    db = app.db
    monkeypatch.setenv("ROTATOR_EXISTING_PASSWORD", app.password)
    args = [
        "adopt", "--existing-username", app.user, "--existing-host", db.host, "--existing-port", str(db.port),
        "--existing-dbname", db.dbname, "--engine", db.engine, "--admin-secret", app.admin_arn,
        "--slot-secret", app.slot_secret, "--db-tls", "disable", "--aws-endpoint-url", app.aws.endpoint_url,
        "--region", app.aws.region,
    ]  # fmt: skip
    result = CliRunner().invoke(main, args, catch_exceptions=False)
    assert result.exit_code == 0, result.stdout + result.stderr
    slots = app.secret(app.slot_secret)
    assert slots is not None and slots["A"]["password"] == app.password
    assert app.db.login_works(slots["B"]["username"], slots["B"]["password"])


Refusal = Callable[[App], str]


def _admin_is_existing(app: App) -> str:
    existing = {"username": app.db.admin_user, "password": app.db.admin_password, "host": app.db.host,
                "port": app.db.port, "dbname": app.db.dbname, "engine": app.db.engine}  # fmt: skip
    app.existing_arn = app.aws.create_secret("admin-as-app", json.dumps(existing))
    return "is the admin user"


def _privileged(app: App) -> str:
    if app.db.engine == "postgres":
        app.db.execute(sql.SQL("ALTER ROLE {} CREATEROLE").format(sql.Identifier(app.user)).as_string())
        return "CREATEROLE"
    app.db.execute("GRANT PROCESS ON *.* TO %s@'%%'", (app.user,))
    return "PROCESS ON *.*"


def _slot_b_unmanaged(app: App) -> str:
    app.db.create_plain_user(f"{app.user}_b", strong_password())
    return "was not made by the rotator"


def _other_users_in_slot_secret(app: App) -> str:
    other = {"active_slot": "A", "A": {"username": "someone", "password": "x" * 20, "host": app.db.host,
             "port": app.db.port, "dbname": app.db.dbname},
             "B": {"username": "someone_b", "password": "y" * 20, "host": app.db.host, "port": app.db.port,
                   "dbname": app.db.dbname}}  # fmt: skip
    app.aws.client("secretsmanager").create_secret(Name=app.slot_secret, SecretString=json.dumps(other))
    return "already describes users"


def _wrong_password(app: App) -> str:
    app.db.set_password_directly(app.user, strong_password())
    return "does not log in"


@pytest.mark.parametrize(
    "make_bad", [_admin_is_existing, _privileged, _slot_b_unmanaged, _other_users_in_slot_secret, _wrong_password]
)
def test_refusals_change_nothing(app: App, make_bad: Refusal) -> None:
    words = make_bad(app)
    before = snapshot(app)
    for dry in (["--dry-run"], []):
        code, report, out = app.adopt(*dry, *_flags(app))
        assert code == 2, out
        assert words in report["error"] and "Nothing was changed" in report["error"]
        assert snapshot(app) == before
        assert_no_password_in(app, out)


def test_a_crash_after_any_statement_converges_on_re_run(
    db: DbEnv, aws: AwsEnv, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    """SIGKILL right after statement k (0: after the slot secret is written), for every k: the re-run computes
    exactly the statements left, a third run none, and both slots can use every object."""
    probe = _make_app(db, aws, tmp_path / "probe")
    code, report, out = probe.adopt("--dry-run", *_flags(probe))
    assert code == 0, out
    count = len(report["statements"])
    assert count >= 3
    server = request.getfixturevalue("pg_server" if db.engine == "postgres" else "mysql_server")
    fresh = pg_env if db.engine == "postgres" else mysql_env
    for k in range(count + 1):  # 0: killed right after the slot secret was written
        with fresh(server) as own_db:
            app = _make_app(own_db, aws, tmp_path / f"k{k}")
            assert app.adopt_killed_after(k) == -9
            code, report, out = app.adopt(*_flags(app))
            assert code == 0, (k, out)
            assert len(report["statements"]) == count - k, (k, report["statements"])
            code, report, out = app.adopt(*_flags(app))
            assert code == 0 and report["statements"] == [], (k, out)
            slots = app.secret(app.slot_secret)
            assert slots is not None
            for slot in ("A", "B"):
                _use_every_object(app, slots[slot]["username"], slots[slot]["password"], f"{slot.lower()}k{k}")
