"""An RDS-managed master secret as the admin secret: RDS rotates it (weekly by default) and it cannot be written.
The rotator reads it every run, never writes it, never changes the admin user's password, and says so.

Real: PostgreSQL/MariaDB, the rotator command, moto's Secrets Manager, whose DescribeSecret answers
OwningService from the aws:secretsmanager:owningService tag (the tag RDS puts on the secrets it manages; moto's
own RDS ManageMasterUserPassword creates its secrets that way). Not real: the test sets that tag itself (AWS
refuses user tags with the aws: prefix), and moto would accept a write to such a secret where AWS refuses it;
so "never written" is proven by the secret's versions and labels, not by a refusal."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.harness import AwsEnv, DbEnv
from tests.integration.rotation_env import RotationEnv, make_env
from tests.integration.test_rotate import assert_no_secret_in

pytestmark = pytest.mark.integration

ADMIN_STEPS = {"write_admin_pending", "set_admin_password", "verify_admin", "promote_admin_pending"}
ADMIN_LABEL_STEPS = ADMIN_STEPS | {"discard_admin_pending"}


def rds_managed_admin(env: RotationEnv, password: str) -> str:
    """The admin secret as RDS makes it: username and password only, owned by RDS."""
    sm = env.sm
    arn: str = sm.create_secret(
        Name=f"{env.aws.prefix}/rds!db-{env.db.prefix}",
        SecretString=json.dumps({"username": env.db.admin_user, "password": password}),
        Tags=[{"Key": "aws:secretsmanager:owningService", "Value": "rds"}],
    )["ARN"]
    env.aws.secret_ids.append(arn)
    return arn


def admin_hash(db: DbEnv) -> str:
    return db.password_hashes()[db.admin_user if db.engine == "postgres" else f"{db.admin_user}@%"]


def test_an_rds_managed_admin_secret_is_read_never_written(db: DbEnv, aws: AwsEnv, tmp_path: Path) -> None:
    env = make_env(db, aws, tmp_path)
    env.admin_arn = rds_managed_admin(env, db.admin_password)
    before = (env.stages(env.admin_arn), admin_hash(db))
    results = []
    for expected_active in ("B", "A"):
        result = env.rotate()
        results.append(result)
        assert result.exit_code == 0, result.stderr[-2000:]
        report = result.report
        assert report["observed"]["admin_secret_owner"] == "rds"
        assert any(note.startswith("admin rotation skipped: managed by RDS") for note in report["notes"])
        assert not {s["step"] for s in report["steps"]} & ADMIN_LABEL_STEPS
        assert env.secret() is not None and env.secret()["active_slot"] == expected_active  # type: ignore[index]
    assert (env.stages(env.admin_arn), admin_hash(db)) == before
    env.assert_consistent()
    assert_no_secret_in(env, *results)


def test_rds_mid_rotation_the_pending_password_is_used_and_no_label_moves(
    db: DbEnv, aws: AwsEnv, tmp_path: Path
) -> None:
    """RDS rotating its secret: AWSPENDING holds the password that logs in, AWSCURRENT one that no longer does.
    The run logs in with the pending one and leaves both labels where RDS put them."""
    env = make_env(db, aws, tmp_path)
    env.admin_arn = rds_managed_admin(env, "not-the-password-any-more")
    env.sm.put_secret_value(
        SecretId=env.admin_arn,
        SecretString=json.dumps({"username": db.admin_user, "password": db.admin_password}),
        VersionStages=["AWSPENDING"],
    )
    before = (env.stages(env.admin_arn), admin_hash(db))
    result = env.rotate()
    assert result.exit_code == 0, result.stderr[-2000:]
    assert result.report["observed"]["admin_login"] == "pending"
    assert not {s["step"] for s in result.report["steps"]} & ADMIN_LABEL_STEPS
    assert (env.stages(env.admin_arn), admin_hash(db)) == before
    cur = env.secret()
    assert cur is not None and cur["active_slot"] == "B"
    for slot in ("A", "B"):
        assert db.login_works(cur[slot]["username"], cur[slot]["password"])
