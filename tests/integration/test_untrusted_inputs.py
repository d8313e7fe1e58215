"""Inputs the rotator must not trust before it has verified them (issue 9), on real PostgreSQL and MariaDB.

Each bad input is refused with exit 2 and nothing changed (password hashes, secret versions and labels, the
config's bytes and mode), by `rotate`, `rotate --dry-run` and `status` alike.
"""

from __future__ import annotations

import http.server
import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pymysql
import pytest
from click.testing import CliRunner

from rotator.cli import main
from rotator.db import get_engine
from rotator.db.base import Endpoint, TlsConfig
from rotator.errors import ExitCode
from rotator.render import render as render_template
from rotator.secrets import Credentials
from tests.harness import AwsEnv, DbEnv, strong_password
from tests.integration.rotation_env import ROOT, Result, RotationEnv, make_env

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> RotationEnv:
    env = make_env(db, aws, tmp_path)
    assert env.rotate().exit_code == 0  # active B, config rendered; standby A
    return env


def status(env: RotationEnv, **extra: str) -> Result:
    result = CliRunner().invoke(main, ["status"], env=env.env(**extra))
    return Result(result.exit_code, result.stdout, result.stderr)


def assert_refused(env: RotationEnv, words: str, **extra: str) -> None:
    """rotate, --dry-run and status all exit 2 naming the problem, and nothing changes."""
    before = env.state()
    for result in (env.rotate(**extra), env.rotate("--dry-run", **extra), status(env, **extra)):
        assert result.exit_code == ExitCode.BAD_INPUT, (result.exit_code, result.stderr[-1500:])
        assert words in (result.report["error"] or ""), result.report["error"]
        assert env.state() == before, "a refused run changed something"
    for password in env.seen_passwords:
        assert password not in result.stdout + result.stderr


def set_standby(env: RotationEnv, **fields: str) -> None:
    cur = env.secret()
    assert cur is not None
    standby = "A" if cur["active_slot"] == "B" else "B"
    cur[standby].update(fields)
    env.put_current(cur)


# ------------------------------------------------------------------ 1. only managed roles are touched


def test_a_standby_named_as_the_admin_is_refused(env: RotationEnv) -> None:
    set_standby(env, username=env.db.admin_user)
    assert_refused(env, "is the admin user")
    assert env.db.login_works(env.db.admin_user, env.db.admin_password)


def test_an_unrelated_existing_user_is_refused(env: RotationEnv) -> None:
    other, its_password = env.db.prefix + "_someone", strong_password()
    env.db.create_plain_user(other, its_password)
    set_standby(env, username=other)
    assert_refused(env, "not created by the rotator")
    assert env.db.login_works(other, its_password)


def test_a_privileged_slot_user_is_refused(env: RotationEnv) -> None:
    user = env.user_a  # the standby
    if env.db.engine == "postgres":
        env.db.execute(f'ALTER ROLE "{user}" CREATEDB', in_db=False)
    else:
        env.db.execute("GRANT SELECT ON *.* TO %s@'%%'", (user,))
    assert_refused(env, "holds")


def test_slots_on_different_databases_are_refused(env: RotationEnv) -> None:
    set_standby(env, dbname=env.db.dbname + "_elsewhere")
    assert_refused(env, "different servers or databases")


def test_slot_users_made_before_markers_are_recognised_and_marked(env: RotationEnv) -> None:
    from rotator.db.mysql import marker_role

    for user in (env.user_a, env.user_b):
        if env.db.engine == "postgres":
            env.db.execute(f'COMMENT ON ROLE "{user}" IS NULL', in_db=False)
        else:  # on MariaDB only the role's admin (the rotation's admin made it) may revoke it
            admin = env.admin()
            assert admin is not None
            conn = pymysql.connect(
                host=env.db.host, port=env.db.port, user=admin["username"], password=admin["password"]
            )
            try:
                with conn.cursor() as cur:
                    cur.execute("REVOKE %s FROM %s@'%%'", (marker_role(env.db.dbname), user))
            finally:
                conn.close()
    session = _admin_session(env)
    try:
        assert not session.inspect_user(env.user_a, dbname=env.db.dbname).marked
    finally:
        session.close()
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert [s["slot"] for s in result.report["steps"] if s["step"] == "mark_user"] == ["A", "B"]
    session = _admin_session(env)
    try:
        for user in (env.user_a, env.user_b):
            assert session.inspect_user(user, dbname=env.db.dbname).marked
    finally:
        session.close()
    env.assert_consistent()


