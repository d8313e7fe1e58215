"""Least-privilege IAM policies: one for the rotation task, one for whoever runs ``rotator launch``.

The CloudFormation template in ``deploy/cloudformation/rotation.yaml`` grants the same statements (same Sids,
actions, resources and conditions); ``tests/integration/test_cfn_templates.py`` deploys it and compares.
No statement about secrets or ECS uses a ``*`` resource.
"""

from __future__ import annotations

import json
import re
from typing import Any

from rotator.errors import BadInput

Statement = dict[str, Any]
Policy = dict[str, Any]

VERSION = "2012-10-17"

# The rotation task: read both secrets with their staging labels, write AWSPENDING versions, move labels.
SECRETS_ACTIONS = (
    "secretsmanager:DescribeSecret",
    "secretsmanager:GetSecretValue",
    "secretsmanager:ListSecretVersionIds",
    "secretsmanager:PutSecretValue",
    "secretsmanager:UpdateSecretVersionStage",
)
# --store ssm: read and write the two parameters (latest version = current) and their ".pending" siblings;
# read the siblings' history (value and token in one call) and delete them on promotion or discard.
SSM_ACTIONS = ("ssm:GetParameter", "ssm:PutParameter")
SSM_PENDING_ACTIONS = ("ssm:GetParameterHistory", "ssm:DeleteParameter")
# SecureStrings under a customer managed key: encrypt on write, decrypt on read, via SSM only.
SSM_KMS_ACTIONS = ("kms:Decrypt", "kms:Encrypt", "kms:GenerateDataKey")
SSM_PENDING_SUFFIX = ".pending"  # rotator.store.ssm.PENDING_SUFFIX (not imported: iam needs no boto3)
# Force a new deployment of the app's service and watch its rollout (circuit breaker included).
ECS_SERVICE_ACTIONS = ("ecs:DescribeServices", "ecs:UpdateService")
# Secrets encrypted with a customer managed key: read (Decrypt) and write (GenerateDataKey), via Secrets Manager only.
KMS_ACTIONS = ("kms:Decrypt", "kms:GenerateDataKey")
# Publish the run's summary (--notify-topic). sts:GetCallerIdentity (the audit event's caller) needs no permission.
NOTIFY_ACTIONS = ("sns:Publish",)
# Write the app's config file on EFS (only when the task mounts EFS with IAM authorization).
EFS_ACTIONS = ("elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite")

# Whoever runs `rotator launch` (a person, GitHub Actions, EventBridge Scheduler, an SSM Automation).
RUN_TASK_ACTIONS = ("ecs:RunTask",)
DESCRIBE_TASKS_ACTIONS = ("ecs:DescribeTasks",)
PASS_ROLE_ACTIONS = ("iam:PassRole",)
LOG_READ_ACTIONS = ("logs:GetLogEvents",)
STACK_READ_ACTIONS = ("cloudformation:DescribeStacks",)

_REGION = re.compile(r"^[a-z]{2}(-[a-z]+)+-\d+$")
_ACCOUNT = re.compile(r"^\d{12}$")
_TOPIC_ARN = re.compile(r"^arn:aws[a-z-]*:sns:[a-z0-9-]+:\d{12}:[A-Za-z0-9_.-]{1,256}$")
_NAME = re.compile(r"^[A-Za-z0-9/_+=.@-]+$")


def _check_scope(region: str, account_id: str) -> None:
    if not _REGION.match(region):
        raise BadInput(f"region {region!r} is not an AWS region name such as eu-west-1: check --region")
    if not _ACCOUNT.match(account_id):
        raise BadInput(f"account id {account_id!r} is not 12 digits: check --account-id")


def _check_name(what: str, value: str) -> str:
    if not value or not _NAME.match(value):
        raise BadInput(f"{what} {value!r} is not a valid name")
    return value


def secret_arn(secret: str, *, region: str, account_id: str, partition: str = "aws") -> str:
    """The ARN to grant for a secret given by ARN or by name.

    Secrets Manager appends ``-`` and six random characters to a secret's name in its ARN, so a name
    becomes ``...:secret:NAME-??????`` (exactly six characters: no other secret whose name starts the same).
    """
    if secret.startswith("arn:"):
        parts = secret.split(":", 6)
        if len(parts) != 7 or parts[2] != "secretsmanager" or parts[5] != "secret" or not parts[6]:
            raise BadInput(f"{secret!r} is not a Secrets Manager secret ARN (arn:aws:secretsmanager:...:secret:NAME)")
        return secret
    return f"arn:{partition}:secretsmanager:{region}:{account_id}:secret:{_check_name('secret name', secret)}-??????"


