"""rotator.iam: least privilege, and the same statements as the CloudFormation template's roles.

The template's statements are compared here by Sid and action set (the YAML is read with cfn-lint's loader);
tests/integration/test_cfn_templates.py deploys the template into moto and compares whole statements.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from rotator import iam
from rotator.errors import BadInput

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation" / "rotation.yaml"
REGION = "eu-west-1"
ACCOUNT = "123456789012"
SLOT_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db/slots-AbCdEf"
ADMIN_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db/admin-GhIjKl"
TOPIC_ARN = f"arn:aws:sns:{REGION}:{ACCOUNT}:rotator-notify"
KEY_ARN = f"arn:aws:kms:{REGION}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"


def policy(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "region": REGION,
        "account_id": ACCOUNT,
        "slot_secret_arn": SLOT_ARN,
        "admin_secret_arn": ADMIN_ARN,
        "cluster_name": "app",
        "service_name": "web",
    }
    kwargs.update(overrides)
    return iam.build_policy(**kwargs)


def launch(**overrides: Any) -> dict[str, Any]:
    kwargs: dict[str, Any] = {
        "region": REGION,
        "account_id": ACCOUNT,
        "cluster_name": "app",
        "task_definition_family": "rotator-prod-rotator",
        "task_role_arn": f"arn:aws:iam::{ACCOUNT}:role/task",
        "execution_role_arn": f"arn:aws:iam::{ACCOUNT}:role/exec",
        "log_group_name": "/ecs/rotator-prod/rotator",
        "stack_name": "rotator-prod",
    }
    kwargs.update(overrides)
    return iam.launch_policy(**kwargs)


def by_sid(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in doc["Statement"]}


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def test_rotation_policy_is_exactly_two_secrets_and_one_service() -> None:
    doc = policy()
    assert doc["Version"] == "2012-10-17"
    statements = by_sid(doc)
    assert set(statements) == {"RotationSecrets", "RotationEcsService"}
    secrets = statements["RotationSecrets"]
    assert secrets["Action"] == [
        "secretsmanager:DescribeSecret",
        "secretsmanager:GetSecretValue",
        "secretsmanager:ListSecretVersionIds",
        "secretsmanager:PutSecretValue",
        "secretsmanager:UpdateSecretVersionStage",
    ]
    assert sorted(secrets["Resource"]) == sorted([SLOT_ARN, ADMIN_ARN])
    ecs = statements["RotationEcsService"]
    assert ecs["Action"] == ["ecs:DescribeServices", "ecs:UpdateService"]
    assert ecs["Resource"] == [f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/app/web"]


def test_the_live_secret_is_granted_only_when_given() -> None:
    """--live-secret: the rotator writes it like the slot secret (pending, then current): the same actions, on
    exactly that one more secret; without it, nothing more."""
    live = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/live-XyZ123"
    statements = by_sid(policy(live_secret_arn=live))
    assert set(statements) == {"RotationSecrets", "RotationEcsService"}
    assert sorted(statements["RotationSecrets"]["Resource"]) == sorted([SLOT_ARN, ADMIN_ARN, live])
    by_name = by_sid(policy(live_secret_arn="app/live"))["RotationSecrets"]["Resource"]
    assert f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:app/live-??????" in by_name
    assert sorted(by_sid(policy(live_secret_arn=None))["RotationSecrets"]["Resource"]) == sorted([SLOT_ARN, ADMIN_ARN])


@pytest.mark.parametrize("with_key", [False, True])
@pytest.mark.parametrize("with_ecs", [False, True])
def test_no_wildcard_resource_for_secrets_or_ecs(with_key: bool, with_ecs: bool) -> None:
    doc = policy(
        kms_key_arn=KEY_ARN if with_key else None,
        cluster_name="app" if with_ecs else None,
        service_name="web" if with_ecs else None,
        slot_secret_arn="prod/db/slots",  # a name: gets the six-character suffix wildcard, never "*"
    )
    for statement in doc["Statement"]:
        assert statement["Effect"] == "Allow"
        for resource in as_list(statement["Resource"]):
            assert resource != "*", statement
            assert not resource.endswith(":*"), statement
            assert not resource.endswith("/*"), statement
        for action in as_list(statement["Action"]):
            assert "*" not in action, statement
    for launch_statement in launch()["Statement"]:
        for resource in as_list(launch_statement["Resource"]):
            assert resource != "*", launch_statement


def test_secret_name_gets_six_character_suffix() -> None:
    doc = policy(slot_secret_arn="prod/db/slots", admin_secret_arn="prod/db/admin")
    assert sorted(by_sid(doc)["RotationSecrets"]["Resource"]) == [
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db/admin-??????",
        f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:prod/db/slots-??????",
    ]


def test_kms_only_when_given_and_only_via_secrets_manager() -> None:
    assert "RotationSecretsKms" not in by_sid(policy())
    kms = by_sid(policy(kms_key_arn=KEY_ARN))["RotationSecretsKms"]
    assert kms["Action"] == ["kms:Decrypt", "kms:GenerateDataKey"]
    assert kms["Resource"] == [KEY_ARN]
    assert kms["Condition"] == {"StringEquals": {"kms:ViaService": f"secretsmanager.{REGION}.amazonaws.com"}}


def test_no_ecs_statement_without_ecs_deploy_and_both_or_neither() -> None:
    assert set(by_sid(policy(cluster_name=None, service_name=None))) == {"RotationSecrets"}
    with pytest.raises(BadInput, match="both"):
        policy(cluster_name="app", service_name=None)


def test_cluster_arn_is_accepted_as_name() -> None:
    doc = policy(cluster_name=f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/app")
    assert by_sid(doc)["RotationEcsService"]["Resource"] == [f"arn:aws:ecs:{REGION}:{ACCOUNT}:service/app/web"]


def test_efs_statement_scoped_to_access_point() -> None:
    fs = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-1"
    ap = f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:access-point/fsap-1"
    efs = by_sid(policy(efs_file_system_arn=fs, efs_access_point_arn=ap))["RotationEfs"]
    assert efs["Resource"] == [fs]
    assert efs["Condition"] == {"StringEquals": {"elasticfilesystem:AccessPointArn": ap}}


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("region", "Europe", "region"),
        ("account_id", "12345", "12 digits"),
        ("slot_secret_arn", "arn:aws:s3:::bucket", "not a Secrets Manager secret ARN"),
        ("service_name", "web service", "service"),
    ],
)
def test_bad_input(field: str, value: str, message: str) -> None:
    with pytest.raises(BadInput, match=message):
        policy(**{field: value})


def test_launch_policy() -> None:
    statements = by_sid(launch())
    cluster_arn = f"arn:aws:ecs:{REGION}:{ACCOUNT}:cluster/app"
    run = statements["LaunchRunTask"]
    assert run["Action"] == ["ecs:RunTask"]
    assert run["Resource"] == [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task-definition/rotator-prod-rotator:*"]
    assert run["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    describe = statements["LaunchDescribeTasks"]
    assert describe["Action"] == ["ecs:DescribeTasks"]
    assert describe["Resource"] == [f"arn:aws:ecs:{REGION}:{ACCOUNT}:task/app/*"]
    assert describe["Condition"] == {"ArnEquals": {"ecs:cluster": cluster_arn}}
    passrole = statements["LaunchPassRoles"]
    assert passrole["Resource"] == [f"arn:aws:iam::{ACCOUNT}:role/exec", f"arn:aws:iam::{ACCOUNT}:role/task"]
    assert passrole["Condition"] == {"StringEquals": {"iam:PassedToService": "ecs-tasks.amazonaws.com"}}
    assert statements["LaunchReadLogs"]["Resource"] == [
        f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/ecs/rotator-prod/rotator:log-stream:*"
    ]
    assert statements["LaunchReadStack"]["Resource"] == [
        f"arn:aws:cloudformation:{REGION}:{ACCOUNT}:stack/rotator-prod/*"
    ]
    assert "LaunchReadStack" not in by_sid(launch(stack_name=None))


def test_to_json_round_trips() -> None:
    import json

    doc = policy(kms_key_arn=KEY_ARN)
    assert json.loads(iam.to_json(doc)) == doc


# ---- the same statements as the CloudFormation template -----------------------------------------------------


def template_statements(resource: str) -> dict[str, dict[str, Any]]:
    """Statements of a role or policy in the template, by Sid, with each ``Fn::If`` branch that is a statement."""
    template = cfn_yaml.load(str(TEMPLATE))
    properties = template["Resources"][resource]["Properties"]
    documents = [p["PolicyDocument"] for p in properties["Policies"]] if "Policies" in properties else []
    if "PolicyDocument" in properties:
        documents.append(properties["PolicyDocument"])
    found: dict[str, dict[str, Any]] = {}

    def visit(node: Any) -> None:
        if isinstance(node, dict) and "Fn::If" in node:
            for branch in node["Fn::If"][1:]:
                visit(branch)
        elif isinstance(node, dict) and "Sid" in node:
            found.setdefault(node["Sid"], node)

    for document in documents:
        for statement in document["Statement"]:
            visit(statement)
    return found


def action_sets(statements: dict[str, dict[str, Any]]) -> dict[str, set[str]]:
    return {sid: set(as_list(s["Action"])) for sid, s in statements.items()}


def test_task_role_grants_what_build_policy_grants() -> None:
    full = policy(
        kms_key_arn=KEY_ARN,
        efs_file_system_arn=f"arn:aws:elasticfilesystem:{REGION}:{ACCOUNT}:file-system/fs-1",
        notify_topic_arn=TOPIC_ARN,
    )
    assert action_sets(template_statements("TaskRole")) == action_sets(by_sid(full))


def test_notify_topic_is_granted_publish_on_that_topic_only() -> None:
    assert "RotationNotify" not in by_sid(policy())
    notify = by_sid(policy(notify_topic_arn=TOPIC_ARN))["RotationNotify"]
    assert notify == {"Sid": "RotationNotify", "Effect": "Allow", "Action": ["sns:Publish"], "Resource": [TOPIC_ARN]}
    with pytest.raises(BadInput, match="SNS topic ARN"):
        policy(notify_topic_arn="arn:aws:sqs:eu-west-1:123456789012:q")


def test_launch_roles_grant_what_launch_policy_grants() -> None:
    expected = action_sets(by_sid(launch()))
    assert action_sets(template_statements("GitHubRole")) == expected
    # The scheduler and the maintenance window start and follow the same task with the same statements.
    scheduler = action_sets(template_statements("SchedulerRole"))
    assert scheduler["LaunchRunTask"] == expected["LaunchRunTask"]
    assert scheduler["LaunchPassRoles"] == expected["LaunchPassRoles"]
    window = action_sets(template_statements("MaintenanceWindowPolicy"))
    for sid in ("LaunchRunTask", "LaunchDescribeTasks", "LaunchPassRoles"):
        assert window[sid] == expected[sid]


def test_template_never_grants_wildcard_secrets_or_ecs() -> None:
    template = cfn_yaml.load(str(TEMPLATE))
    for name, resource in template["Resources"].items():
        if resource["Type"] not in ("AWS::IAM::Role", "AWS::IAM::Policy"):
            continue
        statements = template_statements(name)
        for sid, statement in statements.items():
            actions = as_list(statement["Action"])
            if any(a.startswith(("secretsmanager:", "ecs:")) for a in actions):
                assert statement["Resource"] != "*", (name, sid)
                assert "*" not in as_list(statement["Resource"]), (name, sid)