def _admin_session(env: RotationEnv):  # type: ignore[no-untyped-def]
    db = env.db
    admin = env.admin()
    assert admin is not None
    ep = Endpoint(db.host, db.port, db.dbname, TlsConfig("disable"))
    return get_engine(db.engine).admin_session(ep, admin["username"], admin["password"])


# ------------------------------------------------------------------ 3. the loser of a race never cries wolf


def _consistent_now(env: RotationEnv, *, loader: bool) -> None:
    """Both slots and the admin log in with AWSCURRENT, no pending version is left, the config is on the
    active slot (the cheap part of assert_consistent: reading every version of the secrets grows with each
    rotation)."""
    cur, admin = env.secret(), env.admin()
    assert cur is not None and admin is not None
    assert env.secret("AWSPENDING") is None and env.admin("AWSPENDING") is None
    for slot in ("A", "B"):
        assert env.db.login_works(cur[slot]["username"], cur[slot]["password"]), f"slot {slot} does not log in"
    assert env.db.login_works(admin["username"], admin["password"]), "the admin does not log in"
    env.db.admin_password = admin["password"]
    if not loader:
        assert env.config_password() == cur[cur["active_slot"]]["password"]


@pytest.mark.parametrize("mode", ["file", "loader"])
def test_two_runs_started_together_never_cry_wolf(db: DbEnv, aws: AwsEnv, tmp_path: Path, mode: str) -> None:
    """20 pairs of real `rotator rotate` processes, the second started 0.1-0.5 s after the first (so it meets
    the first before, at and after the lock, in any step): each exits 0 or 3 (never 5), and after each pair both
    slots and the admin log in with AWSCURRENT."""
    env = make_env(db, aws, tmp_path)
    extra = {"ROTATOR_TEMPLATE": "", "ROTATOR_CONFIG_PATH": ""} if mode == "loader" else {}
    assert env.rotate(**extra).exit_code == 0
    run_env = {**os.environ, **env.env(**extra)}
    command = [sys.executable, "-m", "rotator.cli", "rotate"]
    rng = random.Random(9)
    for pair in range(20):
        first = subprocess.Popen(command, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        time.sleep(rng.uniform(0.1, 0.5))
        second = subprocess.Popen(command, env=run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=ROOT)
        _, err1 = first.communicate(timeout=120)
        _, err2 = second.communicate(timeout=120)
        codes = (first.returncode, second.returncode)
        assert set(codes) <= {0, 3} and 0 in codes, (pair, codes, err1[-1500:], err2[-1500:])
        _consistent_now(env, loader=mode == "loader")


# ------------------------------------------------------------------ 4. a pending version of another world


def test_a_pending_version_naming_other_users_is_discarded_and_runs_converge(env: RotationEnv) -> None:
    cur = env.secret()
    assert cur is not None
    stale = json.loads(json.dumps(cur))
    stale["A"]["username"] = env.db.prefix + "_renamed"
    stale["A"]["password"] = strong_password()
    stale["active_slot"] = "A"
    env.sm.put_secret_value(SecretId=env.slot_arn, SecretString=json.dumps(stale), VersionStages=["AWSPENDING"])
    first = env.rotate()
    assert first.exit_code == 0, first.stderr[-2000:]
    assert first.report["steps"][0]["step"] == "discard_slot_pending"
    assert any("disagrees" in note for note in first.report["notes"])
    assert not env.db.user_exists(env.db.prefix + "_renamed")
    env.assert_consistent()
    assert env.rotate().exit_code == 0
    env.assert_consistent()


# ------------------------------------------------------------------ 5. health with what the app really holds


def test_a_config_restored_from_a_backup_with_a_stale_password_is_rerendered(env: RotationEnv) -> None:
    cur = env.secret()
    assert cur is not None and cur["active_slot"] == "B"
    a = cur["A"]
    stale = Credentials(a["username"], strong_password(), a["host"], int(a["port"]), a["dbname"])
    env.config_path.write_bytes(render_template(env.template, stale, "A", None))  # names the standby, stale
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert any("does not log in" in note for note in result.report["notes"])
    env.assert_consistent()  # the config's own password logs in, and it is the active slot's


# ------------------------------------------------------------------ 7. bad input caught before any change


def test_a_template_that_does_not_render_is_refused(env: RotationEnv) -> None:
    broken = env.tmp / "broken.php.j2"
    broken.write_text(env.template.read_text() + "{{ no_such_variable }}\n")
    assert_refused(env, "no_such_variable", ROTATOR_TEMPLATE=str(broken))


def test_config_paths_that_cannot_be_written_are_refused(env: RotationEnv) -> None:
    assert_refused(env, "template", ROTATOR_CONFIG_PATH=str(env.template))
    assert_refused(env, "/dev/zero", ROTATOR_CONFIG_PATH="/dev/zero")
    assert_refused(env, "/sys/kernel", ROTATOR_CONFIG_PATH="/sys/kernel/rotator-sqlconf.php")


def test_an_admin_that_cannot_manage_users_is_refused(env: RotationEnv) -> None:
    admin = env.db.admin_user
    if env.db.engine == "postgres":
        env.db.execute(f'ALTER ROLE "{admin}" NOCREATEROLE', in_db=False)
        undo = f'ALTER ROLE "{admin}" CREATEROLE'
    else:
        env.db.execute("REVOKE CREATE USER ON *.* FROM %s@'%%'", (admin,))
        undo = "GRANT CREATE USER ON *.* TO %s@'%%'"
    try:
        assert_refused(env, "the admin cannot manage the slot users")
    finally:
        env.db.execute(undo, () if env.db.engine == "postgres" else (admin,), in_db=False)
    assert env.rotate().exit_code == 0


def test_a_mysql_user_host_that_would_make_a_second_account_is_refused(
    mysql: DbEnv, aws: AwsEnv, tmp_path: Path
) -> None:
    env = make_env(mysql, aws, tmp_path)  # --mysql-user-host is MySQL's only
    assert env.rotate().exit_code == 0
    assert_refused(env, "--mysql-user-host", ROTATOR_MYSQL_USER_HOST="10.%")


# ------------------------------------------------------------------ 8, 10, 11: outcomes, signals, health


class App:
    """A tiny HTTP app: answers ``status`` to every GET, or 500 once the file ``breaks_when`` exists."""

    def __init__(self) -> None:
        self.status = 200
        self.breaks_when: Path | None = None
        app = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                broken = app.breaks_when is not None and app.breaks_when.exists()
                self.send_response(500 if broken else app.status)
                self.end_headers()

            def log_message(self, *args: object) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/health"


@pytest.fixture
def app() -> Iterator[App]:
    a = App()
    yield a
    a.server.shutdown()


def test_a_health_url_that_fails_on_the_live_slot_is_refused(env: RotationEnv, app: App) -> None:
    app.status = 500
    assert_refused(env, "--health-url", ROTATOR_HEALTH_URL=app.url, ROTATOR_HEALTH_ATTEMPTS="1")
    assert_refused(env, "--health-url", ROTATOR_HEALTH_URL="http://127.0.0.1:9/health", ROTATOR_HEALTH_ATTEMPTS="1")


def test_a_failed_rollback_is_reported_even_when_the_lock_cannot_be_released(env: RotationEnv, app: App) -> None:
    """The deploy command drops the admin session's connection and the app fails on every slot after the
    pre-flight check: the rollback's health check fails (exit 5); releasing the lock on the dropped
    connection fails too, and must not turn that into a plain exit 1."""
    if env.db.engine == "postgres":
        kill = (
            "import psycopg; c = psycopg.connect('host=127.0.0.1 user=postgres dbname=postgres', autocommit=True); "
            'c.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s '
            "AND pid <> pg_backend_pid()\", (__import__('os').environ['KILL_USER'],))"
        )
    else:
        kill = (
            "import os, pymysql; c = pymysql.connect(host='127.0.0.1', user='root', autocommit=True); "
            "cur = c.cursor(); "
            "cur.execute('SELECT id FROM information_schema.PROCESSLIST WHERE user = %s', (os.environ['KILL_USER'],)); "
            "[cur.execute('KILL %s', (i,)) for (i,) in cur.fetchall()]"
        )
    script = env.tmp / "kill_admin.py"
    script.write_text(kill + "\n")
    app.breaks_when = env.tmp / "broken"
    app_script = f"{sys.executable} {script}; touch {app.breaks_when}"
    os.environ["KILL_USER"] = env.db.admin_user
    try:
        result = env.rotate(
            ROTATOR_DEPLOY="command",
            ROTATOR_DEPLOY_COMMAND=app_script,
            ROTATOR_HEALTH_URL=app.url,
            ROTATOR_HEALTH_ATTEMPTS="1",
        )
    finally:
        os.environ.pop("KILL_USER", None)
    assert result.exit_code == ExitCode.NEEDS_HUMAN, (result.exit_code, result.report["error"])
    assert "rollback" in (result.report["error"] or "")


def test_sigterm_during_the_deploy_rolls_back_and_stops_the_deploy_command(env: RotationEnv) -> None:
    """ECS stops a task with SIGTERM: the run stops at a safe point, rolls the flip back, stops its deploy
    command's process group, prints the JSON report and exits 4."""
    pidfile = env.tmp / "deploy.pid"
    command = f'if [ "$ROTATOR_NEW_SLOT" = A ]; then echo $$ > {pidfile}; exec sleep 60; fi'
    before_config, before_secret = env.config_path.read_bytes(), env.secret()
    proc = subprocess.Popen(
        [sys.executable, "-m", "rotator.cli", "rotate"],
        env={**os.environ, **env.env(ROTATOR_DEPLOY="command", ROTATOR_DEPLOY_COMMAND=command)},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    deadline = time.monotonic() + 30
    while not pidfile.exists() or not pidfile.read_text().strip():
        assert time.monotonic() < deadline and proc.poll() is None, "the deploy command never started"
        time.sleep(0.05)
    sleeper = int(pidfile.read_text())
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == ExitCode.ROLLED_BACK, err[-2000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["event"] == "rotation_report" and "SIGTERM" in report["error"]
    assert [s["step"] for s in report["rollback"]] == ["restore_config", "deploy", "health_check"]
    with pytest.raises(ProcessLookupError):
        os.kill(sleeper, 0)
    assert env.config_path.read_bytes() == before_config and env.secret() == before_secret
    assert env.rotate().exit_code == 0
    env.assert_consistent()


def test_a_pending_password_the_config_format_cannot_carry_is_refused_before_any_change(
    db: DbEnv, aws: AwsEnv, tmp_path: Path
) -> None:
    """A pending version the run would finish holds a password a Docker env-file cannot carry (a newline): it is
    refused under the lock, before any password is set, not at render time in the middle of the flip."""
    env = make_env(db, aws, tmp_path)
    env.template = ROOT / "templates" / "app.docker-env.j2"
    env.config_path = tmp_path / "app.env"
    assert env.rotate().exit_code == 0  # active B, config on B
    cur = env.secret()
    assert cur is not None
    pending = json.loads(json.dumps(cur))
    pending["A"]["password"] = "line one\nline two"
    env.sm.put_secret_value(SecretId=env.slot_arn, SecretString=json.dumps(pending), VersionStages=["AWSPENDING"])
    before = env.state()
    result = env.rotate()
    assert result.exit_code == ExitCode.BAD_INPUT, (result.exit_code, result.report["error"])
    assert "slot A" in result.report["error"]
    assert env.state() == before
