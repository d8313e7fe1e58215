"""The one AWS edge, end to end: the real `rotator` command through a fault proxy in front of the moto server.

tests/aws_faults.py answers a throttle (HTTP 400 ThrottlingException) or a 503 to the first request of every
operation, instead of forwarding it, as AWS does. Before the edge, only Secrets Manager calls were retried:
one throttled ECS UpdateService rolled the whole rotation back (exit 4) and `rotator launch` could print a raw
ClientError traceback (tests/integration/test_launch.py proves it no longer does).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.aws_faults import Fault, fault_proxy
from tests.harness import AwsEnv, DbEnv
from tests.integration.rotation_env import make_env

pytestmark = pytest.mark.integration

# What one `rotate --deploy ecs` calls (the first rotation from a fresh pair of secrets).
ROTATION_OPERATIONS = {
    "secretsmanager.GetSecretValue",
    "secretsmanager.PutSecretValue",
    "secretsmanager.UpdateSecretVersionStage",
    "ecs.DescribeServices",
    "ecs.UpdateService",
}


@pytest.mark.parametrize("fault", ["throttle", "unavailable"])
def test_rotate_deploy_ecs_survives_a_fault_on_the_first_call_of_every_operation(
    db: DbEnv, aws: AwsEnv, tmp_path: Path, ecs: tuple[Any, str, str], fault: Fault
) -> None:
    client, cluster, service = ecs
    env = make_env(db, aws, tmp_path)
    before = {
        d["id"] for d in client.describe_services(cluster=cluster, services=[service])["services"][0]["deployments"]
    }

    with fault_proxy(aws.endpoint_url, {"*": [fault]}) as proxy:
        result = env.rotate_subprocess(
            "--deploy",
            "ecs",
            "--ecs-cluster",
            cluster,
            "--ecs-service",
            service,
            ROTATOR_AWS_ENDPOINT_URL=proxy.url,
            AWS_ENDPOINT_URL=proxy.url,
        )

    assert result.exit_code == 0, result.stderr[-3000:]
    assert ROTATION_OPERATIONS <= set(proxy.faulted), proxy.faulted  # every operation met its fault
    assert all(count == 1 for count in proxy.faulted.values()), proxy.faulted
    after = client.describe_services(cluster=cluster, services=[service])["services"][0]["deployments"]
    assert {d["id"] for d in after} - before, "no new deployment was forced"
    env.assert_consistent()
    output = result.stdout + result.stderr
    assert '"aws.retry"' in output and "Traceback" not in output
    for password in env.seen_passwords:
        assert password not in output
