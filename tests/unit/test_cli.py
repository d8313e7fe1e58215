"""CLI surface: help, bad input exit codes, iam-policy least privilege (no "*" for secrets or ECS)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from rotator.cli import main
from rotator.errors import ExitCode


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(main, list(args), env=env or {})
    return result.exit_code, result.stdout, result.stderr


def test_iam_policy_has_no_wildcard_for_secrets_or_ecs() -> None:
    code, out, _ = run(
        "iam-policy",
        "--slot-secret",
        "prod/app/slots",
        "--admin-secret",
        "arn:aws:secretsmanager:eu-west-1:123456789012:secret:prod/app/admin-AbCdEf",
        "--region",
        "eu-west-1",
        "--account-id",
        "123456789012",
        "--ecs-cluster",
        "app",
        "--ecs-service",
        "web",
    )
    assert code == 0
    policy = json.loads(out)
    actions_seen = set()
    for statement in policy["Statement"]:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        resources = statement["Resource"] if isinstance(statement["Resource"], list) else [statement["Resource"]]
        actions_seen.update(actions)
        if any(a.startswith(("secretsmanager:", "ecs:")) for a in actions):
            assert "*" not in resources and all(not r.endswith(":*") for r in resources), statement
    assert {
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
        "ecs:UpdateService",
    } <= actions_seen


@pytest.mark.parametrize(
    ("env", "fragment"),
    [
        ({}, "ROTATOR_SLOT_SECRET"),
        ({"ROTATOR_SLOT_SECRET": "s"}, "ROTATOR_ADMIN_SECRET"),
        ({"ROTATOR_SLOT_SECRET": "s", "ROTATOR_ADMIN_SECRET": "a", "ROTATOR_DEPLOY": "ecs"}, "--ecs-cluster"),
        ({"ROTATOR_SLOT_SECRET": "s", "ROTATOR_ADMIN_SECRET": "a", "ROTATOR_DEPLOY": "command"}, "--deploy-command"),
        ({"ROTATOR_SLOT_SECRET": "s", "ROTATOR_ADMIN_SECRET": "a", "ROTATOR_FIX_PERMISSIONS": "1"}, "--config-path"),
        ({"ROTATOR_SLOT_SECRET": "s", "ROTATOR_ADMIN_SECRET": "a", "ROTATOR_PASSWORD_LENGTH": "8"}, "too short"),
    ],
)
def test_bad_settings_are_one_line_and_exit_2(env: dict[str, str], fragment: str) -> None:
    code, out, err = run("rotate", env=env)
    assert code == ExitCode.BAD_INPUT
    assert fragment in err and len(err.strip().splitlines()) == 1
    assert out == ""


def test_help_lists_env_twins() -> None:
    code, out, _ = run("rotate", "--help")
    assert code == 0 and "ROTATOR_SLOT_SECRET" in out and "--dry-run" in out


BASE_ENV = {"ROTATOR_SLOT_SECRET": "prod/app/slots", "ROTATOR_ADMIN_SECRET": "prod/app/admin"}


@pytest.mark.parametrize("command", ["rotate", "status"])
@pytest.mark.parametrize(
    ("args", "flag"),
    [
        (["--health-interval", "nan"], "--health-interval"),
        (["--health-interval", "inf"], "--health-interval"),
        (["--health-interval", "-1"], "--health-interval"),
        (["--grace-seconds", "inf"], "--grace-seconds"),
        (["--grace-seconds", "nan"], "--grace-seconds"),
        (["--deploy-timeout", "nan"], "--deploy-timeout"),
        (["--deploy-timeout", "inf"], "--deploy-timeout"),
        (["--health-attempts", "0"], "--health-attempts"),
        (["--health-attempts", "\u0663"], "--health-attempts"),
        (["--health-statuses", "2xx,ok"], "--health-statuses"),
        (["--file-mode", "\u0660\u0666\u0664\u0660"], "--file-mode"),
        (["--file-owner", "1000\u00b2"], "--file-owner"),
        (["--password-length", "32\u00b2"], "--password-length"),
        (["--engine", "oracle"], "--engine"),
        (["--deploy", "kubernetes"], "--deploy"),
        (["--db-tls", "prefer"], "--db-tls"),
    ],
)
def test_bad_values_exit_2_with_one_line_naming_the_flag(command: str, args: list[str], flag: str) -> None:
    result = CliRunner().invoke(main, [command, *args], env=BASE_ENV)
    assert result.exit_code == ExitCode.BAD_INPUT, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and flag in lines[0] and "Traceback" not in result.stderr
    assert result.stdout == ""


def test_bad_values_from_the_environment_twin_too() -> None:
    code, _, err = run("rotate", "--dry-run", env={**BASE_ENV, "ROTATOR_GRACE_SECONDS": "nan"})
    assert code == ExitCode.BAD_INPUT and "--grace-seconds" in err and len(err.strip().splitlines()) == 1


def test_the_cli_default_file_mode_is_the_renderers() -> None:
    from rotator import render
    from rotator.cli import build_settings, rotate, status

    assert render.DEFAULT_MODE == 0o640
    for command in (rotate, status):
        ctx = command.make_context(command.name or "", ["--slot-secret", "s", "--admin-secret", "a"])
        params = dict(ctx.params)
        dry_run = bool(params.pop("dry_run", True))
        assert build_settings(params, dry_run=dry_run).file_mode == render.DEFAULT_MODE
    code, out, _ = run("rotate", "--help")
    assert code == 0 and "default: 0640" in out


def test_help_shows_every_setting_with_its_env_twins() -> None:
    from rotator.config import LOG_JSON, SETTINGS

    code, out, _ = run("rotate", "--help")
    assert code == 0
    flat = " ".join(out.split())
    for spec in (*SETTINGS, LOG_JSON):
        assert spec.flag in out and ", ".join(spec.envvars) in flat, spec.name
    assert "ROTATOR_REGION, AWS_REGION" in flat
    code, out, _ = run("status", "--help")
    assert code == 0 and "--dry-run" not in out and "--health-interval" in out
