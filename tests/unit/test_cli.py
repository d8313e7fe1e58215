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
