"""deploy/cloudformation/rotation.yaml, deployed into moto's CloudFormation where moto can, read otherwise.

Deployed for real (moto server): the log group, the task definition, the task and execution roles, the GitHub
OIDC role (with an existing provider ARN; moto has no ``AWS::IAM::OIDCProvider``), and the task-failed
EventBridge rule. The roles' inline policies are read back from moto's IAM and compared statement for
statement with ``rotator.iam.build_policy`` / ``launch_policy``; the task definition is read back from moto's
ECS (moto keeps only its family, containers, volumes and memory from CloudFormation, so its Fargate, awsvpc
and role properties are asserted on the YAML).

Not deployable in moto (no such resource types there): ``AWS::Scheduler::Schedule``,
``AWS::SSM::MaintenanceWindow``, ``AWS::SSM::MaintenanceWindowTask`` and ``AWS::IAM::OIDCProvider``; and
``AWS::CloudWatch::Alarm`` (moto's CloudFormation skips it): each alarm's properties are sent to moto's
CloudWatch PutMetricAlarm instead, and its metric names compared with what rotator.metrics writes. They are
conditional (ScheduleExpression, MaintenanceWindowSchedule, GitHubOidcProviderArn empty) and left off in the
deployments here; the YAML is read with cfn-lint's loader and their key properties asserted.
``scripts/lint-infra.sh`` (cfn-lint) checks the whole template, every branch, against the CloudFormation schemas.

moto quirks handled: it keeps ``!Ref AWS::NoValue`` items in lists as ``null`` (dropped before comparing) and
stores inline policies as Python ``repr`` text (read with ``ast.literal_eval``).
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cfnlint.decode import cfn_yaml

from rotator import iam
from tests.harness import AwsEnv

pytestmark = pytest.mark.integration

TEMPLATE = Path(__file__).resolve().parents[2] / "deploy" / "cloudformation" / "rotation.yaml"
ACCOUNT = "123456789012"
# Every setting of `rotator rotate` that has an environment twin; the task definition may use only these.
ROTATOR_ENV = {
    "ROTATOR_SLOT_SECRET", "ROTATOR_ADMIN_SECRET", "ROTATOR_ENGINE", "ROTATOR_REGION", "ROTATOR_AWS_ENDPOINT_URL",
    "ROTATOR_TEMPLATE", "ROTATOR_CONFIG_PATH", "ROTATOR_FILE_MODE", "ROTATOR_FILE_OWNER", "ROTATOR_FIX_PERMISSIONS",
    "ROTATOR_DEPLOY", "ROTATOR_ECS_CLUSTER", "ROTATOR_ECS_SERVICE", "ROTATOR_DEPLOY_COMMAND", "ROTATOR_DEPLOY_TIMEOUT",
    "ROTATOR_GRACE_SECONDS", "ROTATOR_HEALTH_URL", "ROTATOR_HEALTH_STATUSES", "ROTATOR_HEALTH_INSECURE",
    "ROTATOR_DB_TLS", "ROTATOR_DB_CA_BUNDLE", "ROTATOR_DRY_RUN", "ROTATOR_LOG_JSON", "ROTATOR_SYNC_DB_USERS",
    "ROTATOR_SKIP_ADMIN", "ROTATOR_LIVE_SECRET",
}  # fmt: skip


@dataclass
class Stack:
    name: str
    parameters: dict[str, str]
    outputs: dict[str, str]


def deploy(aws: AwsEnv, suffix: str, **parameters: str) -> Stack:
    name = f"{aws.prefix.replace('_', '-')}-{suffix}"
    cfn = aws.client("cloudformation")
    cfn.create_stack(
        StackName=name,
        TemplateBody=TEMPLATE.read_text(),
        Capabilities=["CAPABILITY_IAM"],
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in parameters.items()],
    )
    stack = cfn.describe_stacks(StackName=name)["Stacks"][0]
    assert stack["StackStatus"] == "CREATE_COMPLETE", stack.get("StackStatusReason")
    return Stack(name, parameters, {o["OutputKey"]: o["OutputValue"] for o in stack.get("Outputs", [])})


def base_parameters(aws: AwsEnv) -> dict[str, str]:
    secret = f"arn:aws:secretsmanager:{aws.region}:{ACCOUNT}:secret:{aws.prefix}"
    return {
        "Image": "123456789012.dkr.ecr.us-east-1.amazonaws.com/rotator:1.0.0",
        "ClusterName": f"{aws.prefix}-app",
        "Subnets": "subnet-0a1b2c3d,subnet-4e5f6a7b",
        "SecurityGroups": "sg-0123456789abcdef0",
        "SlotSecretArn": f"{secret}/slots-AbCdEf",
        "AdminSecretArn": f"{secret}/admin-GhIjKl",
    }


def role_policy(aws: AwsEnv, role_arn: str, policy_name: str) -> dict[str, Any]:
    raw = aws.client("iam").get_role_policy(RoleName=role_arn.rsplit("/", 1)[-1], PolicyName=policy_name)
    document = raw["PolicyDocument"]
    if isinstance(document, str):
        document = ast.literal_eval(document) if document.startswith("{'") else json.loads(document)
    return dict(document)


def normalized(document: dict[str, Any]) -> list[dict[str, Any]]:
    """Statements without moto's NoValue nulls, Action/Resource as sorted lists, ordered by Sid."""
    out = []
    for statement in document["Statement"]:
        if statement is None:
            continue
        s = dict(statement)
        for key in ("Action", "Resource"):
            value = s[key]
            s[key] = sorted(value if isinstance(value, list) else [value])
        out.append(s)
    return sorted(out, key=lambda s: s["Sid"])


