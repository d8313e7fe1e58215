"""`rotate --deploy ecs`: UpdateService/DescribeServices go to the moto server. moto never moves a
deployment's rolloutState, so the circuit-breaker case replays states through the small ScriptedEcs
wrapper from test_deploy_health (real moto calls underneath, scripted deployments in the answer)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rotator.config import Settings
from rotator.db.base import TlsMode
from rotator.deploy.ecs import EcsDeployer
from rotator.errors import ExitCode
from rotator.wiring import build_rotation
from tests.harness import AwsEnv, DbEnv
from tests.integration.rotation_env import RotationEnv, make_env
from tests.integration.test_deploy_health import ScriptedEcs, _dep

pytestmark = pytest.mark.integration


def settings_for(env: RotationEnv, cluster: str, service: str) -> Settings:
    tls: TlsMode = "disable"
    return Settings(
        slot_secret=env.slot_arn,
        admin_secret=env.admin_arn,
        aws_endpoint_url=env.aws.endpoint_url,
        region=env.aws.region,
        template=env.template,
        config_path=env.config_path,
        deploy="ecs",
        ecs_cluster=cluster,
        ecs_service=service,
        db_tls=tls,
    )


def test_rotate_with_ecs_deploy_on_moto(db: DbEnv, aws: AwsEnv, tmp_path: Path, ecs: tuple[Any, str, str]) -> None:
    client, cluster, service = ecs
    env = make_env(db, aws, tmp_path)
    before = {
        d["id"] for d in client.describe_services(cluster=cluster, services=[service])["services"][0]["deployments"]
    }
    result = env.rotate("--deploy", "ecs", "--ecs-cluster", cluster, "--ecs-service", service)
    assert result.exit_code == 0, result.stderr[-2000:]
    after = client.describe_services(cluster=cluster, services=[service])["services"][0]["deployments"]
    assert {d["id"] for d in after} - before, "no new deployment was forced"
    env.assert_consistent()


def test_circuit_breaker_rollback_rolls_the_rotation_back(
    db: DbEnv, aws: AwsEnv, tmp_path: Path, ecs: tuple[Any, str, str]
) -> None:
    client, cluster, service = ecs
    env = make_env(db, aws, tmp_path)
    assert env.rotate().exit_code == 0  # config rendered, active B
    config, secret, hashes = env.config_path.read_bytes(), env.secret(), db.password_hashes()
    script = [
        lambda ours: [_dep("ecs-svc/old", "PRIMARY", "COMPLETED")],  # observe()
        lambda ours: [_dep(ours, "PRIMARY", "IN_PROGRESS"), _dep("ecs-svc/old", "ACTIVE", "COMPLETED")],
        lambda ours: [
            _dep("ecs-svc/rollback", "PRIMARY", "IN_PROGRESS"),
            _dep(ours, "ACTIVE", "FAILED", "tasks failed"),
        ],
        lambda ours: [_dep(ours, "PRIMARY", "COMPLETED", running=2)],  # our rollback deployment
    ]
    deployer = EcsDeployer(ScriptedEcs(client, script), cluster, service, timeout_s=30, poll_s=0.01)  # type: ignore[arg-type]
    rotation, _ = build_rotation(settings_for(env, cluster, service), deployer=deployer)
    report = rotation.run()
    assert report.exit_code == ExitCode.ROLLED_BACK, report.error
    assert "circuit breaker" in (report.error or "")
    assert env.config_path.read_bytes() == config
    assert env.secret() == secret and db.password_hashes() == hashes
    env.assert_consistent()
