"""`rotator rotate` end to end on real PostgreSQL and MariaDB, on every secret store (Secrets Manager and SSM on
the moto server, Vault KV v2 on a real OpenBao server, the file store): the ``store_driver`` fixture."""

from __future__ import annotations

import http.server
import json
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from rotator.db import get_engine
from rotator.db.base import Endpoint, TlsConfig
from rotator.errors import ExitCode
from tests.harness import AwsEnv, DbEnv, strong_password
from tests.integration.rotation_env import Result, RotationEnv, make_env
from tests.integration.store_drivers import StoreDriver

pytestmark = pytest.mark.integration


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path, store_driver: StoreDriver) -> RotationEnv:
    return make_env(db, aws, tmp_path, store=store_driver)


def assert_no_secret_in(env: RotationEnv, *results: Result) -> None:
    env.remember()
    for result in results:
        for password in env.seen_passwords:
            assert password not in result.stdout and password not in result.stderr, "a password leaked"


def snapshot(env: RotationEnv) -> tuple[object, ...]:
    return env.state()


def test_ten_rotations_alternate(env: RotationEnv) -> None:
    results = []
    for i in range(10):
        result = env.rotate()
        results.append(result)
        assert result.exit_code == 0, result.stderr[-2000:]
        expected = "B" if i % 2 == 0 else "A"
        assert env.secret()["active_slot"] == expected  # type: ignore[index]
        report = result.report
        assert report["slots_after"]["active"] == expected
        assert report["outcome"] == "ok"
        assert all(s["outcome"] == "ok" for s in report["steps"])
        env.assert_consistent()
    assert_no_secret_in(env, *results)


def test_report_counts_aws_calls_and_times_steps(env: RotationEnv) -> None:
    report = env.rotate().report
    assert report["store_operations"] > 0
    if env.store.kind in ("secretsmanager", "ssm"):
        # With --deploy none every AWS call is an operation of the store: counted once each.
        assert report["aws_api_calls"] == report["store_operations"]
    else:
        assert report["aws_api_calls"] == 0
    assert report["slots_before"] == {"active": "A", "config": None}
    assert report["slots_after"] == {"active": "B", "config": "B"}
    assert all(isinstance(s["duration_ms"], float) for s in report["steps"])