def parameter_arn(parameter: str, *, region: str, account_id: str, partition: str = "aws") -> str:
    """The ARN to grant for an SSM parameter given by ARN or by name (``/rcm/prod/x`` or ``x``)."""
    if parameter.startswith("arn:"):
        parts = parameter.split(":", 5)
        if len(parts) != 6 or parts[2] != "ssm" or not parts[5].startswith("parameter/"):
            raise BadInput(f"{parameter!r} is not an SSM parameter ARN (arn:aws:ssm:...:parameter/NAME)")
        return parameter
    name = _check_name("parameter name", parameter)
    return f"arn:{partition}:ssm:{region}:{account_id}:parameter/{name.lstrip('/')}"


def _cluster_name(cluster: str) -> str:
    """A cluster given by name or ARN, as a name."""
    if cluster.startswith("arn:"):
        name = cluster.rpartition("cluster/")[2]
        if not name:
            raise BadInput(f"{cluster!r} is not an ECS cluster ARN (arn:aws:ecs:...:cluster/NAME)")
        return _check_name("cluster", name)
    return _check_name("cluster", cluster)


def ecs_service_arn(cluster: str, service: str, *, region: str, account_id: str, partition: str = "aws") -> str:
    name = _check_name("service", service)
    return f"arn:{partition}:ecs:{region}:{account_id}:service/{_cluster_name(cluster)}/{name}"


def ecs_cluster_arn(cluster: str, *, region: str, account_id: str, partition: str = "aws") -> str:
    return f"arn:{partition}:ecs:{region}:{account_id}:cluster/{_cluster_name(cluster)}"


def build_policy(
    *,
    region: str,
    account_id: str,
    slot_secret_arn: str,
    admin_secret_arn: str,
    cluster_name: str | None,
    service_name: str | None,
    kms_key_arn: str | None = None,
    log_group_arn: str | None = None,
    efs_file_system_arn: str | None = None,
    efs_access_point_arn: str | None = None,
    live_secret_arn: str | None = None,
    notify_topic_arn: str | None = None,
    partition: str = "aws",
    store: str = "secretsmanager",
) -> Policy:
    """The rotation task's role policy: exactly the two secrets (three with ``--live-secret``: the rotator writes
    it, pending then current, like the slot secret), the one service, the key only via Secrets Manager.

    ``slot_secret_arn``/``admin_secret_arn`` may be names (granted as ``NAME-??????``). Pass no cluster and
    service for ``--deploy command|none``. ``store="ssm"`` grants the two SSM parameters (and their
    ``.pending`` siblings) instead of secrets, and the KMS key via SSM. ``log_group_arn`` is accepted for
    symmetry with the task's configuration but grants nothing: the awslogs driver writes with the *execution*
    role, not this one.
    """
    _check_scope(region, account_id)
    del log_group_arn  # the execution role writes the task's logs; the task role never does
    scope = {"region": region, "account_id": account_id, "partition": partition}
    given = (slot_secret_arn, admin_secret_arn, *((live_secret_arn,) if live_secret_arn else ()))
    statements: list[Statement]
    if store == "ssm":
        statements = _ssm_statements(given, kms_key_arn, scope)
        kms_key_arn = None  # granted via SSM above
    elif store == "secretsmanager":
        secrets = sorted({secret_arn(secret, **scope) for secret in given})
        statements = [
            {"Sid": "RotationSecrets", "Effect": "Allow", "Action": list(SECRETS_ACTIONS), "Resource": secrets},
        ]
    else:
        raise BadInput(f"no IAM policy for --store {store}: use secretsmanager or ssm (rotator vault-policy for Vault)")
    if (cluster_name is None) != (service_name is None):
        raise BadInput("pass both --ecs-cluster and --ecs-service for --deploy ecs, or neither")
    if cluster_name is not None and service_name is not None:
        statements.append(
            {
                "Sid": "RotationEcsService",
                "Effect": "Allow",
                "Action": list(ECS_SERVICE_ACTIONS),
                "Resource": [ecs_service_arn(cluster_name, service_name, **scope)],
            }
        )
    if kms_key_arn:
        statements.append(
            {
                "Sid": "RotationSecretsKms",
                "Effect": "Allow",
                "Action": list(KMS_ACTIONS),
                "Resource": [kms_key_arn],
                "Condition": {"StringEquals": {"kms:ViaService": f"secretsmanager.{region}.amazonaws.com"}},
            }
        )
    if efs_file_system_arn:
        efs: Statement = {
            "Sid": "RotationEfs",
            "Effect": "Allow",
            "Action": list(EFS_ACTIONS),
            "Resource": [efs_file_system_arn],
        }
        if efs_access_point_arn:
            efs["Condition"] = {"StringEquals": {"elasticfilesystem:AccessPointArn": efs_access_point_arn}}
        statements.append(efs)
    if notify_topic_arn:
        if not _TOPIC_ARN.match(notify_topic_arn):
            raise BadInput(f"{notify_topic_arn!r} is not an SNS topic ARN (arn:aws:sns:REGION:ACCOUNT:TOPIC)")
        statements.append(
            {"Sid": "RotationNotify", "Effect": "Allow", "Action": list(NOTIFY_ACTIONS), "Resource": [notify_topic_arn]}
        )
    return {"Version": VERSION, "Statement": statements}