def role_arn(aws: AwsEnv, logical_id: str, stack: Stack) -> str:
    resources = aws.client("cloudformation").describe_stack_resources(StackName=stack.name)["StackResources"]
    (physical,) = [r["PhysicalResourceId"] for r in resources if r["LogicalResourceId"] == logical_id]
    arn: str = aws.client("iam").get_role(RoleName=physical)["Role"]["Arn"]
    return arn


def test_full_stack_roles_match_rotator_iam(aws: AwsEnv) -> None:
    kms = f"arn:aws:kms:{aws.region}:{ACCOUNT}:key/1234abcd-12ab-34cd-56ef-1234567890ab"
    topic = aws.client("sns").create_topic(Name=f"{aws.prefix}-alarms")["TopicArn"]
    parameters = base_parameters(aws) | {
        "DeployMode": "ecs",
        "AppServiceName": "web",
        "KmsKeyArn": kms,
        "EfsFileSystemId": "fs-0123456789abcdef0",
        "EfsAccessPointId": "fsap-0123456789abcdef0",
        "GitHubRepository": "example-org/example-app",
        "GitHubBranch": "main",
        "GitHubOidcProviderArn": f"arn:aws:iam::{ACCOUNT}:oidc-provider/token.actions.githubusercontent.com",
        "AlarmTopicArn": topic,
        "NotifyTopicArn": topic,
        "NotifyOn": "failure,success",
        "RotateAfter": "30d",
        "LiveSecretArn": f"arn:aws:secretsmanager:{aws.region}:{ACCOUNT}:secret:{aws.prefix}/live-MnOpQr",
    }
    stack = deploy(aws, "full", **parameters)
    efs_prefix = f"arn:aws:elasticfilesystem:{aws.region}:{ACCOUNT}"

    expected_task = iam.build_policy(
        region=aws.region,
        account_id=ACCOUNT,
        slot_secret_arn=parameters["SlotSecretArn"],
        admin_secret_arn=parameters["AdminSecretArn"],
        live_secret_arn=parameters["LiveSecretArn"],
        cluster_name=parameters["ClusterName"],
        service_name="web",
        kms_key_arn=kms,
        efs_file_system_arn=f"{efs_prefix}:file-system/fs-0123456789abcdef0",
        efs_access_point_arn=f"{efs_prefix}:access-point/fsap-0123456789abcdef0",
        notify_topic_arn=topic,
        partition="aws",
    )
    task_role = role_policy(aws, stack.outputs["TaskRoleArn"], "rotator-task")
    assert normalized(task_role) == normalized(expected_task)

    expected_launch = iam.launch_policy(
        region=aws.region,
        account_id=ACCOUNT,
        cluster_name=parameters["ClusterName"],
        task_definition_family=stack.outputs["TaskDefinitionFamily"],
        task_role_arn=stack.outputs["TaskRoleArn"],
        execution_role_arn=stack.outputs["ExecutionRoleArn"],
        log_group_name=stack.outputs["RotationLogGroup"],
        stack_name=stack.name,
    )
    github = role_policy(aws, stack.outputs["GitHubRoleArn"], "rotator-launch")
    assert normalized(github) == normalized(expected_launch)

    trust = aws.client("iam").get_role(RoleName=stack.outputs["GitHubRoleArn"].rsplit("/", 1)[-1])["Role"]
    (statement,) = trust["AssumeRolePolicyDocument"]["Statement"]
    assert statement["Action"] == "sts:AssumeRoleWithWebIdentity"
    assert statement["Principal"] == {"Federated": parameters["GitHubOidcProviderArn"]}
    assert statement["Condition"] == {
        "StringEquals": {
            "token.actions.githubusercontent.com:aud": "sts.amazonaws.com",
            "token.actions.githubusercontent.com:sub": "repo:example-org/example-app:ref:refs/heads/main",
        }
    }

    rules = aws.client("events").list_rules()["Rules"]
    (rule,) = [r for r in rules if stack.name in r.get("Description", "")]
    pattern = json.loads(rule["EventPattern"])
    assert pattern["detail"]["lastStatus"] == ["STOPPED"]
    assert pattern["detail"]["containers"]["exitCode"] == [{"anything-but": 0}]
    targets = aws.client("events").list_targets_by_rule(Rule=rule["Name"])["Targets"]
    assert [t["Arn"] for t in targets] == [topic]
    task_definition = aws.client("ecs").describe_task_definition(
        taskDefinition=stack.outputs["RotationTaskDefinitionArn"]
    )["taskDefinition"]
    environment = {e["name"]: e["value"] for e in task_definition["containerDefinitions"][0]["environment"] if e}
    assert environment["ROTATOR_NOTIFY_TOPIC"] == topic and environment["ROTATOR_NOTIFY_ON"] == "failure,success"
    assert environment["ROTATOR_ROTATE_AFTER"] == "30d"


