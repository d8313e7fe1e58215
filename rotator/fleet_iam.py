"""Least-privilege IAM policies of a fleet run on Step Functions (deploy/cloudformation/fleet.yaml).

- The rotation task of the fleet: the secrets under one name prefix (a fleet has many; listing each ARN would
  not fit a policy), the KMS key via Secrets Manager only.
- The state machine: run the one task family in the one cluster and follow it (``.sync`` needs the managed
  EventBridge rule), pass the task's two roles to ECS only, read the fleet list and write the results under
  one S3 prefix, and start/follow the Distributed Map's child executions of itself.

The template grants exactly these statements (same Sids, actions, resources, conditions);
tests/integration/test_cfn_fleet.py deploys it to moto and compares. ``rotator fleet iam-policy`` prints them.
"""

from __future__ import annotations

from rotator.iam import KMS_ACTIONS, SECRETS_ACTIONS, VERSION, Policy, Statement, _check_name, _check_scope

SYNC_RULE = "StepFunctionsGetEventsForECSTaskRule"  # the rule Step Functions manages for ecs:runTask.sync


def fleet_task_policy(
    *, region: str, account_id: str, secret_prefix: str, kms_key_arn: str | None = None, partition: str = "aws"
) -> Policy:
    _check_scope(region, account_id)
    prefix = _check_name("secret name prefix", secret_prefix)
    statements: list[Statement] = [
        {
            "Sid": "FleetSecrets",
            "Effect": "Allow",
            "Action": list(SECRETS_ACTIONS),
            "Resource": [f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{prefix}*"],
        }
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "FleetSecretsKms",
                "Effect": "Allow",
                "Action": list(KMS_ACTIONS),
                "Resource": [kms_key_arn],
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            }
        )
    return {"Version": VERSION, "Statement": statements}


def fleet_state_machine_policy(
    *,
    region: str,
    account_id: str,
    cluster_name: str,
    task_definition_family: str,
    task_role_arn: str,
    execution_role_arn: str,
    bucket: str,
    fleet_key: str,
    results_prefix: str,
    state_machine_name: str,
    partition: str = "aws",
) -> Policy:
    _check_scope(region, account_id)
    cluster = _check_name("cluster", cluster_name)
    family = _check_name("task definition family", task_definition_family)
    machine = _check_name("state machine name", state_machine_name)
    on_cluster = {"ArnEquals": {"ecs:cluster": f"arn:{partition}:ecs:{region}:{account_id}:cluster/{cluster}"}}
    statements: list[Statement] = [
        {
            "Sid": "FleetRunTask",
            "Effect": "Allow",
            "Action": ["ecs:RunTask"],
            "Resource": [f"arn:{partition}:ecs:{region}:{account_id}:task-definition/{family}:*"],
            "Condition": on_cluster,
        },
        {
            "Sid": "FleetFollowTasks",
            "Effect": "Allow",
            "Action": ["ecs:DescribeTasks", "ecs:StopTask"],
            "Resource": [f"arn:{partition}:ecs:{region}:{account_id}:task/{cluster}/*"],
            "Condition": on_cluster,
        },
        {
            "Sid": "FleetPassRoles",
            "Effect": "Allow",
            "Action": ["iam:PassRole"],
            "Resource": sorted({task_role_arn, execution_role_arn}),
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
        {
            "Sid": "FleetSyncRule",
            "Effect": "Allow",
            "Action": ["events:DescribeRule", "events:PutRule", "events:PutTargets"],
            "Resource": [f"arn:{partition}:events:{region}:{account_id}:rule/{SYNC_RULE}"],
        },
        {
            "Sid": "FleetReadList",
            "Effect": "Allow",
            "Action": ["s3:GetObject"],
            "Resource": [f"arn:{partition}:s3:::{bucket}/{fleet_key}"],
        },
        {
            "Sid": "FleetWriteResults",
            "Effect": "Allow",
            "Action": ["s3:AbortMultipartUpload", "s3:GetObject", "s3:ListMultipartUploadParts", "s3:PutObject"],
            "Resource": [f"arn:{partition}:s3:::{bucket}/{results_prefix}*"],
        },
        {
            "Sid": "FleetChildExecutions",
            "Effect": "Allow",
            "Action": ["states:StartExecution"],
            "Resource": [f"arn:{partition}:states:{region}:{account_id}:stateMachine:{machine}"],
        },
        {
            "Sid": "FleetFollowChildExecutions",
            "Effect": "Allow",
            "Action": ["states:DescribeExecution", "states:StopExecution"],
            "Resource": [f"arn:{partition}:states:{region}:{account_id}:execution:{machine}:*"],
        },
    ]
    return {"Version": VERSION, "Statement": statements}