def _ssm_statements(given: tuple[str, ...], kms_key_arn: str | None, scope: dict[str, str]) -> list[Statement]:
    parameters = sorted({parameter_arn(name, **scope) for name in given})
    pending = [arn + SSM_PENDING_SUFFIX for arn in parameters]
    statements: list[Statement] = [
        {
            "Sid": "RotationParameters",
            "Effect": "Allow",
            "Action": list(SSM_ACTIONS),
            "Resource": sorted(parameters + pending),
        },
        {
            "Sid": "RotationPendingParameters",
            "Effect": "Allow",
            "Action": list(SSM_PENDING_ACTIONS),
            "Resource": pending,
        },
    ]
    if kms_key_arn:
        statements.append(
            {
                "Sid": "RotationParametersKms",
                "Effect": "Allow",
                "Action": list(SSM_KMS_ACTIONS),
                "Resource": [kms_key_arn],
                "Condition": {"StringEquals": {"kms:ViaService": f"ssm.{scope['region']}.amazonaws.com"}},
            }
        )
    return statements


def launch_policy(
    *,
    region: str,
    account_id: str,
    cluster_name: str,
    task_definition_family: str,
    task_role_arn: str,
    execution_role_arn: str,
    log_group_name: str,
    stack_name: str | None = None,
    partition: str = "aws",
) -> Policy:
    """The policy of whoever runs ``rotator launch``: start the one task family in the one cluster, follow it.

    ``ecs:RunTask`` is allowed on every revision of the family (``family:*``) in the one cluster only;
    ``iam:PassRole`` on the task's two roles, to ECS tasks only; ``logs:GetLogEvents`` on the task's log
    group; ``cloudformation:DescribeStacks`` on the one stack whose outputs fill in the settings.
    """
    _check_scope(region, account_id)
    scope = {"region": region, "account_id": account_id, "partition": partition}
    cluster = _cluster_name(cluster_name)
    cluster_arn = ecs_cluster_arn(cluster, **scope)
    family = _check_name("task definition family", task_definition_family)
    log_group = _check_name("log group", log_group_name)
    on_cluster = {"ArnEquals": {"ecs:cluster": cluster_arn}}
    statements: list[Statement] = [
        {
            "Sid": "LaunchRunTask",
            "Effect": "Allow",
            "Action": list(RUN_TASK_ACTIONS),
            "Resource": [f"arn:{partition}:ecs:{region}:{account_id}:task-definition/{family}:*"],
            "Condition": on_cluster,
        },
        {
            "Sid": "LaunchDescribeTasks",
            "Effect": "Allow",
            "Action": list(DESCRIBE_TASKS_ACTIONS),
            "Resource": [f"arn:{partition}:ecs:{region}:{account_id}:task/{cluster}/*"],
            "Condition": on_cluster,
        },
        {
            "Sid": "LaunchPassRoles",
            "Effect": "Allow",
            "Action": list(PASS_ROLE_ACTIONS),
            "Resource": sorted({task_role_arn, execution_role_arn}),
            "Condition": {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}},
        },
        {
            "Sid": "LaunchReadLogs",
            "Effect": "Allow",
            "Action": list(LOG_READ_ACTIONS),
            "Resource": [f"arn:{partition}:logs:{region}:{account_id}:log-group:{log_group}:log-stream:*"],
        },
    ]
    if stack_name:
        statements.append(
            {
                "Sid": "LaunchReadStack",
                "Effect": "Allow",
                "Action": list(STACK_READ_ACTIONS),
                "Resource": [
                    f"arn:{partition}:cloudformation:{region}:{account_id}:stack/{_check_name('stack', stack_name)}/*"
                ],
            }
        )
    return {"Version": VERSION, "Statement": statements}


def to_json(policy: Policy) -> str:
    """The policy as the JSON the IAM console and ``aws iam put-role-policy`` take."""
    return json.dumps(policy, indent=2, sort_keys=False) + "\n"