def test_minimal_stack_task_definition(aws: AwsEnv) -> None:
    parameters = base_parameters(aws) | {"DeployMode": "none"}
    stack = deploy(aws, "min", **parameters)

    task_role = role_policy(aws, stack.outputs["TaskRoleArn"], "rotator-task")
    expected = iam.build_policy(
        region=aws.region,
        account_id=ACCOUNT,
        slot_secret_arn=parameters["SlotSecretArn"],
        admin_secret_arn=parameters["AdminSecretArn"],
        cluster_name=None,
        service_name=None,
    )
    assert normalized(task_role) == normalized(expected)
    assert "GitHubRoleArn" not in stack.outputs and "ScheduleArn" not in stack.outputs

    task_definition = aws.client("ecs").describe_task_definition(
        taskDefinition=stack.outputs["RotationTaskDefinitionArn"]
    )["taskDefinition"]
    assert task_definition["family"] == f"{stack.name}-rotator" == stack.outputs["TaskDefinitionFamily"]
    (container,) = task_definition["containerDefinitions"]
    assert container["name"] == "rotator"
    assert container["entryPoint"] == ["rotator"]
    assert container["command"] == ["rotate", "--log-json"]
    assert container["readonlyRootFilesystem"] is True
    assert container["logConfiguration"] == {
        "logDriver": "awslogs",
        "options": {
            "awslogs-group": stack.outputs["RotationLogGroup"],
            "awslogs-region": aws.region,
            "awslogs-stream-prefix": stack.outputs["RotationLogStreamPrefix"],
        },
    }
    environment = {e["name"]: e["value"] for e in container["environment"] if e is not None}
    assert set(environment) <= ROTATOR_ENV, set(environment) - ROTATOR_ENV
    assert environment["ROTATOR_SLOT_SECRET"] == parameters["SlotSecretArn"]
    assert environment["ROTATOR_ADMIN_SECRET"] == parameters["AdminSecretArn"]
    assert environment["ROTATOR_DEPLOY"] == "none"
    assert "ROTATOR_ECS_SERVICE" not in environment
    assert not {"ROTATOR_NOTIFY_TOPIC", "ROTATOR_NOTIFY_ON", "ROTATOR_ROTATE_AFTER"} & set(environment)
    # No secret is injected: the rotator reads both secrets itself, with their staging labels.
    assert not container.get("secrets")
    assert aws.client("logs").describe_log_groups(logGroupNamePrefix=stack.outputs["RotationLogGroup"])["logGroups"]


# ---- resources moto cannot create: read the YAML ---------------------------------------------------------------


@pytest.fixture(scope="module")
def template() -> Any:
    return cfn_yaml.load(str(TEMPLATE))


def props(template: Any, logical_id: str) -> Any:
    return template["Resources"][logical_id]["Properties"]


