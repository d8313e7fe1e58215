"""`rotator check` on real PostgreSQL and MariaDB, Secrets Manager and ECS on the moto server, a real HTTP
health URL: an all-pass world, then each failure class, each proven to change nothing."""

from __future__ import annotations

import http.server
import json
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from rotator.cli import main
from tests.harness import AwsEnv, DbEnv, new_name, strong_password
from tests.integration.rotation_env import RotationEnv, make_env

pytestmark = pytest.mark.integration

ALL = (
    "slot secret",
    "admin secret",
    "name lengths",
    "database TLS",
    "admin login",
    "admin rights",
    "slot users",
    "plan",
    "template",
    "config path",
    "ECS service",
    "health URL",
    "live secret",
)


@pytest.fixture
def health() -> Iterator[str]:
    """A local app: /ok answers 200, anything else 500."""

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200 if self.path == "/ok" else 500)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@pytest.fixture
def service(aws: AwsEnv) -> tuple[Any, str, str]:
    """An ECS service with the deployment circuit breaker on (moto): (client, cluster, service)."""
    client = aws.client("ecs")
    cluster = new_name("cluster")
    client.create_cluster(clusterName=cluster)
    family = new_name("app")
    client.register_task_definition(
        family=family, containerDefinitions=[{"name": "app", "image": "openemr/openemr", "memory": 512}]
    )
    for name, breaker in (("guarded", True), ("unguarded", False)):
        client.create_service(cluster=cluster, serviceName=name, taskDefinition=family, desiredCount=0)
        # moto's CreateService drops deploymentConfiguration; its UpdateService keeps it.
        client.update_service(
            cluster=cluster,
            service=name,
            deploymentConfiguration={"deploymentCircuitBreaker": {"enable": breaker, "rollback": breaker}},
        )
    return client, cluster, "guarded"


def check(env: RotationEnv, *args: str, **extra: str) -> tuple[int, dict[str, Any], str]:
    """Run `rotator check` (JSON on stdout: the runner is no terminal); (exit code, report, stdout+stderr)."""
    result = CliRunner().invoke(main, ["check", *args], env=env.env(**extra), catch_exceptions=False)
    lines = [line for line in result.stdout.splitlines() if line.startswith('{"event": "check_report"')]
    assert lines, (result.stdout, result.stderr)
    report: dict[str, Any] = json.loads(lines[-1])
    return result.exit_code, report, result.stdout + result.stderr


def statuses(report: dict[str, Any]) -> dict[str, str]:
    return {row["check"]: row["status"] for row in report["checks"]}


def row(report: dict[str, Any], name: str) -> dict[str, str]:
    return next(r for r in report["checks"] if r["check"] == name)


def snapshot(env: RotationEnv, *extra_secrets: str) -> tuple[object, ...]:
    """Everything a run could change: password hashes, secret versions and labels (and values), config bytes
    and mode, the config directory's entries."""
    values = [env.secret(), env.admin(), env.secret("AWSPENDING"), env.admin("AWSPENDING")]
    extra = [env.stages(arn) for arn in extra_secrets]
    return (env.state(), values, extra, sorted(os.listdir(env.config_path.parent)))


def assert_no_secret(env: RotationEnv, text: str) -> None:
    env.remember()
    for password in env.seen_passwords | {env.db.admin_password}:
        assert password not in text, "a password leaked"