def test_dry_run_changes_nothing(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    env.db.set_password_directly(env.user_a, strong_password())  # drift, so the plan has healing in it
    before = snapshot(env)
    result = env.rotate("--dry-run")
    assert result.exit_code == 0, result.stderr
    assert snapshot(env) == before
    steps = result.report["steps"]
    assert steps and all(s["outcome"] == "planned" and s["reason"] for s in steps)
    assert any(s["step"] == "set_password" and "drifted" in s["reason"] for s in steps)
    # The steps that would undo a failed flip are part of the plan, and shown.
    rollback = result.report["rollback"]
    assert [(s["step"], s["slot"], s["outcome"]) for s in rollback] == [
        ("restore_config", None, "planned"),
        ("deploy", "B", "planned"),
        ("health_check", "B", "planned"),
    ]
    assert sum('"event": "plan_rollback"' in line for line in result.stderr.splitlines()) == 3


def test_second_run_is_locked_out(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    db = env.db
    cur = env.secret()
    assert cur is not None
    active = cur[cur["active_slot"]]
    session = get_engine(db.engine).admin_session(
        Endpoint(db.host, db.port, db.dbname, TlsConfig("disable")),
        db.admin_user,
        env.admin()["password"],  # type: ignore[index]
    )
    try:
        assert session.try_lock(f"rotator:{active['dbname']}")
        before = snapshot(env)
        result = env.rotate()
        assert result.exit_code == ExitCode.LOCKED
        assert "lock" in result.report["error"]
        assert snapshot(env) == before
        # However the host is spelled, one database is one lock (127.0.0.1 and localhost: one server).
        respelled = env.secret()
        assert respelled is not None and respelled["A"]["host"] == "127.0.0.1"
        respelled["A"]["host"] = respelled["B"]["host"] = "localhost"
        env.put_current(respelled)
        before = snapshot(env)
        assert env.rotate().exit_code == ExitCode.LOCKED
        assert snapshot(env) == before
    finally:
        session.close()
    assert env.rotate_after_lock_holder_died().exit_code == 0


def test_bad_input_changes_nothing(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    before = snapshot(env)
    missing = env.rotate(ROTATOR_SLOT_SECRET="no-such-secret")
    assert missing.exit_code == ExitCode.BAD_INPUT
    assert "no-such-secret" in missing.stderr + missing.stdout
    bad_engine = env.rotate(ROTATOR_ENGINE="mysql" if env.db.engine == "postgres" else "postgres")
    assert bad_engine.exit_code == ExitCode.BAD_INPUT
    no_template = env.rotate(ROTATOR_TEMPLATE=str(env.tmp / "nope.j2"))
    assert no_template.exit_code == ExitCode.BAD_INPUT
    assert "--template" in no_template.stderr
    bad_mode = env.rotate(ROTATOR_FILE_MODE="rw-r--r--")
    assert bad_mode.exit_code == ExitCode.BAD_INPUT
    assert snapshot(env) == before


def test_broken_secret_is_bad_input_and_never_echoed(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    cur = env.secret()
    assert cur is not None
    leaked = cur["A"]["password"]
    cur["B"]["port"] = "not-a-port"
    env.put_current(cur)
    hashes = env.db.password_hashes()
    config = env.config_path.read_bytes()
    result = env.rotate()
    assert result.exit_code == ExitCode.BAD_INPUT
    assert "B.port" in result.report["error"]
    assert leaked not in result.stdout + result.stderr
    assert env.db.password_hashes() == hashes and env.config_path.read_bytes() == config


@pytest.fixture
def app_broken_on_slot_a(env: RotationEnv) -> Iterator[str]:
    """A local HTTP 'app' that reads the deployed config per request and answers 500 while it points at
    slot A's user (as if slot A lacked a grant the app needs), 200 otherwise."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(500 if env.config_user() == env.user_a else 200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/health"
    server.shutdown()


def test_failing_http_health_rolls_back(env: RotationEnv, app_broken_on_slot_a: str) -> None:
    assert env.rotate(ROTATOR_HEALTH_URL=app_broken_on_slot_a).exit_code == 0  # now on B, config rendered
    config = env.config_path.read_bytes()
    cur = env.secret()
    hashes = env.db.password_hashes()
    result = env.rotate(ROTATOR_HEALTH_URL=app_broken_on_slot_a)
    assert result.exit_code == ExitCode.ROLLED_BACK, result.stderr[-2000:]
    assert env.config_path.read_bytes() == config
    assert env.secret() == cur
    assert env.db.password_hashes() == hashes
    assert env.db.login_works(cur["B"]["username"], cur["B"]["password"])  # type: ignore[index]
    assert result.report["slots_after"] == {"active": "B", "config": "B"}
    assert any(s["step"] == "health_check" and s["outcome"] == "failed" for s in result.report["steps"])
    assert env.rotate().exit_code == 0  # the app is fixed (no health URL): the next run flips
    env.assert_consistent()


# ------------------------------------------------------------------ drift: every plan-table world, made real


def test_first_run_bootstraps_both_users(db: DbEnv, aws: AwsEnv, tmp_path: Path, store_driver: StoreDriver) -> None:
    env = make_env(db, aws, tmp_path, create_users=False, store=store_driver)
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert db.user_exists(env.user_a) and db.user_exists(env.user_b)
    env.assert_consistent()
    assert env.rotate().exit_code == 0
    env.assert_consistent()


def test_first_run_config_on_admin_user(env: RotationEnv) -> None:
    """The app's config still uses the admin user: it is moved onto a slot."""
    from rotator.render import render as render_template
    from rotator.secrets import Credentials

    admin = env.admin()
    assert admin is not None
    creds = Credentials(admin["username"], admin["password"], env.db.host, env.db.port, env.db.dbname)
    env.config_path.write_bytes(render_template(env.template, creds, "A", None))
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    env.assert_consistent()


def test_standby_user_missing_is_created(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0  # active B, standby A
    env.db.drop_user(env.user_a)
    assert env.rotate().exit_code == 0
    env.assert_consistent()


def test_standby_password_drift_is_set_back(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    env.db.set_password_directly(env.user_a, strong_password())
    result = env.rotate()
    assert result.exit_code == 0
    assert any("drifted" in s["reason"] for s in result.report["steps"])
    env.assert_consistent()


def test_live_drift_adopts_config_password(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0  # live B
    cur = env.secret()
    assert cur is not None
    live_pw = cur["B"]["password"]
    cur["B"]["password"] = strong_password()  # the secret drifted; the DB and the config still use live_pw
    env.put_current(cur)
    result = env.rotate("--sync-db-users")
    assert result.exit_code == 0
    assert env.secret()["B"]["password"] == live_pw  # type: ignore[index]
    assert env.db.login_works(env.user_b, live_pw)
    assert env.rotate().exit_code == 0
    env.assert_consistent()


def test_config_already_on_standby_persists_the_flip(env: RotationEnv) -> None:
    from rotator.render import render as render_template
    from rotator.secrets import SlotSecret

    assert env.rotate().exit_code == 0  # active B
    s = SlotSecret.parse(json.dumps(env.secret()))
    env.config_path.write_bytes(render_template(env.template, s.slot("A"), "A", None))  # crashed flip to A
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert env.secret()["active_slot"] == "A"  # type: ignore[index]
    env.assert_consistent()


def test_leftover_pending_slot_version_is_discarded(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0  # active B
    cur = env.secret()
    assert cur is not None
    bogus = dict(cur, active_slot="A")
    bogus["A"] = dict(cur["A"], password=strong_password())
    env.put_pending(bogus)
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert result.report["steps"][0]["step"] == "discard_slot_pending"
    env.assert_consistent()


def test_admin_drift_with_working_pending_is_promoted(env: RotationEnv) -> None:
    admin = env.admin()
    assert admin is not None
    new = strong_password()
    env.put_pending(dict(admin, password=new), env.admin_arn)
    env.db.set_password_directly(env.db.admin_user, new)  # the crash happened after ALTER USER
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert result.report["steps"][0]["step"] == "promote_admin_pending"
    env.assert_consistent()


def test_no_admin_login_needs_a_human(env: RotationEnv) -> None:
    env.db.set_password_directly(env.db.admin_user, strong_password())
    before = (env.stages(), env.stages(env.admin_arn))
    result = env.rotate()
    assert result.exit_code == ExitCode.NEEDS_HUMAN
    assert "admin" in result.report["error"]
    assert (env.stages(), env.stages(env.admin_arn)) == before
    assert not env.config_path.exists()


# ------------------------------------------------------------------ crash safety


def _normal_step_count(env: RotationEnv) -> int:
    return len(env.rotate("--dry-run").report["steps"])


def test_sigkill_after_every_step_converges(db: DbEnv, aws: AwsEnv, tmp_path: Path, store_driver: StoreDriver) -> None:
    """For every step boundary: a real subprocess is SIGKILLed right after that step; then a normal run
    converges, no password is lost, and the deployed config logs in after the crash."""
    probe = make_env(db, aws, tmp_path / "probe", tag="probe", store=store_driver)
    assert probe.rotate().exit_code == 0
    steps = _normal_step_count(probe)
    assert steps >= 11
    for k in range(1, steps + 1):
        env = make_env(db, aws, tmp_path / f"k{k}", tag=f"k{k}", store=store_driver)
        assert env.rotate().exit_code == 0  # config rendered, active B
        crashed = env.rotate_subprocess(kill_after=k)
        assert crashed.exit_code == -9, (k, crashed.stderr[-1500:])
        user, password = env.config_user(), env.config_password()
        assert user and password and db.login_works(user, password), f"config does not log in after step {k}"
        healed = env.rotate_after_lock_holder_died()
        assert healed.exit_code == 0, (k, healed.stderr[-2000:])
        env.assert_consistent()
        assert_no_secret_in(env, crashed, healed)


def test_fix_permissions_with_sync_changes_only_the_mode(env: RotationEnv) -> None:
    assert env.rotate().exit_code == 0
    env.config_path.chmod(0o600)
    before = (env.db.password_hashes(), env.stages(), env.config_path.read_bytes())
    result = env.rotate("--sync-db-users", "--fix-permissions", "--file-mode", "0640")
    assert result.exit_code == 0, result.stderr[-2000:]
    assert [s["step"] for s in result.report["steps"]] == ["fix_permissions"]
    assert env.config_path.stat().st_mode & 0o7777 == 0o640
    assert (env.db.password_hashes(), env.stages(), env.config_path.read_bytes()) == before


def test_status_reads_only(env: RotationEnv) -> None:
    from click.testing import CliRunner

    from rotator.cli import main

    for _ in range(2):  # both slots then have a known age: status is not "overdue" (exit 6)
        assert env.rotate().exit_code == 0
    before = snapshot(env)
    result = CliRunner().invoke(main, ["status"], env=env.env())
    assert result.exit_code == 0, result.stderr
    report = json.loads(result.stdout.strip().splitlines()[-1])
    assert report["dry_run"] is True and report["slots_before"] == {"active": "A", "config": "A"}
    assert [s["outcome"] for s in report["steps"]] == ["planned"] * len(report["steps"])
    observed = report["observed"]
    assert observed["admin_login"] == "current" and observed["config_slot"] == "A"
    assert observed["slots"]["B"] == {"exists": True, "current_password_logs_in": True, "marked": True}
    assert observed["slots"]["A"]["config_password_logs_in"] is True
    assert snapshot(env) == before


@pytest.mark.parametrize("kill_after", [1, 2, 3, 4, 5, 6])
def test_sigkill_in_loader_mode_converges(
    db: DbEnv, aws: AwsEnv, tmp_path: Path, kill_after: int, store_driver: StoreDriver
) -> None:
    """--deploy none without a config file (apps on rotator.client): the flip is published first. A crash
    after any of the first steps (publish, promote, grace, health, drain, old-slot pending) still converges."""
    env = make_env(db, aws, tmp_path, store=store_driver)
    loader_mode = {"ROTATOR_TEMPLATE": "", "ROTATOR_CONFIG_PATH": ""}
    assert env.rotate(**loader_mode).exit_code == 0
    crashed = env.rotate_subprocess(kill_after=kill_after, **loader_mode)
    assert crashed.exit_code == -9, crashed.stderr[-1500:]
    cur = env.secret()
    assert cur is not None
    active = cur[cur["active_slot"]]
    assert db.login_works(active["username"], active["password"]), "the published slot does not log in"
    healed = env.rotate_after_lock_holder_died(**loader_mode)
    assert healed.exit_code == 0, healed.stderr[-2000:]
    cur = env.secret()
    assert cur is not None and env.secret("AWSPENDING") is None
    for slot in ("A", "B"):
        assert db.login_works(cur[slot]["username"], cur[slot]["password"])
    admin = env.admin()
    assert admin is not None and db.login_works(admin["username"], admin["password"])


def test_image_entrypoint_rotates_configured_by_env_only(env: RotationEnv) -> None:
    """The Dockerfile's exact ENTRYPOINT (`rotator rotate --log-json`, the installed console script) with
    settings only from ROTATOR_* variables, as an ECS task override passes them."""
    import os
    import subprocess
    import sys

    script = Path(sys.executable).with_name("rotator")
    assert script.exists(), "the console script is not installed in the venv"
    proc = subprocess.run(
        [str(script), "rotate", "--log-json"],
        env={**os.environ, **env.env(ROTATOR_LOG_JSON="")},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    log_lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(log_lines) >= 10, "the run logged (almost) nothing"
    # Every log line is a JSON event, or a CloudWatch Embedded Metric Format record (its "_aws" key).
    assert all(json.loads(line).get("event") or "_aws" in json.loads(line) for line in log_lines)
    assert json.loads(proc.stdout.strip().splitlines()[-1])["event"] == "rotation_report"
    env.assert_consistent()
    assert_no_secret_in(env, Result(proc.returncode, proc.stdout, proc.stderr))


def test_unexpected_error_during_the_flip_still_rolls_back(env: RotationEnv, monkeypatch: pytest.MonkeyPatch) -> None:
    """A deployer that crashes with a plain exception (a bug, an unmapped library error) on the flip: the
    rotation still rolls the config back and exits 'rolled back'. The deployer is a tiny stand-in: the
    point is the orchestrator's handling, not a deployment."""
    from rotator.config import Settings
    from rotator.deploy.base import DeploymentState
    from rotator.wiring import build_rotation

    assert env.rotate().exit_code == 0
    config, secret = env.config_path.read_bytes(), env.secret()

    class CrashOnce:
        name = "crash-once"
        calls = 0

        def describe(self) -> DeploymentState:
            return DeploymentState("stable", "test stand-in")

        def deploy(self, reason: str, *, slot: str | None = None) -> None:
            self.calls += 1
            if self.calls == 1:
                raise RuntimeError("boom")

    store_env = env.store.env()
    for name, value in store_env.items():  # VAULT_ADDR, VAULT_TOKEN: read by the store from the environment
        monkeypatch.setenv(name, value)
    settings = Settings(
        store=store_env.get("ROTATOR_STORE", "secretsmanager"),
        slot_secret=env.slot_arn,
        admin_secret=env.admin_arn,
        aws_endpoint_url=env.aws.endpoint_url,
        region=env.aws.region,
        template=env.template,
        config_path=env.config_path,
        db_tls="disable",
    )
    deployer = CrashOnce()
    rotation, _ = build_rotation(settings, deployer=deployer)
    report = rotation.run()
    assert report.exit_code == ExitCode.ROLLED_BACK, report.error
    assert "RuntimeError: boom" in (report.error or "")
    assert deployer.calls == 2  # the flip, then the rollback's redeploy
    assert env.config_path.read_bytes() == config and env.secret() == secret