def test_task_definition_is_fargate_with_both_roles(template: Any) -> None:
    p = props(template, "RotationTaskDefinition")
    assert p["RequiresCompatibilities"] == ["FARGATE"]
    assert p["NetworkMode"] == "awsvpc"
    assert p["TaskRoleArn"] == {"Fn::GetAtt": ["TaskRole", "Arn"]}
    assert p["ExecutionRoleArn"] == {"Fn::GetAtt": ["ExecutionRole", "Arn"]}
    (container,) = p["ContainerDefinitions"]
    assert "Secrets" not in container


def test_schedule_targets_ecs_with_retries_and_dead_letter_queue(template: Any) -> None:
    schedule = template["Resources"]["RotationSchedule"]
    assert schedule["Type"] == "AWS::Scheduler::Schedule"
    assert schedule["Condition"] == "HasSchedule"
    p = schedule["Properties"]
    assert p["FlexibleTimeWindow"]["Mode"] == "FLEXIBLE"
    target = p["Target"]
    assert target["RoleArn"] == {"Fn::GetAtt": ["SchedulerRole", "Arn"]}
    assert target["EcsParameters"]["TaskDefinitionArn"] == {"Ref": "RotationTaskDefinition"}
    assert target["EcsParameters"]["LaunchType"] == "FARGATE"
    assert target["EcsParameters"]["TaskCount"] == 1
    assert target["EcsParameters"]["NetworkConfiguration"]["AwsvpcConfiguration"]["Subnets"] == {"Ref": "Subnets"}
    assert target["RetryPolicy"]["MaximumRetryAttempts"] >= 1
    assert target["DeadLetterConfig"]["Arn"] == {"Fn::GetAtt": ["DeadLetterQueue", "Arn"]}
    assert template["Resources"]["DeadLetterQueue"]["Type"] == "AWS::SQS::Queue"
    scheduler_actions = {
        a for s in props(template, "SchedulerRole")["Policies"][0]["PolicyDocument"]["Statement"] for a in [s["Action"]]
    }
    assert scheduler_actions == {"ecs:RunTask", "iam:PassRole", "sqs:SendMessage"}
    trust = props(template, "SchedulerRole")["AssumeRolePolicyDocument"]["Statement"][0]
    assert trust["Principal"] == {"Service": "scheduler.amazonaws.com"}


def test_maintenance_window_runs_automation_that_asserts_exit_code_zero(template: Any) -> None:
    window = props(template, "RotationMaintenanceWindow")
    assert window["AllowUnassociatedTargets"] is True
    assert window["Cutoff"] < window["Duration"]
    task = props(template, "RotationMaintenanceWindowTask")
    assert task["TaskType"] == "AUTOMATION"
    assert task["TaskArn"] == {"Ref": "RotationAutomationDocument"}
    assert "Targets" not in task  # a target-less task
    document = props(template, "RotationAutomationDocument")
    assert document["DocumentType"] == "Automation"
    steps = document["Content"]["mainSteps"]
    assert [(s["action"], s["inputs"]["Api"]) for s in steps] == [
        ("aws:executeAwsApi", "RunTask"),
        ("aws:waitForAwsResourceProperty", "DescribeTasks"),
        ("aws:assertAwsResourceProperty", "DescribeTasks"),
    ]
    run, wait, check = steps
    assert run["inputs"]["launchType"] == "FARGATE"
    assert run["outputs"][0]["Selector"] == "$.tasks[0].taskArn"
    assert wait["inputs"]["tasks"] == ["{{ runTask.TaskArn }}"]
    assert wait["inputs"]["DesiredValues"] == ["STOPPED"]
    assert check["inputs"]["PropertySelector"] == "$.tasks[0].containers[0].exitCode"
    assert check["inputs"]["DesiredValues"] == ["0"]
    assert all(s["onFailure"] == "Abort" for s in steps)


def test_github_oidc_provider_and_role_trust(template: Any) -> None:
    provider = template["Resources"]["GitHubOidcProvider"]
    assert provider["Condition"] == "CreateGitHubOidcProvider"
    assert provider["Properties"]["Url"] == "https://token.actions.githubusercontent.com"
    assert provider["Properties"]["ClientIdList"] == ["sts.amazonaws.com"]
    (trust,) = props(template, "GitHubRole")["AssumeRolePolicyDocument"]["Statement"]
    conditions = trust["Condition"]["StringEquals"]
    assert conditions["token.actions.githubusercontent.com:aud"] == "sts.amazonaws.com"
    assert conditions["token.actions.githubusercontent.com:sub"] == {
        "Fn::Sub": "repo:${GitHubRepository}:ref:refs/heads/${GitHubBranch}"
    }
    assert "StringLike" not in trust["Condition"]  # one repository, one branch: no wildcards