@pytest.fixture
def env(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> RotationEnv:
    return make_env(db, aws, tmp_path)


def test_all_pass_before_and_after_the_first_rotation(
    env: RotationEnv, health: str, service: tuple[Any, str, str]
) -> None:
    _, cluster, name = service
    flags = ("--deploy", "ecs", "--ecs-cluster", cluster, "--ecs-service", name, "--health-url", health + "/ok")
    before = snapshot(env)
    code, report, out = check(env, *flags)
    assert code == 0, [r for r in report["checks"] if r["status"] != "ok"]
    assert statuses(report) == {c: "skip" if c == "live secret" else "ok" for c in ALL}
    assert report["outcome"] == "ok" and report["failed"] == []
    assert "absent" in row(report, "config path")["detail"]
    assert "circuit breaker on" in row(report, "ECS service")["detail"]
    assert snapshot(env) == before and not env.config_path.exists(), "check changed something"
    assert_no_secret(env, out)

    assert env.rotate("--health-url", health + "/ok").exit_code == 0  # renders the config: active B
    before = snapshot(env)
    code, report, out = check(env, *flags)
    assert code == 0, [r for r in report["checks"] if r["status"] != "ok"]
    assert f"holds user {env.user_b} (slot B)" in row(report, "config path")["detail"]
    assert "flipping the app to slot A" in row(report, "plan")["detail"]
    assert snapshot(env) == before
    assert_no_secret(env, out)


def test_each_failure_class_fails_its_row_exits_2_and_changes_nothing(
    env: RotationEnv, db: DbEnv, aws: AwsEnv, tmp_path: Path, health: str, service: tuple[Any, str, str]
) -> None:
    _, cluster, _ = service
    assert env.rotate().exit_code == 0  # a deployed config, active B
    slot = env.secret()
    assert slot is not None
    admin = env.admin()
    assert admin is not None
    wrong_admin = aws.create_secret("wrongadmin", json.dumps({**admin, "password": strong_password()}))
    weak = db.user("weak")
    weak_password = strong_password()
    db.create_plain_user(weak, weak_password)
    weak_admin = aws.create_secret("weakadmin", json.dumps({**admin, "username": weak, "password": weak_password}))
    long_user = {**slot, "B": {**slot["B"], "username": "u" * 70}}
    long_names = aws.create_secret("longnames", json.dumps(long_user))
    bad_shape = aws.create_secret("badshape", json.dumps({"active_slot": "C", "A": slot["A"], "B": slot["B"]}))
    admin_as_slot = aws.create_secret(
        "adminslot", json.dumps({**slot, "A": {**slot["A"], "username": admin["username"]}})
    )
    broken = tmp_path / "broken.j2"
    broken.write_text("<?php $pass = '{{ password | php_sq }'; ?>\n")
    link = tmp_path / "link.php"
    link.symlink_to(env.config_path)
    extra = (wrong_admin, weak_admin, long_names, bad_shape, admin_as_slot)
    before = snapshot(env, *extra)

    cases: list[tuple[str, tuple[str, ...], dict[str, str], str]] = [
        ("slot secret", ("--slot-secret", env.slot_arn + "-missing"), {}, "not found"),
        ("slot secret", ("--slot-secret", bad_shape), {}, "active_slot"),
        ("admin login", ("--admin-secret", wrong_admin), {}, "refused admin"),
        ("admin rights", ("--admin-secret", weak_admin), {}, ""),
        ("database TLS", (), {"ROTATOR_DB_TLS": "require"}, "never falls back to plaintext"),
        ("name lengths", ("--slot-secret", long_names), {}, "70 "),
        ("plan", ("--slot-secret", admin_as_slot), {}, "rotate would refuse"),
        ("template", ("--template", str(broken)), {}, ""),
        ("config path", ("--config-path", str(tmp_path / "nowhere" / "x.php")), {}, "does not exist"),
        ("config path", ("--config-path", str(link)), {}, "symbolic link"),
        ("config path", ("--config-path", "/proc/sqlconf.php"), {}, "/proc"),  # a directory even root cannot write
        ("ECS service", ("--deploy", "ecs", "--ecs-cluster", cluster, "--ecs-service", "absent"), {}, "absent"),
        ("ECS service", ("--deploy", "ecs", "--ecs-cluster", cluster, "--ecs-service", "unguarded"), {}, "breaker off"),
        ("health URL", ("--health-url", health + "/broken"), {}, "status 500"),
    ]
    if db.engine == "postgres":
        cases.append(("name lengths", ("--pg-owner-role", "o" * 64), {}, "owner role"))
    for name, args, env_extra, says in cases:
        code, report, out = check(env, *args, **env_extra)
        assert code == 2, (name, args, report)
        assert report["outcome"] == "failed" and name in report["failed"], (name, args, report)
        assert says in row(report, name)["detail"], (name, args, row(report, name))
        assert snapshot(env, *extra) == before, f"check changed something ({name}, {args})"
        assert_no_secret(env, out)
        if name == "database TLS":  # fails closed: no plaintext login was tried instead
            assert statuses(report)["admin login"] == "skip"


def test_a_bad_flag_is_one_line_and_exit_2(env: RotationEnv) -> None:
    result = CliRunner().invoke(main, ["check", "--deploy", "ecs"], env=env.env(), catch_exceptions=False)
    assert result.exit_code == 2
    assert "--ecs-cluster" in result.stderr and not result.stdout


def test_table_output_names_every_check(env: RotationEnv) -> None:
    result = CliRunner().invoke(main, ["check", "--output", "table"], env=env.env(), catch_exceptions=False)
    assert result.exit_code == 0, result.stdout
    assert result.stdout.splitlines()[0].split() == ["check", "result", "detail"]
    for name in ALL:
        assert name in result.stdout
    assert "All checks passed" in result.stdout
    assert_no_secret(env, result.stdout + result.stderr)


def test_the_live_secret_must_agree_with_the_slot_secret(env: RotationEnv, aws: AwsEnv) -> None:
    live = aws.create_secret("live", "{}")
    code, report, _ = check(env, "--live-secret", live)
    assert code == 0, [r for r in report["checks"] if r["status"] != "ok"]
    assert "holds no user yet" in row(report, "live secret")["detail"]
    assert env.rotate("--live-secret", live).exit_code == 0
    code, report, out = check(env, "--live-secret", live)
    assert code == 0, [r for r in report["checks"] if r["status"] != "ok"]
    assert statuses(report) == {c: "skip" if c in ("ECS service", "health URL") else "ok" for c in ALL}
    assert f"names slot B ({env.user_b}), the same as the slot secret, logs in" in row(report, "live secret")["detail"]
    assert_no_secret(env, out)

    data = env.secret(arn=live)
    assert data is not None
    drifted = strong_password()
    env.put_current({**data, "password": drifted}, arn=live)  # drift behind the rotator's back
    before = snapshot(env, live)
    code, report, out = check(env, "--live-secret", live)
    assert code == 2 and report["failed"] == ["live secret"], report["checks"]
    assert "differ from the slot secret's" in row(report, "live secret")["detail"]
    assert snapshot(env, live) == before
    assert_no_secret(env, out)
    assert drifted not in out

    code, report, _ = check(env, "--live-secret", live + "-missing")
    assert code == 2 and "must exist before the first run" in row(report, "live secret")["detail"]