def test_every_output_launch_reads_exists(template: Any) -> None:
    from rotator import launch

    keys = {
        launch.OUTPUT_CLUSTER,
        launch.OUTPUT_TASK_DEFINITION,
        launch.OUTPUT_SUBNETS,
        launch.OUTPUT_SECURITY_GROUPS,
        launch.OUTPUT_ASSIGN_PUBLIC_IP,
        launch.OUTPUT_LOG_GROUP,
        launch.OUTPUT_LOG_STREAM_PREFIX,
    }
    assert keys <= set(template["Outputs"])
    assert template["Outputs"][launch.OUTPUT_LOG_STREAM_PREFIX]["Value"] == launch.DEFAULT_LOG_STREAM_PREFIX


def _resolved(value: Any, defaults: dict[str, Any]) -> Any:
    """The template's value with a parameter's default for ``Ref`` and ``!Sub`` text as it is."""
    if isinstance(value, dict) and "Ref" in value:
        return defaults[value["Ref"]]
    if isinstance(value, dict) and "Fn::Sub" in value:
        return value["Fn::Sub"]
    if isinstance(value, list):
        return [_resolved(v, defaults) for v in value]
    return value


def test_alarms_watch_the_metrics_the_rotator_and_the_loader_write(template: Any, aws: AwsEnv) -> None:
    from rotator import metrics

    alarms = {k: r["Properties"] for k, r in template["Resources"].items() if r["Type"] == "AWS::CloudWatch::Alarm"}
    by_metric = {p["MetricName"]: p for p in alarms.values()}
    got = {
        name: (p["Namespace"], p["Statistic"], p["Period"], p["Threshold"], p["ComparisonOperator"])
        for name, p in by_metric.items()
    }
    assert got == {
        "RotationFailed": ("Rotator", "Sum", 300, 1, "GreaterThanOrEqualToThreshold"),
        "CredentialAgeDays": ("Rotator", "Maximum", 86400, {"Ref": "MaxAgeDays"}, "GreaterThanThreshold"),
        "CredentialFetchFailures": ("Rotator", "Sum", 300, 5, "GreaterThanThreshold"),
        "CallCount": ("AWS/Usage", "Sum", 60, 100, "GreaterThanThreshold"),
    }
    assert template["Parameters"]["MaxAgeDays"]["Default"] == 90
    # The metrics exist: the names rotator.metrics writes, in its namespace, dimensionless (any database).
    report = {"exit_code": 1, "duration_ms": 5.0, "ages": {"credentials": {"slot A": {"age_s": 1.0}}, "overdue": []}}
    written = set(metrics.rotation_metrics(report, command="rotate"))
    lines: list[str] = []
    metrics.ClientMetrics("s", sink=lines.append).fetched(ok=False)
    written |= {m["Name"] for m in json.loads(lines[0])["_aws"]["CloudWatchMetrics"][0]["Metrics"]}
    for name in ("RotationFailed", "CredentialAgeDays", "CredentialFetchFailures"):
        assert (
            name in written
            and by_metric[name]["Namespace"] == metrics.NAMESPACE
            and "Dimensions" not in by_metric[name]
        )
    assert {d["Name"]: d["Value"] for d in by_metric["CallCount"]["Dimensions"]} == {
        "Service": "Secrets Manager",
        "Type": "API",
        "Resource": "GetSecretValue",
        "Class": "None",
    }
    # Each alarm as CloudWatch's API takes it (moto validates the request), with the parameters' defaults.
    defaults = {k: p.get("Default") for k, p in template["Parameters"].items()}
    cloudwatch = aws.client("cloudwatch")
    for logical, props in alarms.items():
        assert props["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }
        request = {k: _resolved(v, defaults) for k, v in props.items() if k != "AlarmActions"}
        name = f"{aws.prefix}-{logical}"
        cloudwatch.put_metric_alarm(AlarmName=name, **request)
        (alarm,) = cloudwatch.describe_alarms(AlarmNames=[name])["MetricAlarms"]
        assert alarm["MetricName"] == props["MetricName"]
        cloudwatch.delete_alarms(AlarmNames=[name])
